"""Decode attention over the paged KV cache of `mft serve`: fused C++ kernel and composed reference.

`paged_attention(q, k_new, v_new, k_pool, v_pool, block_tables, context_lens,
block_size, slot_offset=0, scale=None, fused=True)`:

- q (B, heads, Sq, D) float32: the last Sq positions of each row (Sq = 1 for
  decode, more for a prefill chunk); k_new, v_new (B, kv_heads, Sq, D): those
  positions' own keys/values (the model's layout; not read from the pools, the
  caller writes them to their slots afterwards);
- k_pool, v_pool (slots, kv_heads, D): the cached keys/values by slot, the
  runner's layout (python/mft/serving/paged_runner.py); a row's token at
  position p lives in slot
  `slot_offset + block_tables[b, p // block_size] * block_size + p % block_size`;
- block_tables (B, max_blocks) int32, context_lens (B,) int32 (the chunk included,
  so the table addresses context_lens - Sq cached positions);
- heads a multiple of kv_heads (GQA). Returns (B, Sq, heads, D); query i of row
  b sees the keys at positions <= context_lens[b] - Sq + i.

fused=True runs csrc/kernels/paged_attention.cc through MindSpore's aot Custom op
(CPU, float32; one pass over the row's blocks with an online softmax, the query
heads of a kv head together). fused=False (`paged_attention_reference`) gathers
the slots with MindSpore ops and runs matmul + mask + softmax + matmul, as the
paged runner's composed path does; any device and dtype.
"""

from __future__ import annotations

import mindspore as ms
from mindspore import mint, ops

from mft.errors import MftError
from mft.ops import registry

OP = "mft.paged_attention"
_MASKED = float(-3.4028234663852886e38)


def _element_type(dtype):
    return dtype.element_type() if hasattr(dtype, "element_type") else dtype


