"""SwiGLU feed-forward: down(silu(gate(x)) * up(x))."""

from __future__ import annotations

import mindspore as ms
from mindspore import mint, nn

from mft.parallel.layers import ColumnParallelLinear, RowParallelLinear


class SwiGLUMLP(nn.Cell):
    def __init__(self, hidden_size: int, intermediate_size: int, bias: bool = False, init_std: float = 0.02, dtype=ms.float32):
        super().__init__()
        self.gate_proj = ColumnParallelLinear(hidden_size, intermediate_size, bias, init_std, dtype)
        self.up_proj = ColumnParallelLinear(hidden_size, intermediate_size, bias, init_std, dtype)
        self.down_proj = RowParallelLinear(intermediate_size, hidden_size, bias, init_std, dtype)

    def construct(self, x):
        return self.down_proj(mint.nn.functional.silu(self.gate_proj(x)) * self.up_proj(x))
