"""Loading a quantized folder: read `quantization_config`, turn each linear
that has quantized tensors into a QuantLinear, and take those tensors out of
the state dict (the rest loads as usual in models.base).

Understood layouts (mft.quant.layout): `quant_method: "awq"` (bits 4, version
gemm, zero_point true: AutoAWQ's GEMM packing); `quant_method: "gptq"` with bits 4,
desc_act false (`checkpoint_format` "gptq" stores zero - 1, "gptq_v2" the zero
itself); `quant_method: "compressed-tensors"`, format "int-quantized", 8-bit
symmetric per-channel weights, either without activation quantization (w8a16)
or with dynamic symmetric per-token int8 input activations (w8a8, SmoothQuant
folded into the weights: nothing else to read); its `kv_cache_scheme` may be
the int8 static per-head cache of kv8 (num_bits 8, type int, strategy
attn_head, `<attention>.k_scale` / `.v_scale` (kv_heads, 1, 1)), with those
weights or alone (format "dense", no config_groups).
"""

from __future__ import annotations

import numpy as np

from mft.errors import MftError
from mft.quant import layout


def parse_config(qcfg, source: str) -> dict:
    """-> {"bits": 4|8, "zero_offset": 1|0, "act_bits": 8|None}; MftError naming the key otherwise."""
    where = f"{source}: quantization_config"
    if not isinstance(qcfg, dict):
        raise MftError(f"{where}: expected an object")
    method = qcfg.get("quant_method")
    if method == "awq":
        bits = qcfg.get("bits", qcfg.get("w_bit"))
        if bits != 4:
            raise MftError(f"{where}.bits={bits!r}: mft loads 4-bit AWQ checkpoints only")
        version = str(qcfg.get("version", "gemm")).lower()
        if version != "gemm":
            raise MftError(f"{where}.version={version!r}: mft loads the AWQ GEMM layout only")
        if qcfg.get("zero_point", True) is not True:
            raise MftError(f"{where}.zero_point: mft loads AWQ checkpoints with zero points only")
        return {"bits": 4, "zero_offset": 0, "act_bits": None, "format": "awq", "kv": False}
    if method == "gptq":
        if qcfg.get("bits") != 4:
            raise MftError(f"{where}.bits={qcfg.get('bits')!r}: mft loads 4-bit GPTQ checkpoints only")
        if qcfg.get("desc_act"):
            raise MftError(f"{where}.desc_act=true: act-order checkpoints are not supported")
        fmt = qcfg.get("checkpoint_format", "gptq")
        if fmt not in ("gptq", "gptq_v2"):
            raise MftError(f"{where}.checkpoint_format={fmt!r}: expected gptq or gptq_v2")
        return {"bits": 4, "zero_offset": 1 if fmt == "gptq" else 0, "act_bits": None, "format": "gptq", "kv": False}
    if method == "compressed-tensors":
        groups = qcfg.get("config_groups") or {}
        kv = _parse_kv_scheme(qcfg.get("kv_cache_scheme"), where)
        if qcfg.get("format") == "dense" and not groups and kv:  # kv8 alone: float weights, int8 KV cache
            return {"bits": None, "zero_offset": 0, "act_bits": None, "format": "compressed-tensors", "kv": True}
        if qcfg.get("format") != "int-quantized":
            raise MftError(f"{where}.format={qcfg.get('format')!r}: mft loads format int-quantized (or dense with "
                           "only a kv_cache_scheme)")
        act_bits = set()
        for gname, group in groups.items():
            w = (group or {}).get("weights") or {}
            if (w.get("num_bits"), w.get("type"), w.get("strategy"), w.get("symmetric")) != (8, "int", "channel", True):
                raise MftError(f"{where}.config_groups.{gname}.weights: mft loads 8-bit int symmetric per-channel weights only")
            acts = group.get("input_activations")
            if acts is not None:
                got = (acts.get("num_bits"), acts.get("type"), acts.get("symmetric"), acts.get("strategy"), acts.get("dynamic"))
                if got != (8, "int", True, "token", True):
                    raise MftError(f"{where}.config_groups.{gname}.input_activations: mft loads dynamic symmetric "
                                   f"per-token 8-bit int activations only (num_bits 8, type int, symmetric, strategy "
                                   f"token, dynamic true); got {acts}")
            act_bits.add(8 if acts is not None else None)
        if len(act_bits) > 1:
            raise MftError(f"{where}.config_groups: groups mixing quantized and float activations are not supported")
        return {"bits": 8, "zero_offset": 0, "act_bits": next(iter(act_bits), None), "format": "compressed-tensors",
                "kv": kv}
    raise MftError(f"{where}.quant_method={method!r}: mft loads gptq / awq (int4) and compressed-tensors (int8)")


