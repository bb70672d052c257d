"""Rotary embedding application in composed MindSpore ops: the reference the
fused RoPE kernel (ops/rope.py) is checked against, and what models use."""

from __future__ import annotations

from mindspore import mint


def rotate_half(x):
    """(x1, x2) halves of the last axis -> (-x2, x1), as transformers' rotate_half."""
    half = x.shape[-1] // 2
    return mint.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rope(x, cos, sin):
    """x (B, heads, S, D); cos/sin (1 or B, 1, S, D) broadcast over heads."""
    return x * cos.astype(x.dtype) + rotate_half(x) * sin.astype(x.dtype)


def deinterleave(x):
    """(.., D) pairs (x0, x1), (x2, x3), ... -> (x0, x2, ..., x1, x3, ...): DeepSeek's
    interleaved rotary layout turned into the rotate_half layout (HF `rope_interleave`)."""
    shape = x.shape
    return x.reshape(shape[:-1] + (shape[-1] // 2, 2)).swapaxes(-1, -2).reshape(shape)


def apply_rope_interleaved(x, cos, sin):
    """RoPE for DeepSeek's interleaved layout: deinterleave, then `apply_rope`."""
    return apply_rope(deinterleave(x), cos, sin)
