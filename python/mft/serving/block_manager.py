"""Fixed-size KV-cache blocks: a free-block pool, one block table per sequence, and prefix sharing.

Block 0 is never handed out: padded batch rows read and write its slots, so
they can never touch a live sequence's keys. A slot is `block * block_size +
offset`; a sequence's token at position p lives in slot
`table[p // block_size] * block_size + p % block_size`.

Prefix sharing (`prefix_caching=True`): a block whose block_size positions
are all computed is registered under a hash of (the previous block's hash,
its token ids, the LoRA adapter slot), so the hash names the whole prefix up
to the block's end. A new sequence first takes the longest run of
registered blocks matching its prompt (`match_prefix`), each block
ref-counted, and computes only the rest. Only full blocks are shared and a
sequence writes only at positions past its cached ones, so a shared block
is never written (no copy-on-write needed). A block whose last user frees
it goes back to the pool still registered: the pool hands out blocks in the
order they were freed, so a cached prefix lives until its block is reused
(then its registration is dropped), and a later prompt can revive it.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import numpy as np

from mft.errors import MftError

SCRATCH_BLOCK = 0


def block_hash(parent: bytes, tokens, adapter: int = 0) -> bytes:
    h = hashlib.sha256(parent)
    h.update(np.asarray(tokens, np.int64).tobytes())
    if isinstance(adapter, tuple):  # (adapter slot, image digest): Request.cache_key of a prompt with images
        h.update(int(adapter[0]).to_bytes(4, "little"))
        h.update(adapter[1])
    else:
        h.update(int(adapter).to_bytes(4, "little"))
    return h.digest()


class BlockManager:
    def __init__(self, num_blocks: int, block_size: int, prefix_caching: bool = False):
        if block_size < 1 or block_size & (block_size - 1):
            raise MftError(f"block_size={block_size} must be a power of two")
        if num_blocks < 2:
            raise MftError(f"num_blocks={num_blocks} must be at least 2 (block 0 is scratch)")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.prefix_caching = prefix_caching
        self._free: OrderedDict[int, None] = OrderedDict((b, None) for b in range(SCRATCH_BLOCK + 1, num_blocks))
        self.tables: dict[int, list[int]] = {}
        self._refs = [0] * num_blocks
        self._by_hash: dict[bytes, int] = {}  # registered full blocks
        self._hash_of: dict[int, bytes] = {}
        self._seq_hashes: dict[int, list[bytes]] = {}  # hashes of a sequence's full blocks so far
        self.prefix_queries = 0  # prompt tokens looked up
        self.prefix_hits = 0  # of those, tokens found cached

    @property
    def num_free(self) -> int:
        return len(self._free)

    @property
    def num_used(self) -> int:
        return self.num_blocks - 1 - len(self._free)

    @property
    def num_shared(self) -> int:
        """Blocks held by more than one sequence right now."""
        return sum(1 for r in self._refs if r > 1)

    @property
    def num_cached(self) -> int:
        """Registered (reusable) blocks, held or free."""
        return len(self._by_hash)

    def blocks_for(self, num_tokens: int) -> int:
        return -(-num_tokens // self.block_size)

    def can_hold(self, seq_id: int, num_tokens: int) -> bool:
        """Whether `seq_id` can grow to `num_tokens` cached tokens with the free blocks left."""
        have = len(self.tables.get(seq_id, ()))
        return self.blocks_for(num_tokens) - have <= len(self._free)

    def _take(self) -> int:
        block, _ = self._free.popitem(last=False)
        old = self._hash_of.pop(block, None)
        if old is not None:  # reused for other tokens: its cached prefix is gone
            del self._by_hash[old]
        self._refs[block] = 1
        return block

    def reserve(self, seq_id: int, num_tokens: int) -> None:
        """Grow `seq_id`'s table to cover `num_tokens` tokens (raises when the pool is short)."""
        table = self.tables.setdefault(seq_id, [])
        need = self.blocks_for(num_tokens) - len(table)
        if need > len(self._free):
            raise MftError(f"KV cache: {need} blocks needed, {len(self._free)} free")
        for _ in range(max(need, 0)):
            table.append(self._take())

    def free(self, seq_id: int) -> None:
        self._seq_hashes.pop(seq_id, None)
        for block in reversed(self.tables.pop(seq_id, [])):
            self._refs[block] -= 1
            if self._refs[block] == 0:
                self._free[block] = None

    def slots(self, seq_id: int, start: int, stop: int) -> list[int]:
        """Cache slots of positions start..stop-1 of `seq_id`."""
        table = self.tables[seq_id]
        bs = self.block_size
        return [table[p // bs] * bs + p % bs for p in range(start, stop)]

    # ---- prefix sharing -----------------------------------------------------
    def match_prefix(self, seq_id: int, tokens, adapter: int = 0) -> int:
        """For a sequence with no blocks yet: takes the registered blocks matching the longest block-aligned
        prefix of `tokens` (at most len(tokens) - 1 tokens, so one is left to compute); returns its length."""
        if not self.prefix_caching or self.tables.get(seq_id):
            return 0
        bs = self.block_size
        parent, hashes, blocks = b"", [], []
        for i in range((len(tokens) - 1) // bs):
            h = block_hash(parent, tokens[i * bs:(i + 1) * bs], adapter)
            block = self._by_hash.get(h)
            if block is None:
                break
            hashes.append(h)
            blocks.append(block)
            parent = h
        for block in blocks:
            if self._refs[block] == 0:
                del self._free[block]  # revived from the pool
            self._refs[block] += 1
        self.tables[seq_id] = blocks
        self._seq_hashes[seq_id] = hashes
        return len(blocks) * bs

    def note_lookup(self, num_tokens: int, num_hit: int) -> None:
        """Counts one admitted prompt's lookup (the hit-rate metric)."""
        self.prefix_queries += num_tokens
        self.prefix_hits += num_hit

    def register(self, seq_id: int, tokens, num_computed: int, adapter: int = 0) -> None:
        """Registers `seq_id`'s blocks that are full among its first `num_computed` positions (tokens[:num_computed])."""
        if not self.prefix_caching:
            return
        bs = self.block_size
        hashes = self._seq_hashes.setdefault(seq_id, [])
        table = self.tables.get(seq_id, [])
        for i in range(len(hashes), min(num_computed // bs, len(table))):
            h = block_hash(hashes[-1] if hashes else b"", tokens[i * bs:(i + 1) * bs], adapter)
            hashes.append(h)
            block = table[i]
            if h not in self._by_hash and block not in self._hash_of:
                self._by_hash[h] = block
                self._hash_of[block] = h

    def hit_rate(self) -> float:
        return self.prefix_hits / self.prefix_queries if self.prefix_queries else 0.0
