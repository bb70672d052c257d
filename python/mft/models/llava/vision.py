"""CLIP vision tower (the encoder LLaVA puts in front of its language model).

Patch embedding (a stride-p convolution without bias, written as a matmul
over flattened patches), a learned class token, learned absolute positions,
`pre_layrnorm`, pre-LN encoder layers (bidirectional attention with biases,
fc1 -> activation -> fc2), `post_layernorm`. Cells carry transformers' names
(`embeddings.patch_embedding`, `encoder.layers.N.self_attn.q_proj`, ...).

`hidden_states(pixel_values)` returns what transformers calls
`output_hidden_states`: index 0 is the input of the first encoder layer
(embeddings after pre_layrnorm), index i the output of layer i.
"""

from __future__ import annotations

import mindspore as ms
from mindspore import Parameter, mint, nn, ops
from mindspore.common.initializer import Normal, One, Zero, initializer

from mft.ops.attention import flash_attention
from mft.parallel.layers import ColumnParallelLinear, RowParallelLinear


def activation(name: str):
    """transformers' ACT2FN entries the vision MLP and projector use."""
    if name == "quick_gelu":
        return lambda x: x * ops.sigmoid(1.702 * x)
    # Written out: MindSpore's CPU target has no GeluExt kernel.
    if name == "gelu":  # exact: 0.5 x (1 + erf(x / sqrt 2))
        return lambda x: 0.5 * x * (1.0 + ops.erf(x * 0.7071067811865476))
    if name in ("gelu_pytorch_tanh", "gelu_new"):
        return lambda x: 0.5 * x * (1.0 + ops.tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)))
    if name == "relu":
        return mint.nn.functional.relu
    if name == "silu":
        return mint.nn.functional.silu
    raise ValueError(f"unknown activation {name!r}")


class LayerNorm(nn.Cell):
    """torch.nn.LayerNorm: (x - mean) / sqrt(biased var + eps) * weight + bias, in fp32."""

    def __init__(self, dim: int, eps: float, dtype=ms.float32):
        super().__init__()
        self.eps = eps
        self.weight = Parameter(initializer(One(), (dim,), dtype), name="weight")
        self.bias = Parameter(initializer(Zero(), (dim,), dtype), name="bias")

    def construct(self, x):
        x32 = x.astype(ms.float32)
        mean = x32.mean(axis=-1, keep_dims=True)
        centered = x32 - mean
        var = (centered * centered).mean(axis=-1, keep_dims=True)
        y = centered * ops.rsqrt(var + self.eps)
        return (y * self.weight.astype(ms.float32) + self.bias.astype(ms.float32)).astype(x.dtype)


