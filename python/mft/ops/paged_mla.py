"""MLA (DeepSeek-V2/V3) decode attention over the paged latent cache of `mft serve`, absorbed form:
fused C++ kernel and composed reference.

`paged_mla(q_latent, q_rope, latent_new, rope_new, latent_pool, rope_pool, block_tables, context_lens,
block_size, slot_offset=0, scale=..., fused=True)`:

- q_latent (B, heads, Sq, R) float32: each head's no-rope query with kv_b_proj's key part absorbed
  (q_nope @ W_UK[h], R = kv_lora_rank); q_rope (B, heads, Sq, Dr): the rotated rope query;
- latent_new (B, Sq, R) and rope_new (B, Sq, Dr) (a head axis of 1, (B, 1, Sq, .), is accepted): the
  chunk's own normalised latent and rotated rope key, read from these and not from the pools, as
  `mft.ops.paged_attention` reads k_new / v_new;
- latent_pool (slots, 1, R), rope_pool (slots, 1, Dr): the runner's MLA pools (the cached latent and
  rope key by slot; a row's token at position p is in slot
  `slot_offset + block_tables[b, p // block_size] * block_size + p % block_size`);
- block_tables (B, max_blocks) int32, context_lens (B,) int32 (the chunk included).

Per head: scores = scale * (q_latent . latent + q_rope . rope_key) over the positions <= the query's
own (query i of row b is at position context_lens[b] - Sq + i), fp32 softmax, out = probs . latent:
(B, Sq, heads, R). The caller applies kv_b_proj's value part (W_UV) and o_proj. `scale` is the
model's softmax scale (of the qk_head_dim query, not of R), so it has no default.

fused=True runs csrc/kernels/paged_mla.cc through MindSpore's aot Custom op (CPU, float32; one pass
over each row's blocks with an online softmax, all heads of a row together). fused=False
(`paged_mla_reference`) gathers the slots with MindSpore ops and runs two matmuls + mask + softmax +
matmul; any device and dtype.
"""

from __future__ import annotations

import mindspore as ms
from mindspore import mint, ops

from mft.errors import MftError
from mft.ops import registry
from mft.ops.paged_attention import context_slots

OP = "mft.paged_mla"
_MASKED = float(-3.4028234663852886e38)


def _element_type(dtype):
    return dtype.element_type() if hasattr(dtype, "element_type") else dtype


def paged_mla_reference(q_latent, q_rope, latent_new, rope_new, latent_pool, rope_pool, block_tables, context_lens,
                        block_size: int, slot_offset=0, scale: float = 1.0):
    """Composed MindSpore ops: gather every table slot, append the chunk's latent / rope key, mask past
    each query's position, fp32 softmax, probs @ latent."""
    b, heads, sq, rank = q_latent.shape
    rope_dim = q_rope.shape[-1]
    dtype = q_latent.dtype
    slots = context_slots(block_tables, block_size, slot_offset)  # (B, L)
    length = slots.shape[1]
    flat = slots.reshape(-1)
    latent = ops.gather(latent_pool.reshape(-1, rank), flat, 0).reshape(b, length, rank).astype(dtype)
    rope = ops.gather(rope_pool.reshape(-1, rope_dim), flat, 0).reshape(b, length, rope_dim).astype(dtype)
    # The chunk at positions L..L+Sq-1: query i of row r (position ctx - Sq + i) sees cached [0, ctx - Sq)
    # and chunk keys [L, L + i].
    latent = mint.cat((latent, latent_new.reshape(b, sq, rank).astype(dtype)), dim=1)  # (B, L + Sq, R)
    rope = mint.cat((rope, rope_new.reshape(b, sq, rope_dim).astype(dtype)), dim=1)
    # Every head of a row against the row's one latent sequence: (B, H * Sq, .) batched matmuls.
    scores = (mint.bmm(q_latent.reshape(b, heads * sq, rank), latent.swapaxes(1, 2))
              + mint.bmm(q_rope.reshape(b, heads * sq, rope_dim), rope.swapaxes(1, 2)))
    scores = (scores * scale).astype(ms.float32).reshape(b, heads, sq, length + sq)
    cached = (context_lens.astype(ms.int32) - sq).reshape(-1, 1, 1)
    key = ops.arange(0, length + sq, dtype=ms.int32).reshape(1, 1, -1)
    query = ops.arange(0, sq, dtype=ms.int32).reshape(1, -1, 1)
    allowed = mint.logical_or(key < cached, mint.logical_and(key >= length, key - length <= query))  # (B, Sq, L+Sq)
    scores = mint.where(allowed.expand_dims(1), scores, ms.Tensor(_MASKED, ms.float32))
    probs = mint.nn.functional.softmax(scores, dim=-1).astype(dtype)
    out = mint.bmm(probs.reshape(b, heads * sq, length + sq), latent).reshape(b, heads, sq, rank)
    return out.swapaxes(1, 2)  # (B, Sq, H, R)


def _rows(shape, last):
    n = 1
    for x in shape:
        n *= x
    return n // last if len(shape) and shape[-1] == last and last > 0 and n % last == 0 else -1


