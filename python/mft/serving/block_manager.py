"""Fixed-size KV-cache blocks: a free-block pool and one block table per sequence.

Block 0 is never handed out: padded batch rows read and write its slots, so
they can never touch a live sequence's keys. A slot is `block * block_size +
offset`; a sequence's token at position p lives in slot
`table[p // block_size] * block_size + p % block_size`.
"""

from __future__ import annotations

from mft.errors import MftError

SCRATCH_BLOCK = 0


class BlockManager:
    def __init__(self, num_blocks: int, block_size: int):
        if block_size < 1 or block_size & (block_size - 1):
            raise MftError(f"block_size={block_size} must be a power of two")
        if num_blocks < 2:
            raise MftError(f"num_blocks={num_blocks} must be at least 2 (block 0 is scratch)")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self._free = list(range(num_blocks - 1, SCRATCH_BLOCK, -1))  # pop() hands out low numbers first
        self.tables: dict[int, list[int]] = {}

    @property
    def num_free(self) -> int:
        return len(self._free)

    @property
    def num_used(self) -> int:
        return self.num_blocks - 1 - len(self._free)

    def blocks_for(self, num_tokens: int) -> int:
        return -(-num_tokens // self.block_size)

    def can_hold(self, seq_id: int, num_tokens: int) -> bool:
        """Whether `seq_id` can grow to `num_tokens` cached tokens with the free blocks left."""
        have = len(self.tables.get(seq_id, ()))
        return self.blocks_for(num_tokens) - have <= len(self._free)

    def reserve(self, seq_id: int, num_tokens: int) -> None:
        """Grow `seq_id`'s table to cover `num_tokens` tokens (raises when the pool is short)."""
        table = self.tables.setdefault(seq_id, [])
        need = self.blocks_for(num_tokens) - len(table)
        if need > len(self._free):
            raise MftError(f"KV cache: {need} blocks needed, {len(self._free)} free")
        for _ in range(max(need, 0)):
            table.append(self._free.pop())

    def free(self, seq_id: int) -> None:
        for block in reversed(self.tables.pop(seq_id, [])):
            self._free.append(block)

    def slots(self, seq_id: int, start: int, stop: int) -> list[int]:
        """Cache slots of positions start..stop-1 of `seq_id`."""
        table = self.tables[seq_id]
        bs = self.block_size
        return [table[p // bs] * bs + p % bs for p in range(start, stop)]
