"""Multi-head latent attention (DeepSeek-V2/V3), in Hugging Face's operation order.

q = q_b(norm(q_a(x))) (or q_proj(x) without a q low rank); the kv path
compresses x to kv_lora_rank (+ one shared rotary key of qk_rope_head_dim),
normalises it and expands it per head to a no-rope key part and the value.
Only the rope part of q/k is rotated (decoupled RoPE); with `rope_interleave`
the rope channels are stored pairwise interleaved.

The KV cache holds the compressed latent, not per-head keys and values:
per token the normalised kv_lora_rank vector (the "keys" buffer, one head)
and the rotated shared rope key of qk_rope_head_dim (the "values" buffer,
one head) - (kv_lora_rank + qk_rope_head_dim) numbers per token and layer
instead of heads x (qk_head_dim + v_head_dim) (DeepSeek-V3: 576 vs 40,960).
A step writes its chunk's latent at its slots, then expands the whole cache
through kv_b_proj to per-head no-rope keys and values and attends as before
(transformers caches the expanded keys/values; the numbers are the same).

Under `mft serve`'s fused backend the cache is the runner's paged pools (a
tuple, as `attention.attend` takes it): the chunk's latent and rope key are
written to their slots first, then attention runs in the absorbed form on the
C++ kernel (mft.ops.paged_mla) without expanding the cache: kv_b_proj's key
part W_UK is folded into the query (q_nope @ W_UK per head), the kernel
attends over the latent itself (scores latent . q + rope key . q_rope,
output probs . latent) and kv_b_proj's value part W_UV maps the result to
each head's values before o_proj.
"""

from __future__ import annotations

import mindspore as ms
from mindspore import mint, nn, ops

from mft.models.common.attention import attend
from mft.ops.paged_mla import fused_paged_mla
from mft.ops.rope_reference import apply_rope, apply_rope_interleaved
from mft.ops.rms_norm import RMSNorm
from mft.parallel.layers import ColumnParallelLinear, RowParallelLinear