def context_slots(block_tables, block_size: int, slot_offset=0, length=None):
    """(B, L) int32 slots of positions 0..L-1 of every row (L = max_blocks * block_size by default)."""
    b, max_blocks = block_tables.shape
    length = max_blocks * block_size if length is None else length
    pos = ops.arange(0, length, dtype=ms.int32)
    blocks = ops.gather(block_tables, pos // block_size, 1)  # (B, L)
    return blocks * block_size + (pos % block_size).reshape(1, -1) + slot_offset


def paged_attention_reference(q, k_new, v_new, k_pool, v_pool, block_tables, context_lens, block_size: int,
                              slot_offset=0, scale=None):
    """Composed MindSpore ops: gather every table slot, put the chunk's keys at its positions,
    mask past each query's position, fp32 softmax."""
    b, heads, sq, d = q.shape
    kv_heads = k_pool.shape[1]
    n_rep = heads // kv_heads
    scale = d ** -0.5 if scale is None else float(scale)
    slots = context_slots(block_tables, block_size, slot_offset)  # (B, L)
    length = slots.shape[1]
    k = ops.gather(k_pool, slots.reshape(-1), 0).reshape(b, length, kv_heads, d).swapaxes(1, 2).astype(q.dtype)
    v = ops.gather(v_pool, slots.reshape(-1), 0).reshape(b, length, kv_heads, d).swapaxes(1, 2).astype(q.dtype)
    # Append the chunk at positions L..L+Sq-1 and map query i of row r (position ctx - Sq + i) onto
    # cached keys [0, ctx - Sq) plus chunk keys [L, L + i].
    k = mint.cat((k, k_new.astype(q.dtype)), dim=2)
    v = mint.cat((v, v_new.astype(q.dtype)), dim=2)
    if n_rep > 1:
        k = k.expand_dims(2).broadcast_to((b, kv_heads, n_rep, length + sq, d)).reshape(b, heads, length + sq, d)
        v = v.expand_dims(2).broadcast_to((b, kv_heads, n_rep, length + sq, d)).reshape(b, heads, length + sq, d)
    scores = (mint.matmul(q, k.swapaxes(-1, -2)) * scale).astype(ms.float32)  # (B, H, Sq, L + Sq)
    cached = (context_lens.astype(ms.int32) - sq).reshape(-1, 1, 1)
    key = ops.arange(0, length + sq, dtype=ms.int32).reshape(1, 1, -1)
    query = ops.arange(0, sq, dtype=ms.int32).reshape(1, -1, 1)
    allowed = mint.logical_or(key < cached, mint.logical_and(key >= length, key - length <= query))  # (B, Sq, L+Sq)
    scores = mint.where(allowed.expand_dims(1), scores, ms.Tensor(_MASKED, ms.float32))
    probs = mint.nn.functional.softmax(scores, dim=-1).astype(q.dtype)
    return mint.matmul(probs, v).swapaxes(1, 2)


def _shape(q, k_new, v_new, k, v, tables, lens, scale, meta):
    if len(q) != 4 or len(k) != 3 or tuple(k) != tuple(v) or tuple(k_new) != tuple(v_new):
        raise MftError(f"paged_attention: q must be (batch, heads, q_len, dim), k_new == v_new shapes and "
                       f"k_pool == v_pool shapes (slots, kv_heads, dim); got q {tuple(q)}, k_new {tuple(k_new)}, "
                       f"v_new {tuple(v_new)}, k_pool {tuple(k)}, v_pool {tuple(v)}")
    b, heads, sq, d = q
    if k[2] != d or k[1] <= 0 or heads % k[1] != 0 or tuple(k_new) != (b, k[1], sq, d):
        raise MftError(f"paged_attention: pools must be (slots, kv_heads, {d}) with heads ({heads}) a multiple of "
                       f"kv_heads and k_new (batch, kv_heads, q_len, dim); got k_pool {tuple(k)}, k_new {tuple(k_new)}")
    if len(tables) != 2 or tables[0] != b or tuple(lens) != (b,):
        raise MftError(f"paged_attention: block_tables must be (batch={b}, max_blocks) and context_lens "
                       f"(batch,); got {tuple(tables)} and {tuple(lens)}")
    return [b, sq, heads, d]


def _dtype(q, k_new, v_new, k, v, tables, lens, scale, meta):
    for what, dt in (("q", q), ("k_new", k_new), ("v_new", v_new), ("k_pool", k), ("v_pool", v)):
        if _element_type(dt) != ms.float32:
            raise MftError(f"paged_attention(fused=True): {what} dtype {dt} is not supported by the C++ "
                           "kernel (float32); use fused=False")
    for what, dt in (("block_tables", tables), ("context_lens", lens)):
        if _element_type(dt) != ms.int32:
            raise MftError(f"paged_attention: {what} must be int32, got {dt}")
    return ms.float32


def fused_op():
    """The aot primitive: op(q, k_new, v_new, k_pool, v_pool, block_tables, context_lens, scale (1,) f32,
    meta (2,) int32 = [block_size, slot_offset]) -> out (B, Sq, heads, D)."""
    global _OP
    _OP = registry.register_aot_op(OP, registry.kernels_library(), "MftPagedAttention",
                                   out_shape=_shape, out_dtype=_dtype)
    return _OP


_OP = None
registry.build_at_import(fused_op)  # graph-mode code reads the op as a global


def kernel_available() -> bool:
    """True where the fused kernel runs (mft's C++ library loads and the device target is not Ascend)."""
    return registry.builds(fused_op)


def paged_attention(q, k_new, v_new, k_pool, v_pool, block_tables, context_lens, block_size: int, slot_offset: int = 0,
                    scale=None, fused=True):
    """(B, Sq, heads, D) attention output; see the module docstring."""
    if block_size < 1 or block_size & (block_size - 1):
        raise MftError(f"paged_attention: block_size={block_size} must be a power of two")
    if not fused:
        return paged_attention_reference(q, k_new, v_new, k_pool, v_pool, block_tables, context_lens, block_size,
                                         slot_offset, scale)
    if _OP is None:
        fused_op()  # raises the MftError saying why the kernel is unavailable
    return fused_paged_attention(q, k_new, v_new, k_pool, v_pool, block_tables, context_lens, block_size, slot_offset,
                                 scale)


def fused_paged_attention(q, k_new, v_new, k_pool, v_pool, block_tables, context_lens, block_size: int,
                          slot_offset: int, scale=None):
    """The kernel without the Python-side checks, for graph-mode code (mft.serving's decode graphs):
    `block_size`, `slot_offset` and `scale` are Python numbers, the op is built (`kernel_available()`)."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    meta = ms.Tensor([block_size, slot_offset], ms.int32)
    return _OP(q, k_new, v_new, k_pool, v_pool, block_tables, context_lens, ops.full((1,), scale, dtype=ms.float32),
               meta)