class ClipVisionEmbeddings(nn.Cell):
    def __init__(self, cfg, dtype):
        super().__init__()
        self.patch_size = cfg.patch_size
        self.image_size = cfg.image_size
        self.hidden_size = cfg.hidden_size
        std = cfg.initializer_range * cfg.initializer_factor
        self.class_embedding = Parameter(initializer(Normal(sigma=cfg.hidden_size**-0.5), (cfg.hidden_size,), dtype), name="class_embedding")
        self.patch_embedding = _Conv2dWeight(cfg.hidden_size, cfg.num_channels, cfg.patch_size, std, dtype)
        self.position_embedding = _EmbeddingWeight(cfg.num_patches + 1, cfg.hidden_size, std, dtype)

    def construct(self, pixel_values):
        """(N, C, H, W) -> (N, 1 + patches, hidden)."""
        n, c, h, w = pixel_values.shape
        p = self.patch_size
        x = pixel_values.astype(self.patch_embedding.weight.dtype)
        x = x.reshape(n, c, h // p, p, w // p, p).transpose(0, 2, 4, 1, 3, 5).reshape(n, (h // p) * (w // p), c * p * p)
        kernel = self.patch_embedding.weight.reshape(self.hidden_size, c * p * p)
        patches = mint.matmul(x, kernel.swapaxes(0, 1))
        cls = self.class_embedding.astype(patches.dtype).reshape(1, 1, -1).broadcast_to((n, 1, self.hidden_size))
        return mint.cat([cls, patches], dim=1) + self.position_embedding.weight.astype(patches.dtype).expand_dims(0)


class _Conv2dWeight(nn.Cell):
    """Holds a conv kernel (out, in, p, p) under transformers' name `patch_embedding.weight`."""

    def __init__(self, out_channels: int, in_channels: int, patch: int, std: float, dtype):
        super().__init__()
        self.weight = Parameter(initializer(Normal(sigma=std), (out_channels, in_channels, patch, patch), dtype), name="weight")


class _EmbeddingWeight(nn.Cell):
    def __init__(self, rows: int, dim: int, std: float, dtype):
        super().__init__()
        self.weight = Parameter(initializer(Normal(sigma=std), (rows, dim), dtype), name="weight")


class ClipAttention(nn.Cell):
    """Bidirectional multi-head attention, eager (q k^T * scale, fp32 softmax, @ v) as transformers' eager path."""

    def __init__(self, cfg, dtype):
        super().__init__()
        h, std = cfg.hidden_size, cfg.initializer_range
        self.num_heads = cfg.num_attention_heads
        self.head_dim = cfg.head_dim
        self.scaling = self.head_dim**-0.5
        self.fused = False  # ClipVisionTower.use_fused_attention: mft's C++ kernel, bidirectional
        self.k_proj = ColumnParallelLinear(h, h, True, std, dtype)
        self.v_proj = ColumnParallelLinear(h, h, True, std, dtype)
        self.q_proj = ColumnParallelLinear(h, h, True, std, dtype)
        self.out_proj = RowParallelLinear(h, h, True, std, dtype)

    def construct(self, x):
        b, s, _ = x.shape
        q = self.q_proj(x).reshape(b, s, self.num_heads, self.head_dim).swapaxes(1, 2)
        k = self.k_proj(x).reshape(b, s, self.num_heads, self.head_dim).swapaxes(1, 2)
        v = self.v_proj(x).reshape(b, s, self.num_heads, self.head_dim).swapaxes(1, 2)
        if self.fused:
            out = flash_attention(q, k, v, self.scaling, None, True, causal=False)
        else:
            scores = mint.matmul(q, k.swapaxes(-1, -2)) * self.scaling
            probs = mint.nn.functional.softmax(scores.astype(ms.float32), dim=-1).astype(q.dtype)
            out = mint.matmul(probs, v)
        return self.out_proj(out.swapaxes(1, 2).reshape(b, s, self.num_heads * self.head_dim))


class ClipMLP(nn.Cell):
    def __init__(self, cfg, dtype):
        super().__init__()
        self.act = activation(cfg.hidden_act)
        self.fc1 = ColumnParallelLinear(cfg.hidden_size, cfg.intermediate_size, True, cfg.initializer_range, dtype)
        self.fc2 = RowParallelLinear(cfg.intermediate_size, cfg.hidden_size, True, cfg.initializer_range, dtype)

    def construct(self, x):
        return self.fc2(self.act(self.fc1(x)))


class ClipEncoderLayer(nn.Cell):
    def __init__(self, cfg, dtype):
        super().__init__()
        self.layer_norm1 = LayerNorm(cfg.hidden_size, cfg.layer_norm_eps, dtype)
        self.self_attn = ClipAttention(cfg, dtype)
        self.layer_norm2 = LayerNorm(cfg.hidden_size, cfg.layer_norm_eps, dtype)
        self.mlp = ClipMLP(cfg, dtype)

    def construct(self, x):
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.mlp(self.layer_norm2(x))


class ClipEncoder(nn.Cell):
    def __init__(self, cfg, dtype):
        super().__init__()
        self.layers = nn.CellList([ClipEncoderLayer(cfg, dtype) for _ in range(cfg.num_hidden_layers)])


class ClipVisionTower(nn.Cell):
    def __init__(self, cfg, dtype=ms.float32):
        super().__init__()
        self.config = cfg
        self.embeddings = ClipVisionEmbeddings(cfg, dtype)
        self.pre_layrnorm = LayerNorm(cfg.hidden_size, cfg.layer_norm_eps, dtype)  # transformers' spelling
        self.encoder = ClipEncoder(cfg, dtype)
        self.post_layernorm = LayerNorm(cfg.hidden_size, cfg.layer_norm_eps, dtype)  # pooled output only (unused by LLaVA)

    def use_fused_attention(self, enabled: bool) -> None:
        """Attention through mft's C++ flash kernel (bidirectional) instead of the composed softmax; float32 only."""
        for layer in self.encoder.layers:
            layer.self_attn.fused = bool(enabled)

    def hidden_states(self, pixel_values, upto: int | None = None) -> list:
        """[layer input 0, output of layer 1, ...]; stops after layer `upto` (all layers when None)."""
        n = len(self.encoder.layers)
        upto = n if upto is None else upto
        h = self.pre_layrnorm(self.embeddings(pixel_values))
        states = [h]
        for i in range(upto):
            h = self.encoder.layers[i](h)
            states.append(h)
        return states

    def select(self, pixel_values, layers: tuple, strategy: str):
        """Features LLaVA feeds its projector: the chosen hidden states (concatenated on the
        feature axis when several), without the class token for strategy 'default'."""
        n = len(self.encoder.layers)
        indices = [layer % (n + 1) for layer in layers]
        states = self.hidden_states(pixel_values, upto=max(indices))
        picked = [states[i] for i in indices]
        if strategy == "default":
            picked = [s[:, 1:] for s in picked]
        return picked[0] if len(picked) == 1 else mint.cat(picked, dim=-1)
