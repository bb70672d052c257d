"""Multi-head / grouped-query causal self-attention with an optional KV cache.

Eager attention in the same operation order as Hugging Face's eager path
(q k^T * scale + additive mask, fp32 softmax, @ v) so logits match it in fp32.
Shapes never depend on tensor values: with a cache, keys/values are written
into preallocated (B, kv_heads, max_len, D) buffers at their `slots` and
attention runs over the whole buffer under a mask, so a decode step has one
static shape and can be compiled once.

An int8 KV cache (`mft quantize --scheme kv8`, mft.ops.kv_int8): the quant
loader gives the cell `quant_kv` (static per-kv-head k/v scales) and sets
`kv_int8`; keys/values are then rounded to their int8 grid on every path, and
int8 caches (dense or paged) store the int8 values.
"""

from __future__ import annotations

import mindspore as ms
from mindspore import mint, nn, ops

from mft.ops.rope_reference import apply_rope
from mft.ops.rope import apply_rotary
from mft.ops.attention import flash_attention, softmax_attention
from mft.ops import kv_int8
from mft.ops.paged_attention import fused_paged_attention
from mft.ops.rms_norm import RMSNorm
from mft.parallel.context_parallel import chunk_attention, current as current_cp, kv_gather
from mft.parallel.layers import ColumnParallelLinear, RowParallelLinear
from mft.parallel.tensor_parallel import current_group, divide, enter_region


class Attention(nn.Cell):
    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        num_kv_heads: int,
        head_dim: int,
        qkv_bias: bool = False,
        o_bias: bool = False,
        init_std: float = 0.02,
        dtype=ms.float32,
        qk_norm: bool = False,
        norm_eps: float = 1e-6,
        fused_rmsnorm: bool = False,
        fused_attention: bool = False,
    ):
        super().__init__()
        self.fused_attention = bool(fused_attention)  # model.fused_attention: C++ flash attention
        # Tensor parallel: each rank keeps num_heads / tp query heads and num_kv_heads / tp kv heads
        # (contiguous blocks, so a rank's query heads share exactly its kv heads).
        group = current_group()
        tp = group.size
        self.num_heads = divide(num_heads, tp, "model.num_heads") if tp > 1 else num_heads
        self.num_kv_heads = divide(num_kv_heads, tp, "model.num_kv_heads") if tp > 1 else num_kv_heads
        self.head_dim = head_dim
        self.n_rep = num_heads // num_kv_heads
        self.scaling = head_dim**-0.5
        self.q_proj = ColumnParallelLinear(hidden_size, num_heads * head_dim, qkv_bias, init_std, dtype, copy_input=False)
        self.k_proj = ColumnParallelLinear(hidden_size, num_kv_heads * head_dim, qkv_bias, init_std, dtype, copy_input=False)
        self.v_proj = ColumnParallelLinear(hidden_size, num_kv_heads * head_dim, qkv_bias, init_std, dtype, copy_input=False)
        self.o_proj = RowParallelLinear(num_heads * head_dim, hidden_size, o_bias, init_std, dtype)
        self.copy = None  # one CopyToRegion for q, k and v: one all-reduce of the input's gradient
        if tp > 1:
            self.copy = enter_region(group)  # CopyToRegion, or the sequence all-gather under sp
        self.has_copy = self.copy is not None
        # Qwen3: RMSNorm over each head's q and k before RoPE.
        self.qk_norm = qk_norm
        if qk_norm:
            self.q_norm = RMSNorm(head_dim, norm_eps, fused=fused_rmsnorm, dtype=dtype)
            self.k_norm = RMSNorm(head_dim, norm_eps, fused=fused_rmsnorm, dtype=dtype)
            # Replicated, but each tp rank applies them to its own heads only: their gradients are summed over tp.
            self.q_norm.tp_partial_grads = tp > 1
            self.k_norm.tp_partial_grads = tp > 1
        # Context parallel (parallel.cp): this rank's queries attend to the whole sequence's K/V, all-gathered
        # over the cp group (backward: reduce-scatter); each chunk runs the fused kernel at its query offset
        # (or the composed path). mft.parallel.context_parallel.
        cp = current_cp()
        self.kv_gather = kv_gather(cp) if cp is not None else None
        self.has_kv_gather = cp is not None
        self.core = AttentionCore(self.scaling, self.n_rep, self.fused_attention, cp)
        self.fused_rope = False  # the C++ RoPE kernel (float32); mft.serving sets it for its decode graphs
        self.quant_kv = None  # kv_int8.KVScales, set by mft.quant.loader for an int8 KV cache
        self.kv_int8 = False

    def construct(self, x, cos, sin, mask, slots=None, k_cache=None, v_cache=None):
        """x (B, S, hidden); mask additive (1 or B, 1, S, L).

        Without a cache L == S. With a cache, `slots` (S,) are where this
        chunk's keys/values are written and L is the cache length; returns
        (output, new k_cache, new v_cache).
        """
        if self.has_copy:
            x = self.copy(x)  # (under sp this gathers the sequence: shapes are read after it)
        b, s, _ = x.shape
        q = self.q_proj(x).reshape(b, s, self.num_heads, self.head_dim)
        k = self.k_proj(x).reshape(b, s, self.num_kv_heads, self.head_dim)
        v = self.v_proj(x).reshape(b, s, self.num_kv_heads, self.head_dim).swapaxes(1, 2)
        if self.qk_norm:
            q = self.q_norm(q)
            k = self.k_norm(k)
        if self.fused_rope:
            q = apply_rotary(q.swapaxes(1, 2), cos, sin)
            k = apply_rotary(k.swapaxes(1, 2), cos, sin)
        else:
            q = apply_rope(q.swapaxes(1, 2), cos, sin)
            k = apply_rope(k.swapaxes(1, 2), cos, sin)
        if self.has_kv_gather:
            k, v = self.kv_gather(k, v)
        kv_scales = None
        if self.kv_int8:  # every path sees the keys/values an int8 cache holds
            kv_scales = (self.quant_kv.k_scale, self.quant_kv.v_scale)
            k = kv_int8.fake_quant(k, kv_scales[0])
            v = kv_int8.fake_quant(v, kv_scales[1])
        if k_cache is None:  # training / no cache: the core is its own cell (train.recompute=selective)
            return self.o_proj(self.core(q, k, v, mask)), k_cache, v_cache
        out, k_cache, v_cache = attend(q, k, v, mask, self.scaling, self.n_rep, slots, k_cache, v_cache,
                                       self.fused_attention, kv_scales)
        return self.o_proj(out), k_cache, v_cache


