"""Pipeline-parallel config: the layer split per stage (`parallel.pp_layers`) and the checks of
`parallel.pp` / `pp_layers` / `micro_batches` and of what does not run with pp > 1, each error naming
its key. Pure Python (no MindSpore), so `check_supported` and `mft plan` can call it cheaply."""

from __future__ import annotations

from mft.errors import MftError


def stage_layers(num_layers: int | None, pp: int, pp_layers=None) -> list[tuple[int, int]]:
    """[(first layer, end layer)] per stage. `pp_layers`: a list of pp counts summing to num_layers
    (each >= 1), or None for an even split (earlier stages take the remainder). num_layers None
    (not known yet: a pretrained model) checks pp_layers' shape only."""
    if pp < 1:
        raise MftError(f"parallel.pp must be >= 1, got {pp}")
    if pp_layers is None:
        if num_layers is None:
            return []
        if num_layers < pp:
            raise MftError(f"parallel.pp={pp}: the model has only {num_layers} layers (model.num_layers); each stage needs at least one")
        base, extra = divmod(num_layers, pp)
        counts = [base + (1 if s < extra else 0) for s in range(pp)]
    else:
        counts = list(pp_layers)
        if len(counts) != pp or not all(isinstance(c, int) and not isinstance(c, bool) for c in counts):
            raise MftError(f"parallel.pp_layers={pp_layers!r}: expected a list of {pp} integers (one per stage, parallel.pp={pp})")
        if any(c < 1 for c in counts):
            raise MftError(f"parallel.pp_layers={counts}: every stage needs at least one layer")
        if num_layers is not None and sum(counts) != num_layers:
            raise MftError(f"parallel.pp_layers={counts} sums to {sum(counts)}, but the model has {num_layers} layers "
                           "(model.num_layers); the counts must add up to it")
    bounds, start = [], 0
    for c in counts:
        bounds.append((start, start + c))
        start += c
    return bounds


def micro_batches(cfg) -> int:
    """Pipeline micro-batches per step: train.grad_accum_steps (parallel.micro_batches must agree)."""
    mb = cfg.parallel.micro_batches
    return cfg.train.grad_accum_steps if mb is None else mb


def check_config(cfg) -> None:
    """parallel.pp / pp_layers / micro_batches, and what this build does not run with pp > 1; each error names the key."""
    p = cfg.parallel
    if not isinstance(p.pp, int) or p.pp < 1:
        raise MftError(f"parallel.pp must be an integer >= 1, got {p.pp!r}")
    mb = p.micro_batches
    if mb is not None and (not isinstance(mb, int) or isinstance(mb, bool) or mb < 1):
        raise MftError(f"parallel.micro_batches must be an integer >= 1 (or null = train.grad_accum_steps), got {mb!r}")
    if p.pp == 1:
        if p.pp_layers is not None and list(p.pp_layers) != [cfg.model.num_layers]:
            raise MftError(f"parallel.pp_layers={p.pp_layers!r} is set but parallel.pp=1; set parallel.pp or leave pp_layers null")
        return
    if mb is not None and mb != cfg.train.grad_accum_steps:
        raise MftError(
            f"parallel.micro_batches={mb} must equal train.grad_accum_steps={cfg.train.grad_accum_steps}: the pipeline's "
            "micro-batches are the step's gradient-accumulation micro-batches (global batch = train.micro_batch_size x "
            f"train.grad_accum_steps); set train.grad_accum_steps={mb}, or leave parallel.micro_batches null")
    # The split against the recipe's layer count (a pretrained model's count is checked when it is built).
    stage_layers(None if cfg.model.pretrained else cfg.model.num_layers, p.pp, p.pp_layers)
    refusals = [
        (bool(p.sp), "parallel.sp", "set parallel.sp=false (sequence parallel inside pipeline stages is not implemented; tp is)"),
        (p.cp > 1, f"parallel.cp={p.cp}", "set parallel.cp=1"),
        (bool(p.zero), f"parallel.zero={p.zero}", "set parallel.zero=0"),
        (cfg.finetune.method == "lora", "finetune.method=lora", "set finetune.method=full"),
        (bool(getattr(cfg.finetune.distill, "teacher", None)), "finetune.distill", "distillation needs the whole student"),
        (cfg.train.precision == "fp16", "train.precision=fp16", "fp16 loss scaling is not implemented with pp; use fp32 (or bf16 on devices)"),
        (cfg.train.recompute != "none", f"train.recompute={cfg.train.recompute}",
         "set train.recompute=none (the pipeline keeps each in-flight micro-batch's activations)"),
        (bool(cfg.train.offload_activations), "train.offload_activations", "set it to false"),
        (cfg.monitor.spike.action == "skip", "monitor.spike.action=skip", "use warn or rollback"),
        (bool(cfg.monitor.layer_norms), "monitor.layer_norms", "set it to false"),
        (bool(cfg.monitor.grad_histograms), "monitor.grad_histograms", "set it to false"),
        (bool(cfg.monitor.optimizer_state_norm), "monitor.optimizer_state_norm", "set it to false (rank 0 holds one stage's state)"),
        (cfg.monitor.eval_every > 0, f"monitor.eval_every={cfg.monitor.eval_every}", "validation under pp is not implemented; set 0"),
    ]
    for bad, what, fix in refusals:
        if bad:
            raise MftError(f"{what} is not supported with parallel.pp={p.pp}: {fix}")