def _parse_kv_scheme(kv, where: str) -> bool:
    """compressed-tensors `kv_cache_scheme`: None, or the int8 static per-head layout mft writes (kv8)."""
    if kv is None:
        return False
    if not isinstance(kv, dict):
        raise MftError(f"{where}.kv_cache_scheme: expected an object or null")
    got = (kv.get("num_bits"), kv.get("type"), kv.get("symmetric"), kv.get("strategy"), kv.get("dynamic"))
    if got != (8, "int", True, "attn_head", False):
        raise MftError(f"{where}.kv_cache_scheme: mft runs an int8 KV cache with static symmetric per-head scales only "
                       f"(num_bits 8, type int, symmetric true, strategy attn_head, dynamic false); got {kv}")
    return True


def _apply_kv_scales(model, tensors: dict, source: str) -> int:
    """Gives every attention layer its int8 KV scales (popped from `tensors`); the model's caches become int8."""
    from mft.ops.kv_int8 import KVScales
    from mft.quant.kv_calibration import kv_attention_layers

    layers = kv_attention_layers(model, f"{source}: quantization_config.kv_cache_scheme")
    for prefix, attn in layers:
        scales = []
        for which in ("k_scale", "v_scale"):
            name = f"{prefix}.{which}"
            if name not in tensors:
                raise MftError(f"{source}: kv_cache_scheme is set but tensor {name} is missing")
            arr = np.asarray(tensors.pop(name), np.float32)
            if arr.size != attn.num_kv_heads or arr.shape not in ((attn.num_kv_heads,), (attn.num_kv_heads, 1, 1)):
                raise MftError(f"{source}: {name} must be ({attn.num_kv_heads}, 1, 1) (one scale per kv head); got {arr.shape}")
            if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
                raise MftError(f"{source}: {name} must hold positive finite scales")
            scales.append(arr.reshape(-1))
        attn.quant_kv = KVScales(*scales)
        # Assigning the cell renamed its parameters to the bare "quant_kv.k_scale" (the same in every layer,
        # which a compiled graph refuses): give them the layer's name.
        attn.quant_kv.k_scale.name = f"{prefix}.quant_kv.k_scale"
        attn.quant_kv.v_scale.name = f"{prefix}.quant_kv.v_scale"
        attn.kv_int8 = True
    model.kv_cache_int8 = True
    return len(layers)


def _apply_expert_stacks(model, info: dict, tensors: dict, source: str) -> int:
    """MoE expert stacks whose experts have quantized tensors -> mft.quant.grouped cells; returns experts done."""
    from mft.quant.grouped import to_quant_grouped
    from mft.quant.targets import expert_prefix, expert_stacks

    done = 0
    for prefix, (path, cell) in expert_stacks(model).items():
        first = expert_prefix(prefix, 0)
        if info["bits"] is None or (f"{first}.qweight" not in tensors and f"{first}.weight_scale" not in tensors):
            continue
        if getattr(cell, "global_experts", None) not in (None, cell.num_experts):
            raise MftError(f"{source}: quantized MoE experts load with expert parallel size 1 only")
        qs, scales, zeros = [], [], []
        for e in range(cell.num_experts):
            name = expert_prefix(prefix, e)
            if info["bits"] == 4:
                if f"{name}.qweight" not in tensors:
                    raise MftError(f"{source}: {name}.qweight is missing (expert 0 of this layer is quantized)")
                q, sc, z = _read_int4(info, name, tensors, source)
                for suffix in ("qweight", "qzeros", "scales", "g_idx"):
                    tensors.pop(f"{name}.{suffix}", None)
                zeros.append(z)
            else:
                if f"{name}.weight_scale" not in tensors or f"{name}.weight" not in tensors:
                    raise MftError(f"{source}: {name}.weight / weight_scale are missing (expert 0 of this layer is quantized)")
                q = tensors.pop(f"{name}.weight")
                sc = np.asarray(tensors.pop(f"{name}.weight_scale"), np.float32).reshape(-1)
                if q.dtype != np.int8:
                    raise MftError(f"{source}: {name}.weight must be int8, got {q.dtype}")
            if q.shape != (cell.out_features, cell.in_features):
                raise MftError(f"{source}: {name} holds {q.shape} weights, the model expects "
                               f"{(cell.out_features, cell.in_features)}")
            qs.append(q)
            scales.append(sc)
        to_quant_grouped(cell, path, info["bits"], np.stack(qs), np.stack(scales), np.stack(zeros) if zeros else None,
                         act_bits=info["act_bits"])
        done += cell.num_experts
    return done


def _read_int4(info: dict, prefix: str, tensors: dict, source: str):
    """(q (N, K), scales (N, G), zeros (N, G)) with w = (q - zero) * scale, from either int4 layout."""
    if info["format"] == "awq":
        return layout.read_awq(prefix, tensors, source)
    q, scales, zeros = layout.read_gptq(prefix, tensors, source)
    return q, scales, zeros + (info["zero_offset"] - 1)