def _shape(q_latent, q_rope, latent_new, rope_new, latent_pool, rope_pool, tables, lens, scale, meta):
    if len(q_latent) != 4 or len(q_rope) != 4 or tuple(q_rope[:3]) != tuple(q_latent[:3]):
        raise MftError(f"paged_mla: q_latent must be (batch, heads, q_len, kv_lora_rank) and q_rope (batch, heads, "
                       f"q_len, rope_dim); got {tuple(q_latent)} and {tuple(q_rope)}")
    b, heads, sq, rank = q_latent
    rope_dim = q_rope[3]
    if _rows(latent_new, rank) != b * sq or _rows(rope_new, rope_dim) != b * sq:
        raise MftError(f"paged_mla: latent_new / rope_new must be (batch={b}, q_len={sq}, {rank} / {rope_dim}); got "
                       f"{tuple(latent_new)} and {tuple(rope_new)}")
    if (len(latent_pool) not in (2, 3) or len(rope_pool) != len(latent_pool) or latent_pool[-1] != rank
            or rope_pool[-1] != rope_dim or tuple(latent_pool[1:-1]) not in ((), (1,))
            or tuple(latent_pool[:-1]) != tuple(rope_pool[:-1])):
        raise MftError(f"paged_mla: the pools must be (slots, 1, {rank}) and (slots, 1, {rope_dim}); got latent_pool "
                       f"{tuple(latent_pool)}, rope_pool {tuple(rope_pool)}")
    if len(tables) != 2 or tables[0] != b or tuple(lens) != (b,):
        raise MftError(f"paged_mla: block_tables must be (batch={b}, max_blocks) and context_lens (batch,); got "
                       f"{tuple(tables)} and {tuple(lens)}")
    return [b, sq, heads, rank]


def _dtype(q_latent, q_rope, latent_new, rope_new, latent_pool, rope_pool, tables, lens, scale, meta):
    for what, dt in (("q_latent", q_latent), ("q_rope", q_rope), ("latent_new", latent_new), ("rope_new", rope_new),
                     ("latent_pool", latent_pool), ("rope_pool", rope_pool)):
        if _element_type(dt) != ms.float32:
            raise MftError(f"paged_mla(fused=True): {what} dtype {dt} is not supported by the C++ kernel "
                           "(float32); use fused=False")
    for what, dt in (("block_tables", tables), ("context_lens", lens)):
        if _element_type(dt) != ms.int32:
            raise MftError(f"paged_mla: {what} must be int32, got {dt}")
    return ms.float32


def fused_op():
    """The aot primitive: op(q_latent, q_rope, latent_new, rope_new, latent_pool, rope_pool, block_tables,
    context_lens, scale (1,) f32, meta (2,) int32 = [block_size, slot_offset]) -> out (B, Sq, heads, R)."""
    global _OP
    _OP = registry.register_aot_op(OP, registry.kernels_library(), "MftPagedMla", out_shape=_shape, out_dtype=_dtype)
    return _OP


_OP = None
registry.build_at_import(fused_op)  # graph-mode code reads the op as a global


def kernel_available() -> bool:
    """True where the fused kernel runs (mft's C++ library loads and the device target is not Ascend)."""
    return registry.builds(fused_op)


def paged_mla(q_latent, q_rope, latent_new, rope_new, latent_pool, rope_pool, block_tables, context_lens,
              block_size: int, slot_offset: int = 0, *, scale: float, fused=True):
    """(B, Sq, heads, kv_lora_rank) attention output over the latent; see the module docstring."""
    if block_size < 1 or block_size & (block_size - 1):
        raise MftError(f"paged_mla: block_size={block_size} must be a power of two")
    if not fused:
        _shape(q_latent.shape, q_rope.shape, latent_new.shape, rope_new.shape, latent_pool.shape, rope_pool.shape,
               block_tables.shape, context_lens.shape, None, None)
        return paged_mla_reference(q_latent, q_rope, latent_new, rope_new, latent_pool, rope_pool, block_tables,
                                   context_lens, block_size, slot_offset, scale)
    if _OP is None:
        fused_op()  # raises the MftError saying why the kernel is unavailable
    return fused_paged_mla(q_latent, q_rope, latent_new, rope_new, latent_pool, rope_pool, block_tables, context_lens,
                           block_size, slot_offset, scale)


def fused_paged_mla(q_latent, q_rope, latent_new, rope_new, latent_pool, rope_pool, block_tables, context_lens,
                    block_size: int, slot_offset: int, scale: float):
    """The kernel without the Python-side checks, for graph-mode code (mft.serving's decode graphs):
    `block_size`, `slot_offset` and `scale` are Python numbers, the op is built (`kernel_available()`)."""
    meta = ms.Tensor([block_size, slot_offset], ms.int32)
    return _OP(q_latent, q_rope, latent_new, rope_new, latent_pool, rope_pool, block_tables, context_lens,
               ops.full((1,), scale, dtype=ms.float32), meta)
