"""Linear and embedding layers that models build on, sharded Megatron-style under tensor parallelism.

Built outside `mft.parallel.tensor_parallel.tensor_parallel(group)` (or for a
group of size 1) these are plain dense layers and a plain embedding lookup.
Built inside it, with tp ranks:
- `ColumnParallelLinear` holds out_features / tp rows of the weight (and of
  the bias); its input enters through `CopyToRegion` (identity forward,
  gradient all-reduced backward) unless the caller already did that once
  for several linears (`copy_input=False`); its output stays split;
- `RowParallelLinear` holds in_features / tp columns, takes a split input
  and sums its output over the group with `ReduceFromRegion` (all-reduce
  forward, identity backward); its bias is replicated and added after;
- `VocabParallelEmbedding` holds ceil(vocab / tp) rows (zero padding on the
  last rank), looks up the ids in its range, zeroes the rest and sums over
  the group.
Each sharded parameter is described in the cell's `tp_shards`
({attribute: Shard}), which checkpoint save/load and init use.

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

from mft.parallel.tensor_parallel import Shard, current_group, divide, enter_region, exit_region, sequence_parallel


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
        return self._dense(x)

    def _dense(self, x):
        # (subclasses call this, not super().construct: graph mode cannot parse super() in a construct
        # reached through LoRA's class swap.)
        # A 2-D MatMul with transpose_b rather than mint's Dense: its backward is two
        # MatMuls with transpose flags, where Dense's inserts explicit Transpose
        # kernels (24 of them per step on a 2-layer Llama; docs/advanced/performance_tuning.md).
        x, weight, bias = self._operands(x)
        shape = x.shape
        y = self._matmul(x.reshape(-1, shape[-1]), weight)
        if bias is not None:
            y = y + bias
        return y.reshape(shape[:-1] + (self.out_features,))

    def _operands(self, x):
        """(x, weight, bias), cast to compute_dtype when one is set (mixed precision); bias may be None."""
        weight = self.weight
        bias = self.bias
        if self.compute_dtype is not None:
            x = x.astype(self.compute_dtype)
            weight = weight.astype(self.compute_dtype)
            bias = None if bias is None else bias.astype(self.compute_dtype)
        return x, weight, bias


class ColumnParallelLinear(_Linear):
    """y = x W^T + b with the output features split over the tp group (each rank returns its slice).

    `full_out`: the global out_features when it is padded up to a multiple of tp
    (the vocab-parallel LM head); otherwise tp must divide out_features.
    `what`: the config key named when tp does not divide.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = False, init_std: float = 0.02, dtype=ms.float32,
                 copy_input: bool = True, pad: bool = False, what: str = "out_features"):
        group = current_group()
        if group.size > 1 and not pad:
            divide(out_features, group.size, what)
        shard = Shard(0, out_features, group.size)
        super().__init__(in_features, shard.local, bias, init_std, dtype)
        self.tp_size = group.size
        self.full_out_features = out_features
        self.tp_shards = {"weight": shard, "bias": shard} if group.size > 1 else {}
        if not bias:
            self.tp_shards.pop("bias", None)
        self.copy = None
        if group.size > 1 and copy_input:
            self.copy = enter_region(group)  # CopyToRegion, or the sequence all-gather under sp
        self.has_copy = self.copy is not None

    def construct(self, x):
        if self.has_copy:
            x = self.copy(x)
        return self._dense(x)


class RowParallelLinear(_Linear):
    """y = x W^T + b with the input features split over the tp group and the output summed over it."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False, init_std: float = 0.02, dtype=ms.float32,
                 what: str = "in_features"):
        group = current_group()
        local_in = divide(in_features, group.size, what) if group.size > 1 else in_features
        super().__init__(local_in, out_features, bias, init_std, dtype)  # the bias is replicated: added after the sum
        self.tp_size = group.size
        self.full_in_features = in_features
        self.tp_shards = {"weight": Shard(1, in_features, group.size)} if group.size > 1 else {}
        self.reduce = None
        if group.size > 1:
            self.reduce = exit_region(group)  # ReduceFromRegion, or the sequence reduce-scatter under sp
            if bias and sequence_parallel():
                self.tp_partial_attrs = ("bias",)  # added to 1/tp of the tokens on each rank
        self.parallel = self.reduce is not None

    def construct(self, x):
        if not self.parallel:
            return self._dense(x)
        x, weight, bias = self._operands(x)
        shape = x.shape
        y = self.reduce(self._matmul(x.reshape(-1, shape[-1]), weight).reshape(shape[:-1] + (self.out_features,)))
        if bias is not None:
            y = y + bias
        return y


class VocabParallelEmbedding(nn.Cell):
    """Token-id lookup into a (vocab, hidden) table; under tp each rank holds ceil(vocab / tp) rows."""

    def __init__(self, num_embeddings: int, embedding_dim: int, init_std: float = 0.02, dtype=ms.float32):
        super().__init__()
        group = current_group()
        shard = Shard(0, num_embeddings, group.size)
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.tp_size = group.size
        self.weight = _weight((shard.local, embedding_dim), init_std, dtype)
        self.tp_shards = {"weight": shard} if group.size > 1 else {}
        self.parallel = group.size > 1
        self.start = ms.Tensor(group.rank * shard.local, ms.int32)  # a tensor: every rank builds the same graph
        self.local_rows = shard.local
        self.reduce = None
        if self.parallel:
            self.reduce = exit_region(group)  # sum over ranks (under sp: reduce-scattered along the sequence)

    compute_dtype = None

    def construct(self, input_ids):
        ids = input_ids.astype(ms.int32)
        if not self.parallel:
            rows = ops.gather(self.weight, ids, 0)
            return rows if self.compute_dtype is None else rows.astype(self.compute_dtype)
        local = ids - self.start
        inside = ops.logical_and(local >= 0, local < self.local_rows)
        rows = ops.gather(self.weight, ops.select(inside, local, ops.zeros_like(local)), 0)
        rows = rows * inside.astype(rows.dtype).expand_dims(-1)
        if self.compute_dtype is not None:
            rows = rows.astype(self.compute_dtype)
        return self.reduce(rows)


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

    def dense_weight(self):
        """The (E, out, in) weight the grouped-matmul path multiplies by (mft.quant.grouped dequantizes here)."""
        return self.weight

    def grouped_input(self, x):
        """The expert input rows as multiplied (W8A8 experts round them to int8 per token, mft.quant.grouped)."""
        return x

    def construct(self, x):
        if self.compute_dtype is None:
            return self._bmm(x, self.weight)
        return self._bmm(x.astype(self.compute_dtype), self.weight.astype(self.compute_dtype))