def apply_quantized(model, qcfg, tensors: dict, source: str, fused: bool = True) -> int:
    """Swaps in QuantLinear cells for every linear with quantized tensors; pops
    those tensors; with a kv_cache_scheme, attaches each attention layer's int8
    KV scales. Returns how many linears were quantized."""
    from mft.quant.linear import to_quant_linear
    from mft.quant.targets import quantizable_linears

    info = parse_config(qcfg, source)
    count = 0
    kv_layers = _apply_kv_scales(model, tensors, source) if info["kv"] else 0
    for prefix, (path, cell) in quantizable_linears(model).items():
        if getattr(cell, "tp_size", 1) > 1:
            raise MftError(f"{source}: quantized checkpoints load with tensor parallel size 1 only (parallel.tp = {cell.tp_size})")
        if info["bits"] == 4 and f"{prefix}.qweight" in tensors:
            q, scales, zeros = _read_int4(info, prefix, tensors, source)
            if q.shape != (cell.out_features, cell.in_features):
                raise MftError(f"{source}: {prefix}.qweight unpacks to {q.shape}, the model expects {(cell.out_features, cell.in_features)}")
            if (q.shape[1] // scales.shape[1]) % 16:
                raise MftError(f"{source}: {prefix}: group size {q.shape[1] // scales.shape[1]} is not a multiple of 16 (int4 kernel)")
            for s in ("qweight", "qzeros", "scales", "g_idx"):
                tensors.pop(f"{prefix}.{s}", None)
            to_quant_linear(cell, path, 4, layout.kernel_int4(q), scales, zeros, fused)
            count += 1
        elif info["bits"] == 8 and f"{prefix}.weight_scale" in tensors:
            w = tensors.pop(f"{prefix}.weight")
            scale = np.asarray(tensors.pop(f"{prefix}.weight_scale"), np.float32).reshape(-1)
            if w.dtype != np.int8 or w.shape != (cell.out_features, cell.in_features) or scale.shape != (cell.out_features,):
                raise MftError(f"{source}: {prefix}.weight must be int8 {(cell.out_features, cell.in_features)} with a "
                               f"({cell.out_features}, 1) weight_scale; got {w.dtype} {w.shape} and {scale.shape}")
            to_quant_linear(cell, path, 8, w, scale, None, fused, act_bits=info["act_bits"])
            count += 1
    count += _apply_expert_stacks(model, info, tensors, source)
    if count == 0 and info["bits"] is not None:
        raise MftError(f"{source}: config.json has a quantization_config but no linear has quantized tensors")
    # HF weight names the family mapping declares but these cells no longer hold as float (models.base skips them).
    from mft.quant.targets import expert_prefix, expert_stacks

    names = {f"{prefix}.weight" for prefix, (_, cell) in quantizable_linears(model).items()
             if getattr(cell, "is_quantized", False)}
    for prefix, (_, cell) in expert_stacks(model).items():
        if getattr(cell, "is_quantized", False):
            names.update(f"{expert_prefix(prefix, e)}.weight" for e in range(cell.num_experts))
    model.quantized_weights = frozenset(names)
    return count


def dequantized_state_dict(folder: str) -> tuple[dict, dict]:
    """(raw config without quantization_config, float32 HF tensors): the
    dequantized twin of a quantized folder, loadable as an ordinary model."""
    from mft.models import checkpoint_io
    from mft.quant import rtn

    raw = checkpoint_io.read_config(folder)
    qcfg = raw.pop("quantization_config", None)
    tensors, source = checkpoint_io.read_weights(folder)
    info = parse_config(qcfg, source)
    out = {}
    if info["kv"]:  # the twin keeps a float cache
        tensors = {k: v for k, v in tensors.items() if not k.endswith((".k_scale", ".v_scale"))}
    for name in list(tensors):
        if info["bits"] == 4 and name.endswith(".qweight"):
            prefix = name[: -len(".qweight")]
            out[f"{prefix}.weight"] = rtn.dequantize_int4(*_read_int4(info, prefix, tensors, source))
        elif info["bits"] == 8 and name.endswith(".weight_scale"):
            prefix = name[: -len(".weight_scale")]
            out[f"{prefix}.weight"] = rtn.dequantize_int8(tensors[f"{prefix}.weight"], tensors[name].reshape(-1))
    for name, arr in tensors.items():
        prefix = name.rsplit(".", 1)[0]
        if f"{prefix}.weight" in out and name.rsplit(".", 1)[1] in ("qweight", "qzeros", "scales", "g_idx", "weight", "weight_scale"):
            continue
        out[name] = arr
    return raw, out