class AttentionCore(nn.Cell):
    """softmax(q k^T * scale + mask) v without a cache: the scores and probabilities (heads x seq_len per
    token on the composed path) are what train.recompute=selective drops and recomputes in backward."""

    def __init__(self, scaling: float, n_rep: int, fused: bool, cp=None):
        super().__init__()
        self.scaling = scaling
        self.n_rep = n_rep
        self.fused = fused
        # parallel.cp (k, v gathered over the cp group): each of the rank's two chunks attends to the prefix
        # of keys it can see, at its query offset, fused or composed
        # (mft.parallel.context_parallel.ChunkAttention); `mask` is not used.
        self.chunks = chunk_attention(cp, scaling, fused) if cp is not None else None
        self.has_chunks = cp is not None

    def construct(self, q, k, v, mask):
        if self.has_chunks:
            return self.chunks(q, k, v)
        return attend(q, k, v, mask, self.scaling, self.n_rep, None, None, None, self.fused)[0]


def attend(q, k, v, mask, scaling: float, n_rep: int, slots=None, k_cache=None, v_cache=None, fused=False,
           kv_scales=None):
    """Eager causal attention shared by every attention variant.

    q (B, H, S, Dqk), k (B, kv_heads, S, Dqk), v (B, kv_heads, S, Dv). With a
    cache, this chunk's k/v are written at `slots` and attention runs over the
    whole buffer. Returns ((B, S, H * Dv), k_cache, v_cache). `fused`: the
    no-cache, plain-causal case (mask (1, 1, S, S)) runs mft.ops.flash_attention.
    Packed rows pass `mask` as (additive mask, seq ends (B, N)) (decoder's
    `packed_positions_and_mask`): the composed path applies the mask, the fused
    kernel the same segments as cumulative ends. `kv_scales` (k_scale, v_scale), each
    (kv_heads,): the caches are int8 (mft.ops.kv_int8); k/v already on their grid.
    """
    b, heads, s, _ = q.shape
    if isinstance(k_cache, tuple):
        # Paged cache (mft.serving, fused backend): k_cache = (k_pool, block_tables, context_lens, slot offset,
        # block size, write slots (B * S,)), v_cache = v_pool. This chunk's keys/values are written to their
        # slots first (reshape-and-cache, as vLLM orders it), so a prefill token run as its own decode row
        # finds the chunk tokens before it in the pools; the C++ kernel then reads the cached keys in place
        # (the mask is not used) and the row's own from k/v.
        k_pool, tables, lens, offset, block_size, writes = k_cache
        targets = writes + offset
        k_rows = k.swapaxes(1, 2).reshape(b * s, k.shape[1], k.shape[-1])
        v_rows = v.swapaxes(1, 2).reshape(b * s, v.shape[1], v.shape[-1])
        if kv_scales is not None:  # int8 pools: the kernel dequantizes cached rows
            k_pool = ops.scatter_update(k_pool, targets, kv_int8.quantize(k_rows, kv_scales[0]))
            v_cache = ops.scatter_update(v_cache, targets, kv_int8.quantize(v_rows, kv_scales[1]))
            out = kv_int8.fused_paged_attention_int8(q, k, v, k_pool, v_cache, kv_scales[0], kv_scales[1], tables, lens,
                                                     block_size, offset, scaling)
        else:
            k_pool = ops.scatter_update(k_pool, targets, k_rows.astype(k_pool.dtype))
            v_cache = ops.scatter_update(v_cache, targets, v_rows.astype(v_cache.dtype))
            out = fused_paged_attention(q, k, v, k_pool, v_cache, tables, lens, block_size, offset, scaling)
        return out.reshape(b, s, heads * v.shape[-1]), k_pool, v_cache
    seq_ends = None
    if isinstance(mask, tuple):
        mask, seq_ends = mask
    if fused and k_cache is None and (mask.shape[0] == 1 or seq_ends is not None) and v.shape[-1] == q.shape[-1]:
        out = flash_attention(q, k, v, scaling, seq_ends).swapaxes(1, 2).reshape(b, s, heads * v.shape[-1])
        return out, k_cache, v_cache
    if k_cache is not None:
        kv_heads = k.shape[1]
        k_index = slots.astype(ms.int64).reshape(1, 1, s, 1).broadcast_to((b, kv_heads, s, k.shape[-1]))
        v_index = slots.astype(ms.int64).reshape(1, 1, s, 1).broadcast_to((b, kv_heads, s, v.shape[-1]))
        if kv_scales is not None:  # int8 caches (dense or gathered from the paged pools)
            k_cache = mint.scatter(k_cache, 2, k_index, kv_int8.quantize(k, kv_scales[0]))
            v_cache = mint.scatter(v_cache, 2, v_index, kv_int8.quantize(v, kv_scales[1]))
            k = kv_int8.dequantize(k_cache, kv_scales[0], q.dtype)
            v = kv_int8.dequantize(v_cache, kv_scales[1], q.dtype)
        else:
            k_cache = mint.scatter(k_cache, 2, k_index, k.astype(k_cache.dtype))
            v_cache = mint.scatter(v_cache, 2, v_index, v.astype(v_cache.dtype))
            k = k_cache.astype(q.dtype)
            v = v_cache.astype(q.dtype)
    out = softmax_attention(q, k, v, scaling, mask).swapaxes(1, 2).reshape(b, s, heads * v.shape[-1])
    return out, k_cache, v_cache


_MASKED = float(-3.4028234663852886e38)  # fp32 min, as HF: a fully masked row stays finite (no NaN)


def causal_mask(query_positions, key_length: int, pad_lengths=None):
    """Additive fp32 mask: 0 where key j <= the query's slot, fp32-min elsewhere.

    query_positions (S,) are slots in the key sequence. Without `pad_lengths`
    the mask is (1, 1, S, L); with them ((B,) left-padding counts) keys in a
    row's padding are masked too and the mask is (B, 1, S, L).
    """
    keys = ops.arange(0, key_length, dtype=ms.int32).reshape(1, -1)
    allowed = keys <= query_positions.astype(ms.int32).reshape(-1, 1)
    neg = ms.Tensor(_MASKED, ms.float32)
    zero = ms.Tensor(0.0, ms.float32)
    if pad_lengths is None:
        return mint.where(allowed, zero, neg).expand_dims(0).expand_dims(0)
    not_pad = keys.expand_dims(0) >= pad_lengths.astype(ms.int32).reshape(-1, 1, 1)  # (B, 1, L)
    return mint.where(mint.logical_and(allowed.expand_dims(0), not_pad), zero, neg).expand_dims(1)
