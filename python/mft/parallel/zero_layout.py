"""Where every parameter element sits in ZeRO's flat buffer, and which part each dp rank owns.

All trainable parameters (in the optimizer's order) are laid end to end in
one flat fp32 vector of `total` elements, padded with zeros to `padded`, a
multiple of the dp size; rank r owns elements [r * shard, (r + 1) * shard).
A rank's shard covers pieces of one or more parameters (`segments`); the
padding, if any, is at the end of the last rank's shard.

Pure Python + numpy (no MindSpore), so the arithmetic is tested in-process
and checkpoints can be sliced / gathered without a cluster.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mft.errors import MftError


@dataclass(frozen=True)
class Segment:
    """Elements [start, stop) of parameter `index` (flattened) sit at [at, at + stop - start) of the shard."""

    index: int
    start: int
    stop: int
    at: int

    @property
    def size(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class FlatLayout:
    sizes: tuple[int, ...]  # elements of each parameter, in order
    world: int  # dp size

    def __post_init__(self):
        if self.world < 1:
            raise MftError(f"parallel.dp must be >= 1, got {self.world}")
        if any(s < 0 for s in self.sizes):
            raise MftError(f"negative parameter size in {self.sizes}")

    @classmethod
    def of_shapes(cls, shapes, world: int) -> "FlatLayout":
        return cls(tuple(int(np.prod(s)) if len(s) else 1 for s in shapes), int(world))

    @property
    def total(self) -> int:
        return int(sum(self.sizes))

    @property
    def shard(self) -> int:
        """Elements per rank: ceil(total / world)."""
        return -(-self.total // self.world)

    @property
    def padded(self) -> int:
        return self.shard * self.world

    @property
    def offsets(self) -> tuple[int, ...]:
        out, at = [], 0
        for s in self.sizes:
            out.append(at)
            at += s
        return tuple(out)

    def segments(self, rank: int) -> tuple[Segment, ...]:
        """The pieces of parameters inside rank `rank`'s shard, in flat order."""
        if not 0 <= rank < self.world:
            raise MftError(f"rank {rank} outside 0..{self.world - 1}")
        lo, hi = rank * self.shard, (rank + 1) * self.shard
        out = []
        for i, (off, n) in enumerate(zip(self.offsets, self.sizes)):
            a, b = max(lo, off), min(hi, off + n)
            if a < b:
                out.append(Segment(i, a - off, b - off, a - lo))
        return tuple(out)

    def pad(self, rank: int) -> int:
        """Zero elements at the end of rank `rank`'s shard (only the last rank's can be non-zero)."""
        used = sum(s.size for s in self.segments(rank))
        return self.shard - used

    # ------------------------------------------------------------------ numpy helpers (checkpoints, tests)

    def shard_of(self, arrays, rank: int) -> np.ndarray:
        """Rank `rank`'s shard (float32, `shard` elements) of per-parameter arrays given in order."""
        arrays = list(arrays)
        if len(arrays) != len(self.sizes):
            raise MftError(f"expected {len(self.sizes)} arrays, got {len(arrays)}")
        out = np.zeros(self.shard, np.float32)
        for seg in self.segments(rank):
            flat = np.asarray(arrays[seg.index]).reshape(-1)
            if flat.size != self.sizes[seg.index]:
                raise MftError(f"array {seg.index} has {flat.size} elements, the layout expects {self.sizes[seg.index]}")
            out[seg.at:seg.at + seg.size] = flat[seg.start:seg.stop]
        return out

    def unflatten(self, flat: np.ndarray, shapes) -> list[np.ndarray]:
        """The padded flat vector (all ranks' shards in rank order) -> per-parameter arrays shaped `shapes`."""
        flat = np.asarray(flat).reshape(-1)
        if flat.size != self.padded:
            raise MftError(f"expected a flat buffer of {self.padded} elements, got {flat.size}")
        return [flat[o:o + n].reshape(tuple(s)) for o, n, s in zip(self.offsets, self.sizes, shapes)]

    def runs(self, rank: int, keys) -> tuple[tuple[int, int, object], ...]:
        """Maximal ranges [a, b) of the shard whose elements share one `keys[param index]` value, as (a, b, key).
        The padding (if any) is its own range with key None."""
        out: list[list] = []
        for seg in self.segments(rank):
            key = keys[seg.index]
            if out and out[-1][2] == key and out[-1][1] == seg.at:
                out[-1][1] = seg.at + seg.size
            else:
                out.append([seg.at, seg.at + seg.size, key])
        pad = self.pad(rank)
        if pad:
            out.append([self.shard - pad, self.shard, None])
        return tuple((a, b, k) for a, b, k in out)
