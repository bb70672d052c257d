"""An int8 KV cache with static per-(layer, kv head) scales (`mft quantize --scheme kv8`).

A key/value row x of kv head h is stored as q = clamp(round(x / s_h), -127, 127)
(int8) and read back as q * s_h (float32); s_h = max |x| / 127 over the
calibration set (mft.quant.kv_calibration). Every attention path rounds the
chunk's own keys/values to that grid too (`fake_quant`), so the model without
a cache (eval), with the dense int8 cache (generate) and over the paged int8
pools (serve) see the same numbers.

- `quantize`, `dequantize`, `fake_quant`: composed MindSpore ops over
  (B, kv_heads, S, D) tensors and a (kv_heads,) scale.
- `paged_attention_int8(..., fused=True)`: the C++ paged-attention kernel
  (csrc/kernels/paged_attention.cc, `paged_attention_forward_int8`) reading
  int8 pools in place and dequantizing each row with its head's scale (folded
  into the score / the softmax weight); `fused=False` is the composed
  reference: dequantize the pools, then `paged_attention_reference`.
"""

from __future__ import annotations

import mindspore as ms
from mindspore import Parameter, nn, ops

from mft.errors import MftError
from mft.ops import registry
from mft.ops.paged_attention import paged_attention_reference

QMAX = 127.0
OP = "mft.paged_attention_int8"


def _per_head(scale, ndim: int):
    """(kv_heads,) -> broadcastable over (B, kv_heads, S, D) (ndim 4) or (slots, kv_heads, D) (ndim 3)."""
    return scale.reshape(1, -1, 1, 1) if ndim == 4 else scale.reshape(1, -1, 1)


def quantize(x, scale):
    """float (B, kv_heads, S, D) or (slots, kv_heads, D) -> int8 on the per-head grid."""
    q = ops.round(x.astype(ms.float32) / _per_head(scale, x.ndim))
    return ops.clamp(q, -QMAX, QMAX).astype(ms.int8)


def dequantize(q, scale, dtype=ms.float32):
    """int8 cache values q times their per-head scale, as `dtype`."""
    return (q.astype(ms.float32) * _per_head(scale, q.ndim)).astype(dtype)


def fake_quant(x, scale):
    """x rounded to the int8 grid, kept in x's dtype (what a cache round trip returns)."""
    return dequantize(quantize(x, scale), scale, x.dtype)


def paged_attention_int8_reference(q, k_new, v_new, k_pool, v_pool, k_scale, v_scale, block_tables, context_lens,
                                   block_size: int, slot_offset=0, scale=None):
    """Composed: the whole int8 pools dequantized with their heads' scales, then the float reference."""
    return paged_attention_reference(q, k_new, v_new, dequantize(k_pool, k_scale), dequantize(v_pool, v_scale),
                                     block_tables, context_lens, block_size, slot_offset, scale)


def _element_type(dtype):
    return dtype.element_type() if hasattr(dtype, "element_type") else dtype


def _shape(q, k_new, v_new, k, v, tables, lens, k_scale, v_scale, scale, meta):
    if len(q) != 4 or len(k) != 3 or tuple(k) != tuple(v) or tuple(k_new) != tuple(v_new):
        raise MftError(f"paged_attention_int8: q must be (batch, heads, q_len, dim), k_new == v_new shapes and "
                       f"k_pool == v_pool shapes (slots, kv_heads, dim); got q {tuple(q)}, k_new {tuple(k_new)}, "
                       f"k_pool {tuple(k)}, v_pool {tuple(v)}")
    b, heads, sq, d = q
    if k[2] != d or heads % k[1] != 0 or tuple(k_new) != (b, k[1], sq, d):
        raise MftError(f"paged_attention_int8: pools must be (slots, kv_heads, {d}) with heads ({heads}) a multiple of "
                       f"kv_heads and k_new (batch, kv_heads, q_len, dim); got k_pool {tuple(k)}, k_new {tuple(k_new)}")
    if tuple(k_scale) != (k[1],) or tuple(v_scale) != (k[1],):
        raise MftError(f"paged_attention_int8: k_scale and v_scale must be (kv_heads={k[1]},); got {tuple(k_scale)}, "
                       f"{tuple(v_scale)}")
    if len(tables) != 2 or tables[0] != b or tuple(lens) != (b,):
        raise MftError(f"paged_attention_int8: block_tables must be (batch={b}, max_blocks) and context_lens (batch,); "
                       f"got {tuple(tables)} and {tuple(lens)}")
    return [b, sq, heads, d]


