"""SwiGLU feed-forward: down(silu(gate(x)) * up(x))."""

from __future__ import annotations

import mindspore as ms
from mindspore import nn

from mft.ops.swiglu import swiglu

from mft.parallel.layers import ColumnParallelLinear, RowParallelLinear
from mft.parallel.tensor_parallel import current_group, enter_region


class SwiGLUMLP(nn.Cell):
    def __init__(self, hidden_size: int, intermediate_size: int, bias: bool = False, init_std: float = 0.02, dtype=ms.float32):
        super().__init__()
        # Tensor parallel: gate/up column-parallel, down row-parallel (intermediate_size / tp per rank).
        key = "model.intermediate_size"
        self.gate_proj = ColumnParallelLinear(hidden_size, intermediate_size, bias, init_std, dtype, copy_input=False, what=key)
        self.up_proj = ColumnParallelLinear(hidden_size, intermediate_size, bias, init_std, dtype, copy_input=False, what=key)
        self.down_proj = RowParallelLinear(intermediate_size, hidden_size, bias, init_std, dtype, what=key)
        group = current_group()
        self.copy = None  # one CopyToRegion for gate and up
        if group.size > 1:
            self.copy = enter_region(group)  # CopyToRegion, or the sequence all-gather under sp
        self.has_copy = self.copy is not None
        self.act = SwiGLU()  # its own cell: train.recompute=selective recomputes it

    def construct(self, x):
        if self.has_copy:
            x = self.copy(x)
        return self.down_proj(self.act(self.gate_proj(x), self.up_proj(x)))


class SwiGLU(nn.Cell):
    """silu(gate) * up: what keeps 4 x intermediate per token for the backward (gate, silu(gate), up, product);
    `fused` (model.fused_swiglu, set by DecoderLayer) runs the C++ kernel, which keeps no silu(gate)."""

    def __init__(self):
        super().__init__()
        self.fused = False

    def construct(self, gate, up):
        return swiglu(gate, up, self.fused)
