"""Qwen2.5-VL vision transformer (`visual.*` in checkpoints).

Patches arrive flattened by the image processor, (num_patches, C * T * p * p),
in merge-block order. The patch embedding is a 3-D convolution whose
kernel equals its stride, i.e. one matmul. Blocks are pre-RMSNorm with
bidirectional attention (fused qkv with bias), 2-D rotary embeddings (the
first half of each head's frequencies follow the patch row, the second the
column) and a SwiGLU MLP with biases. Most blocks attend within windows of
`window_size` pixels; `fullatt_block_indexes` attend over the whole image.
Tokens are reordered window by window first (`window_index`), so a window is
a contiguous run; attention is restricted to runs with a block-diagonal
mask. The merger RMS-normalises, concatenates each 2x2 (merge x merge)
block of patches and maps it through Linear -> GELU -> Linear to the
language model's width, then undoes the window order.

Index bookkeeping (positions, windows, runs) depends only on the image
grids and is done in numpy on the host.
"""

from __future__ import annotations

import numpy as np

import mindspore as ms
from mindspore import Parameter, mint, nn, ops
from mindspore.common.initializer import Normal, initializer

from mft.models.llava.vision import activation
from mft.ops.attention import flash_attention
from mft.ops.rms_norm import RMSNorm
from mft.ops.rope_reference import rotate_half
from mft.parallel.layers import ColumnParallelLinear, RowParallelLinear

_MASKED = float(-3.4028234663852886e38)