def _dtype(q, k_new, v_new, k, v, tables, lens, k_scale, v_scale, scale, meta):
    for what, dt, want in (("q", q, ms.float32), ("k_new", k_new, ms.float32), ("v_new", v_new, ms.float32),
                           ("k_pool", k, ms.int8), ("v_pool", v, ms.int8), ("k_scale", k_scale, ms.float32),
                           ("v_scale", v_scale, ms.float32), ("block_tables", tables, ms.int32),
                           ("context_lens", lens, ms.int32)):
        if _element_type(dt) != want:
            raise MftError(f"paged_attention_int8(fused=True): {what} must be {want}, got {dt}; use fused=False")
    return ms.float32


_OP = None


def fused_op():
    """The aot primitive: op(q, k_new, v_new, k_pool i8, v_pool i8, block_tables, context_lens, k_scale (KVH,),
    v_scale (KVH,), scale (1,) f32, meta (2,) int32 = [block_size, slot_offset]) -> (B, Sq, heads, D)."""
    global _OP
    _OP = registry.register_aot_op(OP, registry.kernels_library(), "MftPagedAttentionInt8", out_shape=_shape,
                                   out_dtype=_dtype)
    return _OP


registry.build_at_import(fused_op)  # graph-mode code reads the op as a global


def kernel_available() -> bool:
    """True where the C++ int8 paged-attention kernel (MftPagedAttentionInt8) loads."""
    return registry.builds(fused_op)


def fused_paged_attention_int8(q, k_new, v_new, k_pool, v_pool, k_scale, v_scale, block_tables, context_lens,
                               block_size: int, slot_offset: int, scale=None):
    """The kernel without Python-side checks, for graph-mode code (mft.models.common.attention.attend)."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    meta = ms.Tensor([block_size, slot_offset], ms.int32)
    return _OP(q, k_new, v_new, k_pool, v_pool, block_tables, context_lens, k_scale, v_scale,
               ops.full((1,), scale, dtype=ms.float32), meta)


def paged_attention_int8(q, k_new, v_new, k_pool, v_pool, k_scale, v_scale, block_tables, context_lens,
                         block_size: int, slot_offset: int = 0, scale=None, fused=True):
    """(B, Sq, heads, D) attention over int8 pools; the arguments of mft.ops.paged_attention plus the
    layer's (kv_heads,) float32 k_scale / v_scale."""
    if block_size < 1 or block_size & (block_size - 1):
        raise MftError(f"paged_attention_int8: block_size={block_size} must be a power of two")
    if not fused:
        return paged_attention_int8_reference(q, k_new, v_new, k_pool, v_pool, k_scale, v_scale, block_tables,
                                              context_lens, block_size, slot_offset, scale)
    if _OP is None:
        fused_op()
    return fused_paged_attention_int8(q, k_new, v_new, k_pool, v_pool, k_scale, v_scale, block_tables, context_lens,
                                      block_size, slot_offset, scale)


class KVScales(nn.Cell):
    """One attention layer's static int8 KV scales: k_scale, v_scale (kv_heads,) float32, frozen."""

    def __init__(self, k_scale, v_scale, path: str = "quant_kv"):
        super().__init__()
        import numpy as np

        self.k_scale = Parameter(ms.Tensor(np.asarray(k_scale, np.float32).reshape(-1)), name=f"{path}.k_scale",
                                 requires_grad=False)
        self.v_scale = Parameter(ms.Tensor(np.asarray(v_scale, np.float32).reshape(-1)), name=f"{path}.v_scale",
                                 requires_grad=False)
