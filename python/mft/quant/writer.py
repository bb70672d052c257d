"""`quantize_folder`: a float model folder -> a quantized model folder.

Order: every option and size check, the calibration data read and encoded,
then the quantization, then the write: all files go into a temporary sibling
folder that is renamed to --out only when complete, so a failure never leaves
a half-written output.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time

import numpy as np

from mft.errors import MftError
from mft.quant import gptq, layout, rtn
from mft.quant.schemes import CALIBRATED, QuantOptions, check_model, check_options, check_out_dir

# Files copied unchanged from the source folder when present.
COPIED_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                "generation_config.json", "vocab.json", "merges.txt", "tokenizer.model")


def quantization_config(opts: QuantOptions, ignore: list[str], extra: dict) -> dict:
    if opts.weight_scheme is None:  # kv8 alone: no weight groups, only the KV cache scheme
        from mft.quant.kv_calibration import kv_cache_scheme

        return {
            "quant_method": "compressed-tensors",
            "format": "dense",
            "quantization_status": "compressed",
            "config_groups": {},
            "ignore": [],
            "kv_cache_scheme": kv_cache_scheme(),
            "mft": {"scheme": opts.scheme, "method": opts.method, **extra},
        }
    if opts.method == "awq":  # AutoAWQ GEMM layout (transformers / vLLM `awq`)
        return {
            "quant_method": "awq",
            "version": "gemm",
            "bits": 4,
            "group_size": opts.group_size,
            "zero_point": True,
            "modules_to_not_convert": ignore or None,
            "mft": {"scheme": opts.scheme, "method": opts.method, **extra},
        }
    if opts.bits == 4:
        return {
            "quant_method": "gptq",
            "checkpoint_format": "gptq",
            "bits": 4,
            "group_size": opts.group_size,
            "desc_act": False,
            "sym": False,
            "static_groups": False,
            "true_sequential": False,
            "damp_percent": opts.damp,
            "modules_in_block_to_quantize": None,
            "mft": {"scheme": opts.scheme, "method": opts.method, **extra},
        }
    acts = None
    if opts.act_bits == 8:  # vLLM's CompressedTensorsW8A8Int8, dynamic per-token activations
        acts = {"num_bits": 8, "type": "int", "symmetric": True, "strategy": "token", "dynamic": True,
                "group_size": None, "observer": None}
    return {
        "quant_method": "compressed-tensors",
        "format": "int-quantized",
        "quantization_status": "compressed",
        "config_groups": {
            "group_0": {
                "targets": ["Linear"],
                "weights": {"num_bits": 8, "type": "int", "symmetric": True, "strategy": "channel",
                            "group_size": None, "dynamic": False, "observer": "minmax"},
                "input_activations": acts,
                "output_activations": None,
            }
        },
        "ignore": ignore,
        "kv_cache_scheme": _kv_scheme(opts),
        "mft": {"scheme": opts.scheme, "method": opts.method, **extra},
    }


def _kv_scheme(opts: QuantOptions):
    if not opts.kv8:
        return None
    from mft.quant.kv_calibration import kv_cache_scheme

    return kv_cache_scheme()


def quantize_weight(opts: QuantOptions, prefix: str, w: np.ndarray, hessian: np.ndarray | None) -> dict:
    """Quantized tensors of one linear, in the on-disk layout."""
    if opts.bits == 8:
        if hessian is None:
            q, scale = rtn.quantize_int8(w)
        else:
            q, scale, _ = gptq.gptq_quantize(w, hessian, 8, damp=opts.damp)
        return {f"{prefix}.weight": q, f"{prefix}.weight_scale": scale.reshape(-1, 1).astype(np.float32)}
    if opts.method == "awq":  # w already carries the AWQ scales
        return layout.awq_tensors(prefix, *rtn.quantize_int4(w, opts.group_size))
    if hessian is None:
        q, scales, zeros = rtn.quantize_int4(w, opts.group_size)
    else:
        q, scales, zeros = gptq.gptq_quantize(w, hessian, 4, opts.group_size, damp=opts.damp)
    return layout.gptq_tensors(prefix, q, scales, zeros, opts.group_size)


def quantize_folder(model_dir: str, out_dir: str, opts: QuantOptions, log=print) -> dict:
    """Writes the quantized folder; returns a summary (sizes, times, layers)."""
    from mft.models import checkpoint_io

    check_options(opts)
    check_out_dir(out_dir)
    raw = checkpoint_io.read_config(model_dir)
    if "quantization_config" in raw:
        raise MftError(f"--model {model_dir}: already quantized (config.json has quantization_config)")

    from mft.models import AutoModelForCausalLM
    from mft.quant.targets import expert_prefix, expert_stacks, ignored_modules, quantizable_linears

    t0 = time.time()
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    linears = quantizable_linears(model) if opts.weight_scheme else {}
    stacks = expert_stacks(model) if opts.weight_scheme else {}  # MoE experts: round-to-nearest per expert
    sizes = {name: (cell.out_features, cell.in_features) for name, (_, cell) in linears.items()}
    sizes.update({expert_prefix(name, 0): (cell.out_features, cell.in_features) for name, (_, cell) in stacks.items()})
    check_model(opts, sizes)
    kv_layers = []
    if opts.kv8:
        from mft.quant.kv_calibration import kv_attention_layers

        kv_layers = kv_attention_layers(model, f"--scheme {opts.scheme}")
    hessians = {}
    extra = {}
    stats = {}
    if opts.calib is not None:
        from mft.quant.calibration import collect_stats, load_calib_tokens

        seq_len = min(opts.calib_seq_len, int(model.config.max_position_embeddings))
        seqs = load_calib_tokens(opts.calib, os.path.join(model_dir, "tokenizer.json"), opts.calib_tokens, seq_len)
        extra = {"calib_tokens": sum(len(s) for s in seqs), "calib_seq_len": seq_len}
        log(f"calibrating on {extra['calib_tokens']} tokens ({len(seqs)} sequences)")
        if kv_layers:
            from mft.quant import kv_calibration

            k_max, v_max = kv_calibration.calibrate(model, seqs)
            kv_tensors = kv_calibration.scale_tensors([prefix for prefix, _ in kv_layers], k_max, v_max)
            extra = {**extra, "kv_layers": len(kv_layers)}
            log(f"kv8: int8 KV cache scales for {len(kv_layers)} layers x {k_max.shape[1]} kv heads "
                f"(key absmax {k_max.min():.3g}..{k_max.max():.3g}, value absmax {v_max.min():.3g}..{v_max.max():.3g})")
    if opts.method in CALIBRATED and linears:
        stats = collect_stats(model, linears, seqs, hessians=opts.method in ("gptq", "awq"), absmax=opts.smooth,
                              absmean=opts.method == "awq")
        if opts.method == "gptq":
            hessians = {name: a["h"] for name, a in stats.items()}
    tensors = model.hf_state_dict()
    if kv_layers:
        tensors.update(kv_tensors)
    if opts.smooth:
        from mft.quant.smoothquant import apply_smoothing

        factors = apply_smoothing(tensors, list(linears), {n: a["absmax"] for n, a in stats.items()}, opts.smooth_alpha)
        for name, s in factors.items():  # GPTQ sees the smoothed inputs X / s: H' = diag(1/s) H diag(1/s)
            if name in hessians:
                inv = 1.0 / s.astype(np.float64)
                hessians[name] = hessians[name] * inv[:, None] * inv[None, :]
        extra = {**extra, "smooth_alpha": opts.smooth_alpha, "smoothed_linears": len(factors)}
        log(f"SmoothQuant (alpha {opts.smooth_alpha}): {len(factors)} of {len(linears)} linears smoothed")
    if opts.method == "awq":
        from mft.quant.awq import apply_awq

        found = apply_awq(tensors, list(linears), stats, opts.group_size, log=log)
        extra = {**extra, "awq_scaled_linears": len(found),
                 "awq_ratios": sorted({round(r, 2) for _, r in found.values()})}
    for name in linears:
        w = tensors.pop(f"{name}.weight").astype(np.float32)
        tensors.update(quantize_weight(opts, name, w, hessians.get(name)))
    experts = 0
    for name, (_, cell) in stacks.items():  # no Hessian: int8 / int4 round-to-nearest in the folder's layout
        for e in range(cell.num_experts):
            prefix = expert_prefix(name, e)
            tensors.update(quantize_weight(opts, prefix, tensors.pop(f"{prefix}.weight").astype(np.float32), None))
            experts += 1
    if experts:
        extra = {**extra, "expert_linears": experts, "expert_method": "rtn"}
        log(f"MoE: {experts} expert linears quantized by round-to-nearest ({len(stacks)} stacks)")
    config = dict(raw)
    config["quantization_config"] = quantization_config(opts, ignored_modules(model), extra)
    del model
    _write(model_dir, out_dir, config, tensors)
    size = os.path.getsize(os.path.join(out_dir, checkpoint_io.WEIGHTS_NAME))
    summary = {"scheme": opts.scheme, "method": opts.method, "layers": len(linears), "bytes": size,
               "seconds": round(time.time() - t0, 2), **extra}
    kv_note = f", int8 KV cache scales for {len(kv_layers)} layers" if kv_layers else ""
    log(f"wrote {out_dir}: {len(linears)} linears quantized ({opts.scheme}, {opts.method}){kv_note}, "
        f"model.safetensors {size / 1e6:.2f} MB in {summary['seconds']} s")
    return summary


def _write(model_dir: str, out_dir: str, config: dict, tensors: dict) -> None:
    from mft.models import checkpoint_io
    from mft.weights.safetensors import save_file

    out_abs = os.path.abspath(out_dir)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out_abs)}.tmp-", dir=os.path.dirname(out_abs))
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the result is an ordinary folder
        save_file(tensors, os.path.join(tmp, checkpoint_io.WEIGHTS_NAME), metadata={"format": "pt"})
        for name in COPIED_FILES:
            src = os.path.join(model_dir, name)
            if os.path.isfile(src):
                shutil.copyfile(src, os.path.join(tmp, name))
        checkpoint_io.write_json_atomic(os.path.join(tmp, checkpoint_io.CONFIG_NAME), config)
        if os.path.isdir(out_abs):  # checked empty before any work
            os.rmdir(out_abs)
        os.rename(tmp, out_abs)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def summary_json(summary: dict) -> str:
    return json.dumps(summary, sort_keys=True)