def vision_position_ids(grids, merge: int) -> np.ndarray:
    """(num_patches, 2) row/column of each patch, patches in merge-block order."""
    out = []
    for t, h, w in grids:
        hpos, wpos = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        shape = (h // merge, merge, w // merge, merge)
        hpos = hpos.reshape(shape).transpose(0, 2, 1, 3).reshape(-1)
        wpos = wpos.reshape(shape).transpose(0, 2, 1, 3).reshape(-1)
        out.append(np.tile(np.stack([hpos, wpos], axis=-1), (t, 1)))
    return np.concatenate(out, axis=0)


def window_index(grids, merge: int, window_size: int, patch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Order of merged tokens window by window, and the cumulative patch counts of the windows."""
    order, cu = [], [0]
    offset = 0
    side = window_size // merge // patch_size
    unit = merge * merge
    for t, h, w in grids:
        gh, gw = h // merge, w // merge
        index = np.arange(t * gh * gw).reshape(t, gh, gw)
        pad_h, pad_w = side - gh % side, side - gw % side
        nh, nw = (gh + pad_h) // side, (gw + pad_w) // side
        padded = np.full((t, gh + pad_h, gw + pad_w), -100, dtype=np.int64)
        padded[:, :gh, :gw] = index
        padded = padded.reshape(t, nh, side, nw, side).transpose(0, 1, 3, 2, 4).reshape(t, nh * nw, side, side)
        counts = (padded != -100).sum(axis=(2, 3)).reshape(-1)
        flat = padded.reshape(-1)
        order.append(flat[flat != -100] + offset)
        cu.extend((np.cumsum(counts) * unit + cu[-1]).tolist())
        offset += t * gh * gw
    cu = np.asarray(cu, dtype=np.int64)
    keep = np.concatenate([[True], cu[1:] != cu[:-1]])  # empty windows
    return np.concatenate(order), cu[keep]


def segment_mask(cu: np.ndarray, length: int) -> np.ndarray:
    """(1, 1, L, L) additive mask: 0 inside each run [cu[i], cu[i+1]), fp32-min across runs."""
    seg = np.zeros(length, dtype=np.int64)
    for i in range(len(cu) - 1):
        seg[cu[i]:cu[i + 1]] = i
    mask = np.where(seg[:, None] == seg[None, :], 0.0, _MASKED).astype(np.float32)
    return mask.reshape(1, 1, length, length)


class _PatchEmbed(nn.Cell):
    def __init__(self, cfg, dtype):
        super().__init__()
        self.proj = _Conv3dWeight(cfg, dtype)

    def construct(self, patches):
        w = self.proj.weight
        return mint.matmul(patches.astype(w.dtype), w.reshape(w.shape[0], -1).swapaxes(0, 1))


class _Conv3dWeight(nn.Cell):
    def __init__(self, cfg, dtype):
        super().__init__()
        shape = (cfg.hidden_size, cfg.in_channels, cfg.temporal_patch_size, cfg.patch_size, cfg.patch_size)
        self.weight = Parameter(initializer(Normal(sigma=cfg.initializer_range), shape, dtype), name="weight")


class VisionAttention(nn.Cell):
    def __init__(self, cfg, dtype):
        super().__init__()
        self.fused = False  # VisionTransformer.use_fused_attention: mft's C++ kernel, bidirectional per run
        self.num_heads = cfg.num_heads
        self.head_dim = cfg.head_dim
        self.scaling = self.head_dim**-0.5
        self.qkv = ColumnParallelLinear(cfg.hidden_size, 3 * cfg.hidden_size, True, cfg.initializer_range, dtype)
        self.proj = RowParallelLinear(cfg.hidden_size, cfg.hidden_size, True, cfg.initializer_range, dtype)

    def construct(self, x, cos, sin, runs):
        """x (S, hidden); cos/sin (S, head_dim); runs: the attention runs (windows or images) as an
        additive mask (1, 1, S, S), or for the fused kernel their cumulative ends (1, N) int32."""
        s = x.shape[0]
        qkv = self.qkv(x).reshape(s, 3, self.num_heads, self.head_dim).transpose(1, 0, 2, 3)
        q, k, v = qkv[0], qkv[1], qkv[2]
        cos32, sin32 = cos.expand_dims(1), sin.expand_dims(1)  # (S, 1, D) over heads
        q32, k32 = q.astype(ms.float32), k.astype(ms.float32)
        q = (q32 * cos32 + rotate_half(q32) * sin32).astype(x.dtype)
        k = (k32 * cos32 + rotate_half(k32) * sin32).astype(x.dtype)
        q, k, v = q.swapaxes(0, 1).expand_dims(0), k.swapaxes(0, 1).expand_dims(0), v.swapaxes(0, 1).expand_dims(0)
        if self.fused:
            out = flash_attention(q, k, v, self.scaling, runs, True, causal=False)
        else:
            scores = mint.matmul(q, k.swapaxes(-1, -2)) * self.scaling
            probs = mint.nn.functional.softmax(scores.astype(ms.float32) + runs, dim=-1).astype(q.dtype)
            out = mint.matmul(probs, v)
        out = out[0].swapaxes(0, 1).reshape(s, self.num_heads * self.head_dim)
        return self.proj(out)


class VisionMLP(nn.Cell):
    def __init__(self, cfg, dtype):
        super().__init__()
        std = cfg.initializer_range
        self.gate_proj = ColumnParallelLinear(cfg.hidden_size, cfg.intermediate_size, True, std, dtype)
        self.up_proj = ColumnParallelLinear(cfg.hidden_size, cfg.intermediate_size, True, std, dtype)
        self.down_proj = RowParallelLinear(cfg.intermediate_size, cfg.hidden_size, True, std, dtype)
        self.act = activation(cfg.hidden_act)

    def construct(self, x):
        return self.down_proj(self.act(self.gate_proj(x)) * self.up_proj(x))


class VisionBlock(nn.Cell):
    def __init__(self, cfg, dtype):
        super().__init__()
        self.norm1 = RMSNorm(cfg.hidden_size, 1e-6, dtype=dtype)
        self.norm2 = RMSNorm(cfg.hidden_size, 1e-6, dtype=dtype)
        self.attn = VisionAttention(cfg, dtype)
        self.mlp = VisionMLP(cfg, dtype)

    def construct(self, x, cos, sin, runs):
        x = x + self.attn(self.norm1(x), cos, sin, runs)
        return x + self.mlp(self.norm2(x))


class _Gelu(nn.Cell):
    def __init__(self):
        super().__init__()
        self.act = activation("gelu")

    def construct(self, x):
        return self.act(x)


class PatchMerger(nn.Cell):
    def __init__(self, cfg, dtype):
        super().__init__()
        self.width = cfg.hidden_size * cfg.spatial_merge_size**2
        self.ln_q = RMSNorm(cfg.hidden_size, 1e-6, dtype=dtype)
        std = cfg.initializer_range
        # mlp.0 / mlp.2 as transformers' nn.Sequential(Linear, GELU, Linear) names them.
        self.mlp = nn.CellList([
            ColumnParallelLinear(self.width, self.width, True, std, dtype), _Gelu(),
            RowParallelLinear(self.width, cfg.out_hidden_size, True, std, dtype),
        ])

    def construct(self, x):
        x = self.ln_q(x).reshape(-1, self.width)
        return self.mlp[2](self.mlp[1](self.mlp[0](x)))


class VisionTransformer(nn.Cell):
    def __init__(self, cfg, dtype=ms.float32):
        super().__init__()
        self.config = cfg
        self.patch_embed = _PatchEmbed(cfg, dtype)
        self.blocks = nn.CellList([VisionBlock(cfg, dtype) for _ in range(cfg.depth)])
        self.merger = PatchMerger(cfg, dtype)
        half = cfg.head_dim // 2  # per axis: head_dim / 4 frequencies
        self.inv_freq = (1.0 / (np.float32(cfg.rope_theta) ** (np.arange(0, half, 2, dtype=np.float32) / np.float32(half)))).astype(np.float32)
        self.fused = False

    def use_fused_attention(self, enabled: bool) -> None:
        """Attention through mft's C++ flash kernel (bidirectional within each window / image) instead of
        the composed masked softmax; float32 only."""
        self.fused = bool(enabled)
        for block in self.blocks:
            block.attn.fused = self.fused

    def rotary(self, positions: np.ndarray):
        """(S, 2) row/column -> cos, sin (S, head_dim): [row freqs, column freqs] twice."""
        freqs = ms.Tensor(positions.astype(np.float32)).expand_dims(-1) * ms.Tensor(self.inv_freq)
        hw = mint.cat([freqs[:, 0], freqs[:, 1]], dim=-1)
        emb = mint.cat([hw, hw], dim=-1)
        return ops.cos(emb), ops.sin(emb)

    def construct(self, patches, grids):
        """patches (num_patches, C*T*p*p), grids [(t, h, w)] per image -> merged features (num_patches / merge^2, out_hidden)."""
        cfg = self.config
        merge = cfg.spatial_merge_size
        unit = merge * merge
        grids = [tuple(int(v) for v in g) for g in grids]
        order, cu_window = window_index(grids, merge, cfg.window_size, cfg.patch_size)
        n = sum(t * h * w for t, h, w in grids)
        patch_order = (order[:, None] * unit + np.arange(unit)[None, :]).reshape(-1)
        cu_full = np.concatenate([[0], np.cumsum([t * h * w for t, h, w in grids])])
        if self.fused:  # the kernel takes each run's end; the composed path an (S, S) mask
            runs = {True: ms.Tensor(cu_full[1:].astype(np.int32).reshape(1, -1)),
                    False: ms.Tensor(cu_window[1:].astype(np.int32).reshape(1, -1))}
        else:
            runs = {True: ms.Tensor(segment_mask(cu_full, n)), False: ms.Tensor(segment_mask(cu_window, n))}
        index = ms.Tensor(patch_order.astype(np.int32))
        x = ops.gather(self.patch_embed(patches), index, 0)
        cos, sin = self.rotary(vision_position_ids(grids, merge)[patch_order])
        full = set(cfg.fullatt_block_indexes)
        for i in range(len(self.blocks)):
            x = self.blocks[i](x, cos, sin, runs[i in full])
        merged = self.merger(x)
        return ops.gather(merged, ms.Tensor(np.argsort(order).astype(np.int32)), 0)
