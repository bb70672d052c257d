"""Pre-training / full fine-tuning driver: `mft train CONFIG`.

Order matters for "a failed run overwrites nothing": every input (config,
tokenizer, data, resume checkpoint, output_dir state) is validated before
the first byte is written under `run.output_dir`.
"""

from __future__ import annotations

import os
import time

import numpy as np

from mft.config import Config, dump_config
from mft.errors import MftError
from mft.training.checkpoint import (
    TrainerState,
    latest_checkpoint,
    load_optimizer_state,
    load_trainer_state,
    save_checkpoint,
    step_dir_name,
)
from mft.training.lr_schedule import lr_at
from mft.training.run_setup import RunPaths, check_supported, resolve_resume, setup_logging  # noqa: F401  (re-exported)


def train(cfg: Config, echo=print) -> dict:
    """Runs the training described by `cfg`; returns a summary dict."""
    # --- validate everything before writing anything
    check_supported(cfg)
    from mft.training.precision import compute_dtype_for, check_loss_scale

    compute_dtype = compute_dtype_for(cfg.train.precision, cfg.run.device)
    check_loss_scale(cfg.train)
    paths = RunPaths(os.path.abspath(cfg.run.output_dir))
    from mft.tokenizer import Tokenizer

    tokenizer = Tokenizer.from_file(cfg.tokenizer.path)
    from mft.data.indexed import IndexedDataset

    indexed = IndexedDataset(cfg.data.prefix)
    resume_warnings: list[str] = []
    resume_from = resolve_resume(cfg, paths, warn=resume_warnings.append)
    for w in resume_warnings:
        echo(f"warning: {w}")
    resume_state = load_trainer_state(resume_from) if resume_from else None
    resume_optim = load_optimizer_state(resume_from) if resume_from else None
    if resume_state and resume_state.step >= cfg.train.steps:
        raise MftError(f"{resume_from}: already at step {resume_state.step} >= train.steps={cfg.train.steps}; raise train.steps to continue")

    import mindspore as ms

    from mft.training.model_factory import build_model, load_weights_from_folder

    ms.set_device(cfg.run.device)
    from mft.training.determinism import apply_determinism, restore_threads

    determinism = apply_determinism(cfg)  # run.deterministic: before any kernel runs
    from mft.parallel.comm import barrier, init_from_env
    from mft.parallel.groups import Layout
    from mft.parallel.layout_plan import LayoutPlan

    groups = init_from_env(Layout.from_config(cfg.parallel))  # joins the msrun cluster under `mft train --nproc N`
    is_main = groups.rank == 0  # rank 0 writes config, metrics, TensorBoard and checkpoints
    layout = LayoutPlan(cfg, groups)  # every per-layout decision (dp / tp+sp / pp / ep / cp / ZeRO)
    dp = layout.dp
    ms.set_seed(cfg.run.seed)
    np.random.seed(cfg.run.seed)
    with layout.building():  # tp / ep / cp: the layers hold this rank's pieces
        model, hf_config = build_model(cfg, tokenizer)
    layout.bind(model)
    gather_save = layout.gather_save  # every rank calls save(): pieces are gathered into full tensors
    if resume_from:
        load_weights_from_folder(model, resume_from)  # full HF tensors, sliced for this tp rank
    from mft.finetune.train_setup import apply_finetune, inputs_labels, reload_adapter, save_model_files, with_loss_mask

    apply_finetune(cfg, model, resume_from)  # finetune.method=lora: only adapters stay trainable
    from mft.training.precision import DynamicLossScale, set_compute_dtype

    set_compute_dtype(model, compute_dtype)
    from mft.finetune.distill import distill_loss_factory

    loss_factory = distill_loss_factory(cfg, model, compute_dtype)  # finetune.distill: frozen teacher, KL + CE loss

    tc = cfg.train
    samples_per_step = tc.micro_batch_size * tc.grad_accum_steps
    from mft.training.evaluate import split_streams

    dataset, valid_set = split_streams(indexed, cfg)  # data.split: train excludes held-out documents
    dataset = with_loss_mask(cfg, indexed, dataset)  # PREFIX_mask.bin/.idx (SFT data): masked labels -> -100
    valid_set = valid_set and with_loss_mask(cfg, indexed, valid_set)

    params = layout.stage()  # parallel.pp > 1: this rank's stage (its layers; embedding / head at the ends)
    opt_cfg = tc.optimizer
    optimizer = layout.optimizer()  # ZeRO or train.optimizer; validates param_groups against the model: before any write

    # --- from here on we write under output_dir
    barrier(groups.world)  # every rank has validated its inputs before rank 0 writes
    if is_main:
        os.makedirs(paths.output_dir, exist_ok=True)
        dump_config(cfg, paths.config)
    logger = setup_logging(paths, groups.rank)
    logger.info("run %s: config: %s", cfg.run.name, paths.config)
    logger.info("determinism: %s", determinism)
    for w in resume_warnings:
        logger.warning("%s", w)
    from mft.monitor.metrics import MetricsWriter
    from mft.monitor.progress import Progress
    from mft.monitor.tensorboard import TensorBoardWriter, markdown_code_block
    from mft.training.memory_modes import apply_memory_modes

    logger.info("memory modes (train.recompute=%s): %s", tc.recompute, apply_memory_modes(cfg, model))
    ls_cfg = tc.loss_scale
    loss_scale = (DynamicLossScale(ls_cfg.initial_scale, ls_cfg.growth_factor, ls_cfg.growth_interval, ls_cfg.min_scale)
                  if tc.precision == "fp16" else None)
    from mft.training.monitoring import TrainMonitor

    monitor = TrainMonitor(cfg, model, params, dp, valid_set, logger, processes=groups.world_size)  # every process of the layout (tp, pp, cp share the tokens)
    from mft.finetune.vlm_batches import train_model

    step_model = train_model(model, dataset)
    step_fn = layout.train_step(step_model, optimizer, monitor, loss_scale, loss_factory)  # pp: 1F1B; grads reduced per layout
    for line in layout.describe(step_fn):  # what this rank holds (ZeRO shard, pipeline stage, experts)
        logger.info("%s", line)
    state = TrainerState(step=0, consumed_samples=0, tokens_seen=0, seed=cfg.run.seed)
    if resume_from:
        restore_optimizer(step_fn, layout.shard_optimizer_state(resume_optim), resume_from)
        state = resume_state
        logger.info("resumed from %s at step %d", resume_from, state.step)
        echo(f"resuming from {resume_from} (step {state.step})")

    n_params = layout.numel  # the whole model, also under tp / pp / ep
    echo(f"model: {cfg.model.arch}, {n_params / 1e6:.2f}M parameters; data: {len(indexed)} documents, seq_len {cfg.data.seq_len}")
    logger.info("parameters: %d", n_params)
    metrics = MetricsWriter(paths.metrics) if is_main else None
    tb = TensorBoardWriter(paths.tensorboard) if cfg.monitor.tensorboard and is_main else None
    if tb:
        with open(paths.config, encoding="utf-8") as f:  # the resolved config, as written above
            tb.add_text("config", markdown_code_block(f.read(), "yaml"), step=state.step)
        tb.add_text("run", f"**{cfg.run.name}**: {paths.output_dir}", step=state.step)  # run.name as the run's title
    hist_every = cfg.monitor.histograms_every
    from mft.training.grad_histograms import GradientProbe

    probe = GradientProbe(step_model, params, jit=cfg.run.mode == "graph") if tb and cfg.monitor.grad_histograms else None
    progress = Progress(total=tc.steps, start=state.step, enabled=cfg.monitor.progress_bar and is_main)
    tokens_per_step = samples_per_step * cfg.data.seq_len
    first_loss = last_loss = None
    t_run = time.perf_counter()

    from mft.training.fault import HostSnapshot, StopSignals, UpdateCounters, nonfinite_names

    def save(step_state: TrainerState) -> str | None:
        """Writes a checkpoint (rank 0). Under gather_save every rank calls it: the pieces are gathered
        into full tensors (a collective), so the folder is the same as a single-process run's."""
        bad = nonfinite_names({**dict(model.parameters_and_names()), **step_fn.state_tensors()})
        if bad:  # never let a NaN state replace a good checkpoint
            raise MftError(f"refusing to save step {step_state.step}: {bad[0]} (and {len(bad) - 1} more) hold NaN/Inf; "
                           f"the checkpoints in {paths.checkpoints} are untouched")
        values, opt_state = layout.gather_for_save(step_fn)  # tp / ep / ZeRO / pp pieces as full tensors
        if not is_main:
            return None
        return save_checkpoint(
            paths.checkpoints,
            step_state,
            lambda d: save_model_files(model, d, cfg.model.pretrained, values),
            opt_state,
            cfg.tokenizer.path,
            cfg.checkpoint.keep,
        )

    # The state after the last completed step, on the host, restored on a skipped NaN. save_on_error needs
    # no copy: a step that raises before its update leaves the live state as it was (UpdateCounters).
    counters = UpdateCounters(step_fn.state_tensors())
    snapshot = None
    if tc.nan_action == "skip":
        snapshot = HostSnapshot({**dict(model.parameters_and_names()), **step_fn.state_tensors()})
        snapshot.take()
    snap_state = state
    rollbacks: dict[str, int] = {}

    def rollback(state: TrainerState, why: str = "loss became non-finite", key: str = "train.nan_action=rollback") -> TrainerState:
        """nan_action / spike action rollback: newest complete checkpoint back in; the batches since it are skipped."""
        folder = latest_checkpoint(paths.checkpoints, warn=logger.warning) if os.path.isdir(paths.checkpoints) else None
        if folder is None:
            raise MftError(f"{why} at step {state.step + 1} and {key} has no checkpoint "
                           "to roll back to yet (set checkpoint.every_steps)")
        rollbacks[folder] = rollbacks.get(folder, 0) + 1
        if rollbacks[folder] > MAX_ROLLBACKS:
            raise MftError(f"{why} at step {state.step + 1} again after {MAX_ROLLBACKS} rollbacks to {folder}; "
                           "lower train.optimizer.lr or check the data")
        saved = load_trainer_state(folder)
        layout.load_folder(folder)  # pp: other stages stay released
        reload_adapter(model, folder)  # LoRA: the adapter too (no-op otherwise)
        restore_optimizer(step_fn, layout.shard_optimizer_state(load_optimizer_state(folder)), folder)
        for buf in getattr(step_fn, "grad_buffers", ()):
            buf.set_data(ms.Tensor(np.zeros(tuple(buf.shape), np.float32), dtype=buf.dtype))
        skipped_samples = state.consumed_samples + samples_per_step - saved.consumed_samples
        logger.warning("step %d: %s; rolled back to %s (step %d), skipping %d samples (through the offending batch)",
                       state.step + 1, why, folder, saved.step, skipped_samples)
        echo(f"{why} at step {state.step + 1}: rolled back to step {saved.step}, skipping {skipped_samples} samples")
        return TrainerState(step=saved.step, consumed_samples=state.consumed_samples + samples_per_step,
                            tokens_seen=saved.tokens_seen, seed=state.seed)

    stop = StopSignals().__enter__()  # SIGTERM/SIGINT: end-of-life checkpoint at the next step boundary
    try:
        while state.step < tc.steps:
            if stop.requested:
                logger.warning("received %s: stopping after step %d", stop.name, state.step)
                break
            t0 = time.perf_counter()
            counters.mark()
            nan_skipped = False
            # this dp rank's share: (accum, micro_batch / dp, seq + 1)
            batch = dataset.rank_batch(state.consumed_samples, tc.grad_accum_steps, tc.micro_batch_size, dp.rank, dp.size)
            lr = lr_at(state.step, opt_cfg.lr, tc.steps, tc.lr_schedule)
            hist_step = tb and hist_every and (state.step + 1) % hist_every == 0
            if probe and hist_step:  # this step's gradients, from the weights before its update
                tb.add_histograms(state.step + 1, probe.gradients(*inputs_labels(batch)))
            loss, grad_norm = monitor.run_step(step_fn, *inputs_labels(batch), lr)
            loss = dp.mean(loss)  # the global batch's loss (every rank holds the same number of tokens)
            dt = time.perf_counter() - t0
            spike_fields = monitor.after_step(state.step + 1, loss, grad_norm, step_fn)
            if spike_fields.get("spike") and cfg.monitor.spike.action == "rollback":
                state = snap_state = rollback(state, "loss / grad-norm spike", "monitor.spike.action=rollback")
                if snapshot is not None:
                    snapshot.take()
                continue
            skipped = loss_scale is not None and not np.isfinite(grad_norm)  # fp16 overflow: update skipped
            if skipped:
                logger.warning("step %d: gradients overflowed in fp16; update skipped, loss scale now %g",
                               state.step + 1, step_fn.last_loss_scale)
            elif not np.isfinite(loss) and not monitor.discarded:  # spike action skip drops non-finite steps
                if tc.nan_action == "raise":
                    raise MftError(f"loss became {loss} at step {state.step + 1}; lower train.optimizer.lr or check the data "
                                   "(train.nan_action=raise; skip or rollback continue)")
                if tc.nan_action == "rollback":
                    state = snap_state = rollback(state)
                    if snapshot is not None:
                        snapshot.take()
                    continue
                snapshot.restore()  # skip: the update is undone (weights and optimizer state, step counter included)
                nan_skipped = True
                logger.warning("step %d: loss %s; update skipped (train.nan_action=skip)", state.step + 1, loss)
            state = TrainerState(
                step=state.step + 1,
                consumed_samples=state.consumed_samples + samples_per_step,
                tokens_seen=state.tokens_seen + tokens_per_step,
                seed=state.seed,
            )
            if snapshot is not None and not nan_skipped:
                snapshot.take()
            snap_state = state
            stop.reinstall()  # MindSpore's graph run replaced our SIGINT handler (training/fault.py)
            first_loss = loss if first_loss is None else first_loss
            last_loss = loss
            tokens_per_s = tokens_per_step / dt
            progress.update(state.step, loss=loss, tokens_per_s=tokens_per_s)
            val = monitor.validate(state.step) if monitor.is_eval_step(state.step, tc.steps) else {}
            if state.step % cfg.monitor.log_every == 0 or state.step == tc.steps or val or spike_fields.get("spike"):
                record = {
                    "step": state.step,
                    "loss": loss,
                    "lr": lr,
                    "grad_norm": grad_norm,
                    "tokens_per_s": tokens_per_s,
                    "step_time_s": dt,
                    "consumed_samples": state.consumed_samples,
                    "tokens_seen": state.tokens_seen,
                }
                if loss_scale is not None:
                    record.update(loss_scale=step_fn.last_loss_scale, skipped=skipped)
                record.update(moe_metrics(step_fn.moe_stats and {**step_fn.moe_stats, "aux_loss": dp.mean(step_fn.moe_stats["aux_loss"])}))
                record.update(spike_fields, **monitor.record_fields(tokens_per_s, step_fn), **val)
                if metrics is not None:
                    metrics.write(record)
                if tb:
                    tb.add_scalars(state.step, {f"train/{k}": v for k, v in record.items() if k != "step"})
                logger.info("step %d loss %.4f lr %.3e grad_norm %.3f tokens/s %.0f", state.step, loss, lr, grad_norm, tokens_per_s)
            if hist_step:
                tb.add_histograms(state.step, {f"weights/{p.name}": p.asnumpy() for p in params})
            every = cfg.checkpoint.every_steps
            if every and state.step % every == 0 and state.step < tc.steps and (is_main or gather_save):
                path = save(state)
                if path:
                    logger.info("saved %s", path)
        final = save(state) if is_main or gather_save else None
        if final:
            logger.info("saved %s", final)
    except Exception as exc:
        # (tp > 1: saving gathers over the tp group, which a failed peer cannot join; the newest checkpoint stands)
        if cfg.checkpoint.save_on_error and is_main and not gather_save and snap_state.step > 0:
            if snapshot is not None:
                snapshot.restore()  # the state after the last completed step
            elif not counters.unchanged():  # the failed step had started updating: the live state is not a good one
                logger.error("step %d failed (%s) after its update started; the newest checkpoint is the last good state",
                             snap_state.step + 1, type(exc).__name__)
                raise
            if not os.path.isdir(os.path.join(paths.checkpoints, step_dir_name(snap_state.step))):
                path = save(snap_state)
                logger.error("step %d failed (%s: %s); saved the last good state to %s", snap_state.step + 1,
                             type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "", path)
        raise
    finally:
        stop.__exit__()
        restore_threads()
        progress.close()
        if metrics is not None:
            metrics.close()
        if tb:
            tb.close()
    elapsed = time.perf_counter() - t_run
    summary = {
        "steps": state.step,
        "first_loss": first_loss,
        "last_loss": last_loss,
        "elapsed_s": elapsed,
        "checkpoint": final,
        "output_dir": paths.output_dir,
        "stopped_by": stop.name or None,  # SIGTERM / SIGINT: stopped early after saving
        "exit_code": stop.exit_code if stop.requested else 0,
    }
    if stop.requested:
        logger.warning("stopped by %s at step %d; exit code %d", stop.name, state.step, stop.exit_code)
    logger.info("done: %s", summary)
    return summary


