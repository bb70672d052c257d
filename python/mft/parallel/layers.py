"""Linear and embedding layers that models build on.

In a single process (tensor-parallel size 1) these are plain dense layers and
a plain embedding lookup. Models use them instead of `nn.Dense`/`nn.Embedding`
so that tensor parallelism can later shard them Megatron-style without
touching model code:
- `ColumnParallelLinear` would split its output features across ranks,
- `RowParallelLinear` would split its input features and all-reduce its output,
- `VocabParallelEmbedding` would split the vocabulary rows.

Weights are stored as (out_features, in_features), the Hugging Face / torch
layout, so mapping a checkpoint is a rename and never a transpose.

Mixed precision: `compute_dtype` (None = the parameter's own dtype) is the
dtype a layer computes in; weights stay in their (fp32 master) dtype and are
cast on use, so gradients arrive in the master dtype. Set it for a whole
model with `mft.training.precision.set_compute_dtype`.
"""

from __future__ import annotations

import mindspore as ms
from mindspore import Parameter, mint, nn, ops
from mindspore.common.initializer import Normal, Zero, initializer


def _weight(shape, init_std: float, dtype) -> Parameter:
    return Parameter(initializer(Normal(sigma=init_std), shape, dtype), name="weight")


class _Linear(nn.Cell):
    compute_dtype = None

    def __init__(self, in_features: int, out_features: int, bias: bool = False, init_std: float = 0.02, dtype=ms.float32):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = _weight((out_features, in_features), init_std, dtype)
        self.has_bias = bias
        self.bias = Parameter(initializer(Zero(), (out_features,), dtype), name="bias") if bias else None
        self._matmul = ops.MatMul(transpose_b=True)

    def construct(self, x):
        # A 2-D MatMul with transpose_b rather than mint's Dense: its backward is two
        # MatMuls with transpose flags, where Dense's inserts explicit Transpose
        # kernels (24 of them per step on a 2-layer Llama; docs/advanced/performance_tuning.md).
        weight = self.weight
        bias = self.bias
        if self.compute_dtype is not None:
            x = x.astype(self.compute_dtype)
            weight = weight.astype(self.compute_dtype)
            bias = None if bias is None else bias.astype(self.compute_dtype)
        shape = x.shape
        y = self._matmul(x.reshape(-1, shape[-1]), weight)
        if bias is not None:
            y = y + bias
        return y.reshape(shape[:-1] + (self.out_features,))


class ColumnParallelLinear(_Linear):
    """y = x W^T + b; with tp > 1 the output features would be split across ranks."""


class RowParallelLinear(_Linear):
    """y = x W^T + b; with tp > 1 the input features would be split and the output all-reduced."""


class VocabParallelEmbedding(nn.Cell):
    """Token-id lookup into a (vocab, hidden) table; with tp > 1 the rows would be split."""

    def __init__(self, num_embeddings: int, embedding_dim: int, init_std: float = 0.02, dtype=ms.float32):
        super().__init__()
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.weight = _weight((num_embeddings, embedding_dim), init_std, dtype)

    compute_dtype = None

    def construct(self, input_ids):
        rows = ops.gather(self.weight, input_ids.astype(ms.int32), 0)
        return rows if self.compute_dtype is None else rows.astype(self.compute_dtype)


class GroupedLinear(nn.Cell):
    """One (out, in) linear per expert, stored stacked as (num_experts, out, in).

    Input (E, C, in) -> (E, C, out): expert e's C tokens through expert e's
    weight, one batched matmul. With expert parallelism the leading axis
    would be split across ranks. Checkpoints name each expert's slice on its
    own (`experts.<e>.<name>.weight`); mft.models.base splits/stacks them.
    """

    def __init__(self, num_experts: int, in_features: int, out_features: int, init_std: float = 0.02, dtype=ms.float32):
        super().__init__()
        self.num_experts = num_experts
        self.in_features = in_features
        self.out_features = out_features
        self.weight = _weight((num_experts, out_features, in_features), init_std, dtype)
        self._bmm = ops.BatchMatMul(transpose_b=True)

    compute_dtype = None

    def construct(self, x):
        if self.compute_dtype is None:
            return self._bmm(x, self.weight)
        return self._bmm(x.astype(self.compute_dtype), self.weight.astype(self.compute_dtype))
