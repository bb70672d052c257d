"""AWQ (Lin et al., 2024): activation-aware scaling for int4 weights.

Input channels that carry large activations matter most for a linear's
output, so AWQ scales those weight columns up before round-to-nearest (their
relative rounding error shrinks) and divides the input by the same factors,
folded into the producing layer exactly as SmoothQuant does (the same groups,
mft.quant.smoothquant.find_groups: norms -> q/k/v and gate/up, up_proj rows ->
down_proj). Per group the factor is s = m^r / sqrt(max(m^r) min(m^r)), m the
mean |x| of each input channel over the calibration data, and the exponent r
is searched on a grid of `GRID` values in [0, 1): the chosen r minimises the
group's output error on the calibration inputs,
    sum over the group's linears of tr(dW H dW^T),  dW = W - Q(W s) / s,
with H = X^T X / rows (the GPTQ Hessian, so no activations are kept). r = 0 is
plain RTN, so the search never does worse than RTN on that objective. (The
reference implementation also searches a per-group weight clipping range;
that is not done here.)
"""

from __future__ import annotations

import numpy as np

from mft.quant import rtn
from mft.quant.smoothquant import find_groups

GRID = 20


def output_error(w: np.ndarray, w_hat: np.ndarray, h: np.ndarray) -> float:
    d = (np.asarray(w, np.float64) - w_hat)
    return float(np.einsum("nk,kl,nl->", d, h, d))


def _deq_scaled(w: np.ndarray, s: np.ndarray, group_size: int) -> np.ndarray:
    q, scales, zeros = rtn.quantize_int4(w * s[None, :], group_size)
    return rtn.dequantize_int4(q, scales, zeros).astype(np.float64) / s[None, :]


def search_scale(weights: list, hessians: list, act_mean: np.ndarray, group_size: int) -> tuple[np.ndarray, float, dict]:
    """-> (s (K,) float32, best r, {r: error}) for one group of linears reading the same input."""
    m = np.maximum(np.asarray(act_mean, np.float64), 1e-8)
    errors = {}
    best = (None, None, np.inf)
    for r in np.arange(GRID) / GRID:
        s = np.clip(m ** r, 1e-4, None)
        s = s / np.sqrt(s.max() * s.min())
        s32 = s.astype(np.float32)
        err = sum(output_error(w, _deq_scaled(np.asarray(w, np.float32), s32, group_size), h) for w, h in zip(weights, hessians))
        errors[float(r)] = err
        if err < best[2]:
            best = (s32, float(r), err)
    return best[0], best[1], errors


def apply_awq(tensors: dict, linear_names, stats: dict, group_size: int, log=None) -> dict:
    """Searches and folds the AWQ scales into `tensors` (HF float state dict, in place):
    weights' columns * s, the producer / s. stats: prefix -> {"h", "absmean"} (calibration.collect_stats).
    Returns consumer prefix -> (s, r); the Hessians in `stats` are rescaled to the new inputs X / s."""
    out = {}
    for prod, cons in find_groups(linear_names, tensors):
        weights = [np.asarray(tensors[f"{c}.weight"], np.float32) for c in cons]
        hs = [stats[c]["h"] for c in cons]
        mean = np.mean(np.stack([stats[c]["absmean"] for c in cons]), axis=0)
        s, r, _ = search_scale(weights, hs, mean, group_size)
        pw = np.asarray(tensors[f"{prod}.weight"], np.float32)
        if pw.ndim == 1:
            tensors[f"{prod}.weight"] = (pw / s).astype(pw.dtype)
        else:
            tensors[f"{prod}.weight"] = (pw / s[:, None]).astype(pw.dtype)
            if f"{prod}.bias" in tensors:
                b = np.asarray(tensors[f"{prod}.bias"], np.float32)
                tensors[f"{prod}.bias"] = (b / s).astype(b.dtype)
        inv = 1.0 / s.astype(np.float64)
        for c, w in zip(cons, weights):
            tensors[f"{c}.weight"] = w * s[None, :]
            stats[c]["h"] = stats[c]["h"] * inv[:, None] * inv[None, :]
            out[c] = (s, r)
        if log is not None:
            log(f"awq {prod} -> {', '.join(c.rsplit('.', 1)[-1] for c in cons)}: r = {r:.2f}")
    return out
