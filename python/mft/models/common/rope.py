"""Rotary position embeddings.

`inv_freq` is computed in numpy float32 with the same operation order as
Hugging Face's rope initialisers, and cos/sin are formed the way transformers
forms them, so they match to the last bit or two. Each rope_type is one function in `ROPE_INIT`;
adding llama3 or yarn scaling means adding a function there (it may also
return an attention scaling factor that multiplies cos and sin, as yarn does).
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

import mindspore as ms
from mindspore import mint, nn, ops


def _default_inv_freq(head_dim: int, theta: float, params: dict) -> tuple[np.ndarray, float]:
    exponents = np.arange(0, head_dim, 2, dtype=np.int64).astype(np.float32) / np.float32(head_dim)
    inv_freq = np.float32(1.0) / np.power(np.float32(theta), exponents, dtype=np.float32)
    return inv_freq.astype(np.float32), 1.0


def _linear_inv_freq(head_dim: int, theta: float, params: dict) -> tuple[np.ndarray, float]:
    """Position interpolation: every frequency divided by `factor`."""
    inv_freq, _ = _default_inv_freq(head_dim, theta, params)
    return (inv_freq / np.float32(params["factor"])).astype(np.float32), 1.0


def _llama3_inv_freq(head_dim: int, theta: float, params: dict) -> tuple[np.ndarray, float]:
    """Llama 3.1 scaling: long wavelengths divided by `factor`, short ones kept,
    the band between blended linearly in 1/wavelength (all fp32, HF's order)."""
    inv_freq, _ = _default_inv_freq(head_dim, theta, params)
    factor = np.float32(params["factor"])
    low, high = float(params["low_freq_factor"]), float(params["high_freq_factor"])
    context = float(params["original_max_position_embeddings"])
    low_freq_wavelen, high_freq_wavelen = context / low, context / high
    wavelen = np.float32(2 * np.pi) / inv_freq
    scaled = np.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq).astype(np.float32)
    smooth = ((np.float32(context) / wavelen - np.float32(low)) / np.float32(high - low)).astype(np.float32)
    blended = ((np.float32(1) - smooth) * scaled / factor + smooth * scaled).astype(np.float32)
    medium = ~(wavelen < high_freq_wavelen) & ~(wavelen > low_freq_wavelen)
    return np.where(medium, blended, scaled).astype(np.float32), 1.0


def _yarn_mscale(scale: float, mscale: float = 1.0) -> float:
    return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0


def _yarn_inv_freq(head_dim: int, theta: float, params: dict) -> tuple[np.ndarray, float]:
    """YaRN (DeepSeek-V3, Qwen long context): frequencies whose wavelength fits the original
    context many times (beta_fast rotations) are kept, those fitting fewer than beta_slow
    rotations are divided by `factor`, with a linear ramp between; cos/sin are scaled by
    the attention factor (mscale ratio). Same formulas and order as transformers'."""
    original = params.get("original_max_position_embeddings") or params.get("max_position_embeddings")
    factor = params.get("factor")
    # transformers 5 scales by `factor` (4.x used max_position_embeddings / original instead, which differs
    # for Qwen-style configs: factor 4 with both lengths 32768); the ratio only stands in for a null factor.
    factor = float(factor) if factor is not None else float(params["max_position_embeddings"]) / float(original)
    attention_factor = params.get("attention_factor")
    mscale, mscale_all_dim = params.get("mscale"), params.get("mscale_all_dim")
    if attention_factor is None:
        if mscale and mscale_all_dim:
            attention_factor = _yarn_mscale(factor, mscale) / _yarn_mscale(factor, mscale_all_dim)
        else:
            attention_factor = _yarn_mscale(factor)
    beta_fast = params.get("beta_fast") or 32
    beta_slow = params.get("beta_slow") or 1

    def correction_dim(rotations):
        return (head_dim * math.log(original / (rotations * 2 * math.pi))) / (2 * math.log(theta))

    low, high = correction_dim(beta_fast), correction_dim(beta_slow)
    if params.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, head_dim - 1)
    if low == high:
        high += 0.001
    ramp = np.clip((np.arange(head_dim // 2, dtype=np.float32) - np.float32(low)) / np.float32(high - low), 0, 1).astype(np.float32)
    pos_freqs = np.power(np.float32(theta), np.arange(0, head_dim, 2, dtype=np.int64).astype(np.float32) / np.float32(head_dim), dtype=np.float32)
    extrapolation = np.float32(1.0) / pos_freqs
    interpolation = np.float32(1.0) / (np.float32(factor) * pos_freqs)
    keep = np.float32(1.0) - ramp
    inv_freq = interpolation * (np.float32(1.0) - keep) + extrapolation * keep
    return inv_freq.astype(np.float32), float(attention_factor)


# rope_type -> f(head_dim, theta, extra params) -> (inv_freq float32 (head_dim/2,), attention_scaling)
ROPE_INIT: dict[str, Callable[[int, float, dict], tuple[np.ndarray, float]]] = {
    "default": _default_inv_freq,
    "linear": _linear_inv_freq,
    "llama3": _llama3_inv_freq,
    "yarn": _yarn_inv_freq,
}
# Keys each rope_type needs in rope_parameters / rope_scaling.
ROPE_REQUIRED: dict[str, tuple[str, ...]] = {
    "default": (),
    "linear": ("factor",),
    "llama3": ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"),
    "yarn": ("factor",),
}


class RotaryEmbedding(nn.Cell):
    """Positions -> cos, sin (broadcastable to (B, heads, S, head_dim)), computed on the fly like HF.

    freqs = position * inv_freq in fp32 (one rounding, as HF's fp32 outer
    product), duplicated to head_dim, then cos/sin times the scaling factor.
    No (max_positions, head_dim) table is kept, so long contexts cost nothing.
    """

    def __init__(self, rope_type: str, head_dim: int, theta: float, params: dict | None = None):
        super().__init__()
        inv_freq, scaling = ROPE_INIT[rope_type](head_dim, theta, params or {})
        self.inv_freq = ms.Tensor(inv_freq.reshape(1, -1))
        self.attention_scaling = float(scaling)

    def construct(self, positions):
        """positions (S,) shared by the batch -> (1, 1, S, D); per-row (B, S) -> (B, 1, S, D)."""
        freqs = positions.astype(ms.float32).expand_dims(-1) * self.inv_freq
        emb = mint.cat((freqs, freqs), dim=-1)
        cos = ops.cos(emb)
        sin = ops.sin(emb)
        if self.attention_scaling != 1.0:
            cos = cos * self.attention_scaling
            sin = sin * self.attention_scaling
        if positions.ndim == 1:
            return cos.expand_dims(0).expand_dims(0), sin.expand_dims(0).expand_dims(0)
        return cos.expand_dims(1), sin.expand_dims(1)