class MLAttention(nn.Cell):
    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        q_lora_rank: int | None,
        kv_lora_rank: int,
        qk_nope_head_dim: int,
        qk_rope_head_dim: int,
        v_head_dim: int,
        bias: bool = False,
        rope_interleave: bool = True,
        softmax_scale: float | None = None,
        norm_eps: float = 1e-6,
        fused_rmsnorm: bool = False,
        init_std: float = 0.02,
        dtype=ms.float32,
    ):
        super().__init__()
        self.num_heads = num_heads
        self.kv_lora_rank = kv_lora_rank
        self.qk_nope_head_dim = qk_nope_head_dim
        self.qk_rope_head_dim = qk_rope_head_dim
        self.qk_head_dim = qk_nope_head_dim + qk_rope_head_dim
        self.v_head_dim = v_head_dim
        self.rope_interleave = rope_interleave
        self.scaling = softmax_scale if softmax_scale is not None else self.qk_head_dim**-0.5
        self.has_q_lora = q_lora_rank is not None
        if self.has_q_lora:
            self.q_a_proj = ColumnParallelLinear(hidden_size, q_lora_rank, bias, init_std, dtype)
            self.q_a_layernorm = RMSNorm(q_lora_rank, norm_eps, fused=fused_rmsnorm, dtype=dtype)
            self.q_b_proj = ColumnParallelLinear(q_lora_rank, num_heads * self.qk_head_dim, False, init_std, dtype)
        else:
            self.q_proj = ColumnParallelLinear(hidden_size, num_heads * self.qk_head_dim, False, init_std, dtype)
        self.kv_a_proj_with_mqa = ColumnParallelLinear(hidden_size, kv_lora_rank + qk_rope_head_dim, bias, init_std, dtype)
        self.kv_a_layernorm = RMSNorm(kv_lora_rank, norm_eps, fused=fused_rmsnorm, dtype=dtype)
        self.kv_b_proj = ColumnParallelLinear(kv_lora_rank, num_heads * (qk_nope_head_dim + v_head_dim), False, init_std, dtype)
        self.o_proj = RowParallelLinear(num_heads * v_head_dim, hidden_size, bias, init_std, dtype)

    def _rope(self, x, cos, sin):
        if self.rope_interleave:
            return apply_rope_interleaved(x, cos, sin)
        return apply_rope(x, cos, sin)

    def construct(self, x, cos, sin, mask, slots=None, k_cache=None, v_cache=None):
        b, s, _ = x.shape
        if self.has_q_lora:
            q = self.q_b_proj(self.q_a_layernorm(self.q_a_proj(x)))
        else:
            q = self.q_proj(x)
        q = q.reshape(b, s, self.num_heads, self.qk_head_dim).swapaxes(1, 2)
        q_pass = q[..., : self.qk_nope_head_dim]
        q_rot = q[..., self.qk_nope_head_dim :]
        compressed = self.kv_a_proj_with_mqa(x)
        latent = self.kv_a_layernorm(compressed[..., : self.kv_lora_rank])  # (B, S, kv_lora_rank)
        k_rot = compressed[..., self.kv_lora_rank :].reshape(b, 1, s, self.qk_rope_head_dim)
        q_rot = self._rope(q_rot, cos, sin)
        k_rot = self._rope(k_rot, cos, sin)  # (B, 1, S, rope): shared by every head
        if isinstance(k_cache, tuple):  # mft serve's paged pools (fused backend): absorbed form on the kernel
            return self._paged(q_pass, q_rot, latent, k_rot, k_cache, v_cache)
        q = mint.cat((q_pass, q_rot), dim=-1)
        if k_cache is not None:  # write the chunk's latent and rope key, attend over the whole cache
            index = slots.astype(ms.int64).reshape(1, 1, s, 1)
            k_cache = mint.scatter(k_cache, 2, index.broadcast_to((b, 1, s, self.kv_lora_rank)),
                                   latent.reshape(b, 1, s, self.kv_lora_rank).astype(k_cache.dtype))
            v_cache = mint.scatter(v_cache, 2, index.broadcast_to((b, 1, s, self.qk_rope_head_dim)), k_rot.astype(v_cache.dtype))
            latent = k_cache.reshape(b, -1, self.kv_lora_rank).astype(x.dtype)
            k_rot = v_cache.astype(x.dtype)
        length = latent.shape[1]
        kv = self.kv_b_proj(latent).reshape(b, length, self.num_heads, self.qk_nope_head_dim + self.v_head_dim).swapaxes(1, 2)
        k_pass = kv[..., : self.qk_nope_head_dim]
        v = kv[..., self.qk_nope_head_dim :]
        k = mint.cat((k_pass, k_rot.broadcast_to((b, self.num_heads, length, self.qk_rope_head_dim))), dim=-1)
        out = attend(q, k, v, mask, self.scaling, 1)[0]
        return self.o_proj(out), k_cache, v_cache

    def _paged(self, q_pass, q_rot, latent, k_rot, k_cache, rope_pool):
        """k_cache = (latent pool, block tables, context lengths, slot offset, block size, write slots (B * S,)),
        rope_pool = the rope-key pool (the runner's pools, (slots, 1, .)). Writes the chunk's latent / rope key
        at their slots, then attends over the pools in place (mft.ops.paged_mla); returns (output, pools)."""
        latent_pool, tables, lens, offset, block_size, writes = k_cache
        b, heads, s, _ = q_pass.shape
        rank, nope = self.kv_lora_rank, self.qk_nope_head_dim
        targets = writes + offset
        latent_pool = ops.scatter_update(latent_pool, targets, latent.reshape(b * s, 1, rank).astype(latent_pool.dtype))
        rope_pool = ops.scatter_update(rope_pool, targets,
                                       k_rot.reshape(b * s, 1, self.qk_rope_head_dim).astype(rope_pool.dtype))
        w = self.kv_b_proj.weight.reshape(heads, nope + self.v_head_dim, rank)  # per head: [W_UK; W_UV] (out, rank)
        q_latent = mint.matmul(q_pass, w[:, :nope, :])  # (B, H, S, rank)
        out = fused_paged_mla(q_latent, q_rot, latent, k_rot, latent_pool, rope_pool, tables, lens, block_size, offset,
                              self.scaling)  # (B, S, H, rank)
        out = mint.matmul(out.swapaxes(1, 2), w[:, nope:, :].swapaxes(-1, -2))  # (B, H, S, v_head_dim)
        return self.o_proj(out.swapaxes(1, 2).reshape(b, s, heads * self.v_head_dim)), latent_pool, rope_pool


def fused_mla_problem(model, cache_dtype) -> str | None:
    """Why mft serve's fused backend cannot run `model`'s attention (keys and values of different shapes) on
    the paged MLA kernel; None when it can (every such layer is MLAttention with a plain float32 kv_b_proj,
    whose weight the absorbed form reads)."""
    from mft.ops import paged_mla
    from mft.parallel.layers import ColumnParallelLinear

    cells = [cell for _, cell in model.cells_and_names() if isinstance(cell, MLAttention)]
    if not cells:
        return "keys and values have different shapes and the model's attention is not MLA"
    if not paged_mla.kernel_available():
        return "mft's C++ kernels (paged MLA) are not available on this build/device"
    if cache_dtype != ms.float32:
        return f"the MLA latent cache is {cache_dtype}, the paged MLA kernel reads float32"
    for cell in cells:
        proj = cell.kv_b_proj
        if type(proj) is not ColumnParallelLinear or proj.weight.dtype != ms.float32 or proj.compute_dtype is not None:
            return ("an MLA layer's kv_b_proj is quantized, adapted or not float32 (the absorbed MLA kernel path "
                    "folds its plain weight into the query)")
    return None
