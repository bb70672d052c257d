"""The bounded shapes of `mft serve`'s compiled steps and PyNative prefill calls (each new shape costs a
compile, or PyNative code kept per shape)."""

from __future__ import annotations


PREFILL_MIN_WIDTH = 16  # the narrowest prefill chunk width; widths are powers of two from here


def bucket(n: int, sizes) -> int:
    """The smallest of `sizes` (ascending) that is >= n."""
    for size in sizes:
        if size >= n:
            return size
    raise ValueError(f"{n} exceeds the largest bucket {sizes[-1]}")


def batch_buckets(max_rows: int) -> list[int]:
    """1, 4, 16, 64, ... below max_rows, then max_rows: few graphs, at most 4x padding."""
    sizes = [1]
    while sizes[-1] * 4 < max_rows:
        sizes.append(sizes[-1] * 4)
    return sorted(set(sizes + [max_rows]))


def context_buckets(max_len: int, block_size: int, smallest: int = 256) -> list[int]:
    """Cache lengths (multiples of block_size): one up to `smallest`, then doubling up to max_len."""
    def up(n):
        return -(-n // block_size) * block_size
    sizes = [up(min(max_len, smallest))]
    while sizes[-1] < max_len:
        sizes.append(up(min(sizes[-1] * 2, max_len)))
    return sizes


def row_buckets(max_rows: int) -> list[int]:
    """1, 4, 16, 64, then doubling below max_rows, then max_rows: few graphs (each costs seconds to
    compile); small steps (decode batches) pad at most 4x, prefill-sized ones at most 2x."""
    sizes = [size for size in (1, 4, 16, 64) if size < max_rows]
    while sizes and sizes[-1] >= 64 and sizes[-1] * 2 < max_rows:
        sizes.append(sizes[-1] * 2)
    return sizes + [max_rows]


def powers_of_two(low: int, high: int) -> list[int]:
    """low, 2 low, 4 low, ... up to the first one >= high."""
    sizes = [low]
    while sizes[-1] < high:
        sizes.append(sizes[-1] * 2)
    return sizes


class PrefillShapes:
    """The bounded set of prefill call shapes (rows B, chunk width W): widths powers of two from 16 up to
    the longest chunk (max_num_batched_tokens or max_model_len), rows powers of two up to max_num_seqs,
    B x W at most `cap` tokens (2x max_num_batched_tokens rounded up to a power of two). PyNative keeps
    compiled code per input shape, so only these shapes ever run: they are all run once at start-up
    (PagedRunner.warmup) and memory stays flat afterwards."""

    def __init__(self, max_rows: int, max_len: int, max_batched_tokens: int):
        longest = max(1, min(max_batched_tokens, max_len))
        self.widths = powers_of_two(PREFILL_MIN_WIDTH, longest)
        self.rows = sorted({r for r in powers_of_two(1, max_rows) if r < max_rows} | {max_rows})
        self.cap = max(powers_of_two(1, 2 * max_batched_tokens)[-1], self.widths[-1])

    def width(self, n: int) -> int:
        return bucket(n, self.widths)

    def batch(self, n: int) -> int:
        return bucket(n, self.rows)

    def fits(self, rows: int, longest: int) -> bool:
        return rows <= self.rows[-1] and self.batch(rows) * self.width(longest) <= self.cap

    def all(self) -> list[tuple[int, int]]:
        return [(b, w) for w in self.widths for b in self.rows if b * w <= self.cap]
