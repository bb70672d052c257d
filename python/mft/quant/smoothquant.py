"""SmoothQuant (Xiao et al., 2023): move the activation outliers of a linear's
input channels into its weights before W8A8 quantization.

For a group of linears that read the same input X (e.g. q/k/v after
`input_layernorm`), with per-input-channel maxima a_j = max|X[:, j]| from the
calibration data and w_j = max over the group's weights of |W[:, j]|, the
smoothing factor is s_j = a_j^alpha / w_j^(1 - alpha) (alpha = migration
strength). X / s and W * s give the same product, and X / s is folded into the
layer that produces X: the RMSNorm weight (divided by s), or for down_proj the
rows of up_proj (SwiGLU: down's input is act(gate) * up, linear in up's rows).
Nothing extra is stored: the folded weights are an ordinary checkpoint.

Groups (per decoder layer `model.layers.i`; a group is used only when every
listed linear is being quantized and the producer's size matches):
  input_layernorm          -> self_attn.{q,k,v}_proj   (or MLA q_a_proj/q_proj + kv_a_proj_with_mqa)
  self_attn.q_a_layernorm  -> self_attn.q_b_proj
  self_attn.kv_a_layernorm -> self_attn.kv_b_proj
  post_attention_layernorm -> mlp.{gate,up}_proj       (dense MLPs; MoE experts stay float)
  mlp.up_proj (rows)       -> mlp.down_proj
o_proj (its input is the attention output) is quantized without smoothing.
"""

from __future__ import annotations

import re

import numpy as np

SMOOTH_GROUPS = (
    ("input_layernorm", ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")),
    ("input_layernorm", ("self_attn.q_a_proj", "self_attn.kv_a_proj_with_mqa")),
    ("input_layernorm", ("self_attn.q_proj", "self_attn.kv_a_proj_with_mqa")),
    ("self_attn.q_a_layernorm", ("self_attn.q_b_proj",)),
    ("self_attn.kv_a_layernorm", ("self_attn.kv_b_proj",)),
    ("post_attention_layernorm", ("mlp.gate_proj", "mlp.up_proj")),
    ("mlp.up_proj", ("mlp.down_proj",)),
)
MIN_SCALE = 1e-5


def smoothing_factors(act_max: np.ndarray, weights: list, alpha: float) -> np.ndarray:
    """s (K,) for one group: act_max (K,) and the group's (N_i, K) weights."""
    w_max = np.max(np.stack([np.abs(np.asarray(w, np.float32)).max(axis=0) for w in weights]), axis=0)
    a = np.asarray(act_max, np.float64)
    w = w_max.astype(np.float64)
    live = (a > 0) & (w > 0)
    s = np.ones_like(a)
    s[live] = a[live] ** alpha / w[live] ** (1.0 - alpha)
    return np.clip(s, MIN_SCALE, 1.0 / MIN_SCALE).astype(np.float32)


def find_groups(linear_names, tensors: dict) -> list[tuple[str, list[str]]]:
    """(producer HF prefix, [consumer HF prefixes]) for every smoothable group present."""
    names = set(linear_names)
    layers = sorted({m.group(1) for n in names if (m := re.match(r"^(.*\.layers\.\d+)\.", n))})
    groups = []
    for layer in layers:
        for producer, consumers in SMOOTH_GROUPS:
            prod = f"{layer}.{producer}"
            cons = [f"{layer}.{c}" for c in consumers]
            if not all(c in names for c in cons) or f"{prod}.weight" not in tensors:
                continue
            k = tensors[f"{cons[0]}.weight"].shape[1]
            if any(tensors[f"{c}.weight"].shape[1] != k for c in cons) or tensors[f"{prod}.weight"].shape[0] != k:
                continue
            if any(c in done for _, done in groups for c in cons):
                continue
            groups.append((prod, cons))
    return groups


def apply_smoothing(tensors: dict, linear_names, act_max: dict, alpha: float) -> dict:
    """Folds the smoothing into `tensors` (HF float state dict, modified in place).
    act_max: HF linear prefix -> (K,) max |input| per channel. Returns consumer prefix -> s."""
    out = {}
    for prod, cons in find_groups(linear_names, tensors):
        a = np.max(np.stack([np.asarray(act_max[c], np.float32) for c in cons]), axis=0)
        s = smoothing_factors(a, [tensors[f"{c}.weight"] for c in cons], alpha)
        pw = np.asarray(tensors[f"{prod}.weight"], np.float32)
        if pw.ndim == 1:  # RMSNorm weight
            tensors[f"{prod}.weight"] = (pw / s).astype(pw.dtype)
        else:  # a linear's output rows (and bias)
            tensors[f"{prod}.weight"] = (pw / s[:, None]).astype(pw.dtype)
            if f"{prod}.bias" in tensors:
                b = np.asarray(tensors[f"{prod}.bias"], np.float32)
                tensors[f"{prod}.bias"] = (b / s).astype(b.dtype)
        for c in cons:
            w = np.asarray(tensors[f"{c}.weight"], np.float32)
            tensors[f"{c}.weight"] = w * s[None, :]
            out[c] = s
    return out