def moe_metrics(stats: dict) -> dict:
    """MoE router health for metrics.jsonl: aux loss and how uneven expert load is."""
    if not stats:
        return {}
    load = np.asarray(stats["expert_load"], dtype=np.float64)
    mean = float(load.mean()) or 1.0
    return {
        "moe_aux_loss": float(stats["aux_loss"]),
        "moe_load_max_over_mean": float(load.max() / mean),  # 1.0 = perfectly balanced
        "moe_load_min_over_mean": float(load.min() / mean),
    }


MAX_ROLLBACKS = 3  # nan_action=rollback: give up when the same checkpoint is rolled back to more often

# State a checkpoint may lack (it was written at another precision): kept at its initial value.
OPTIONAL_STATE = ("loss_scale", "loss_scale_good_steps")


def restore_optimizer(step_fn, saved: dict[str, np.ndarray], folder: str) -> None:
    """Loads optimizer (and loss-scale) state into `step_fn.state_tensors()`."""
    import mindspore as ms

    from mft.parallel.zero import shard_saved_state

    saved = shard_saved_state(step_fn.optimizer, saved, folder)  # parallel.zero: this rank's slice of the moments
    expected = {k: v for k, v in step_fn.state_tensors().items() if k in saved or k not in OPTIONAL_STATE}
    missing = sorted(set(expected) - set(saved))
    if missing:
        raise MftError(f"{folder}/optimizer.safetensors: missing optimizer state {missing[0]!r} (and {len(missing) - 1} more)")
    for name, param in expected.items():
        value = saved[name]
        if tuple(value.shape) != tuple(param.shape):
            raise MftError(f"{folder}/optimizer.safetensors: {name!r} has shape {value.shape}, the model needs {tuple(param.shape)}")
        param.set_data(ms.Tensor(value, dtype=param.dtype))
