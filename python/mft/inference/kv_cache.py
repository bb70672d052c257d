"""Preallocated per-layer key/value buffers with static shapes.

Each layer has k and v of shape (batch, kv_heads, max_length, head_dim),
allocated once; a forward step writes its chunk at its positions and returns
new buffers, so every decode step has the same shapes (graph-compilable).
`length` is how many positions are filled.
"""

from __future__ import annotations

import mindspore as ms
from mindspore import ops


class KVCache:
    def __init__(self, num_layers: int, batch_size: int, num_kv_heads: int, max_length: int, head_dim: int, dtype=ms.float32):
        shape = (batch_size, num_kv_heads, max_length, head_dim)
        self.max_length = max_length
        self.keys = tuple(ops.zeros(shape, dtype) for _ in range(num_layers))
        self.values = tuple(ops.zeros(shape, dtype) for _ in range(num_layers))
        self.length = 0

    def update(self, keys, values, new_tokens: int) -> None:
        self.keys = tuple(keys)
        self.values = tuple(values)
        self.length += new_tokens
