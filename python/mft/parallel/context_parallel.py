"""Context parallelism (`parallel.cp`): every sequence split across the cp group, causal load balanced.

With cp = C ranks a sequence of S tokens is cut into 2C chunks of c = S / 2C
tokens. cp rank r holds chunks r and 2C-1-r (Megatron's load balance for
causal attention: an early and a late chunk, so every rank has the same
number of (query, key) pairs under the causal mask), with their true
position ids for RoPE.

Attention is exact: each layer all-gathers the keys and values of the whole
sequence over the cp group (`KVGather`, one collective for k and v
together); the backward reduce-scatters the K/V gradients, so rank r
receives the sum over every rank's queries of the gradient of its own
chunks' keys and values. Chunk i's queries can see exactly the keys at
positions [0, (i+1)c), a prefix of the sequence, so each of the rank's two
chunks attends to its own prefix (picked from the gathered order by
constant indices) with its queries at positions i*c .. (i+1)c - 1 of it
(`ChunkProblems`; `ChunkAttention`, run by the model's `AttentionCore`):
(2C+1)c^2 scores per head instead of 2c*S. With `model.fused_attention`
each chunk is one call of the C++ flash kernel with `q_offset = i*c`
(`mft.ops.flash_attention`: forward and backward skip the key tiles after
the chunk and mask the diagonal rows at the offset); otherwise the composed
reference with the same offset mask. The gathered form was chosen over a
ring exchange because all-gather and all-reduce are what MindSpore's CPU
backend has (a ring of Send/Recv would itself be built from all-gathers
there, `comm.Shift`), and it needs no online-softmax merge.

Loss: every rank computes its chunks' token losses; `CPLossTotal` turns the
rank's mean into (sum over its tokens) / (token count over the cp group) and
sums that over the group forward (identity backward), so every cp rank
reports the single-process mean and back-propagates only its own tokens.
`CPGradReducer` then sums the gradients over cp before the data-parallel
mean: the result is the single-process gradient of the global batch.

Data: every cp rank of a dp replica reads the same samples (its dp rank is
the same); the train step's loss cell selects the rank's chunk columns of
ids and labels inside the graph (`ChunkSelect`), so the data pipeline,
validation batches and checkpoints are the same as at cp=1. Weights are
replicated over cp, so checkpoints need nothing new and move between cp
sizes unchanged.

Build a model for cp inside `with context_parallel(group, seq_len):`
(like `tensor_parallel`): attention layers then gather K/V and attend per
chunk, and the decoder uses the rank's positions (`Positions`); such a model
takes (batch, 2c) chunk inputs.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass

import numpy as np

from mft.errors import MftError
from mft.parallel.groups import Group

_MASKED = float(-3.4028234663852886e38)  # fp32 min, as the decoder's masks (a masked score stays finite)

# Families whose attention is models/common/attention.py's Attention (MLA and MoE families are refused).
CP_ARCHS = ("llama", "qwen2", "qwen3")


# ----------------------------------------------------------------------------- chunk arithmetic (numpy)


def chunk_size(seq_len: int, cp: int) -> int:
    if cp < 1 or seq_len % (2 * cp):
        raise MftError(f"data.seq_len={seq_len} must be a multiple of 2*parallel.cp={2 * cp} "
                       "(each cp rank holds two of 2*cp equal chunks)")
    return seq_len // (2 * cp)


def local_positions(seq_len: int, cp: int, rank: int) -> np.ndarray:
    """int32 (2c,): the true positions of cp rank `rank`'s tokens, chunk rank then chunk 2*cp-1-rank."""
    if not 0 <= rank < cp:
        raise MftError(f"cp rank {rank} is outside parallel.cp={cp}")
    c = chunk_size(seq_len, cp)
    first = np.arange(rank * c, (rank + 1) * c)
    second = np.arange((2 * cp - 1 - rank) * c, (2 * cp - rank) * c)
    return np.concatenate([first, second]).astype(np.int32)


def gathered_positions(seq_len: int, cp: int) -> np.ndarray:
    """int32 (S,): the true position of each key after the all-gather (rank 0's tokens, then rank 1's, ...)."""
    return np.concatenate([local_positions(seq_len, cp, r) for r in range(cp)])


def split_sequence(x: np.ndarray, cp: int, rank: int, axis: int = -1) -> np.ndarray:
    """cp rank `rank`'s tokens of `x` along `axis` (the full sequence there)."""
    x = np.asarray(x)
    return np.take(x, local_positions(x.shape[axis], cp, rank), axis=axis)


def merge_sequence(pieces: list, axis: int = -1) -> np.ndarray:
    """The inverse of `split_sequence` over all ranks: every rank's piece back at its positions."""
    cp = len(pieces)
    pieces = [np.asarray(p) for p in pieces]
    seq = sum(p.shape[axis] for p in pieces)
    order = np.argsort(gathered_positions(seq, cp), kind="stable")
    return np.take(np.concatenate(pieces, axis=axis), order, axis=axis)


# ----------------------------------------------------------------------------- build-time context


@dataclass(frozen=True)
class ContextParallel:
    """What a model built for cp needs: the group and the sequence length it splits."""

    group: Group
    seq_len: int

    @property
    def size(self) -> int:
        return self.group.size

    @property
    def rank(self) -> int:
        return self.group.rank

    def positions(self) -> np.ndarray:
        return local_positions(self.seq_len, self.size, self.rank)

    def key_positions(self) -> np.ndarray:
        return gathered_positions(self.seq_len, self.size)


_CURRENT: ContextParallel | None = None


@contextlib.contextmanager
def context_parallel(group: Group | None, seq_len: int):
    """Models constructed inside the block split sequences of `seq_len` over `group` (None / size 1: no-op)."""
    global _CURRENT
    active = group is not None and group.size > 1
    if active:
        chunk_size(seq_len, group.size)  # checked before anything changes: a bad seq_len leaves no cp setting behind
    previous = _CURRENT
    _CURRENT = ContextParallel(group, int(seq_len)) if active else None
    try:
        yield
    finally:
        _CURRENT = previous


def current() -> ContextParallel | None:
    """The cp setting layers are being built for (None outside `context_parallel` or at cp=1)."""
    return _CURRENT


# ----------------------------------------------------------------------------- cells


@functools.lru_cache(maxsize=None)
def _cells():
    import mindspore as ms
    from mindspore import nn, ops

    from mft.parallel.comm import AllReduce
    from mft.parallel.mappings import GatherFromSequenceRegion, ReduceFromRegion

    class KVGather(nn.Cell):
        """(k, v) (B, kv_heads, 2c, D) -> the whole sequence's (B, kv_heads, S, D), keys in gathered order.

        Forward: one all-gather of [k | v] along the sequence; backward: reduce-scatter (sum) of the
        gradient (`mappings.GatherFromSequenceRegion`), so each rank gets its chunks' full gradient.
        """

        def __init__(self, group: Group):
            super().__init__()
            self.gather = GatherFromSequenceRegion(group, 2)

        def construct(self, k, v):
            dk = k.shape[-1]
            kv = self.gather(ops.concat((k, v.astype(k.dtype)), -1))
            return kv[..., :dk], kv[..., dk:].astype(v.dtype)

    class ChunkSelect(nn.Cell):
        """(B, S, ...) -> (B, 2c, ...): this rank's chunk columns (ids, labels) along dim 1."""

        def __init__(self, info: ContextParallel):
            super().__init__()
            self.index = ms.Tensor(info.positions(), ms.int32)

        def construct(self, x):
            return ops.gather(x, self.index, 1)

    class CPLossTotal(nn.Cell):
        """(this rank's mean token loss, its labels) -> the cp group's mean token loss.

        Forward: sum over the group of mean_r * n_r / N (N = non-ignored labels over the group);
        backward: identity (each rank differentiates its own tokens' share).
        """

        def __init__(self, group: Group, ignore_index: int = -100):
            super().__init__()
            self.ignore = ignore_index
            self.count_sum = AllReduce(group, "sum")
            self.total = ReduceFromRegion(group)

        def construct(self, loss, labels):
            n = (labels != self.ignore).astype(ms.float32).sum()
            total_n = ops.stop_gradient(self.count_sum(n.reshape(1)).reshape(()))
            share = loss * (n / ops.maximum(total_n, 1.0))
            return self.total(share)

    class CPGradReducer(nn.Cell):
        """grads -> grads summed over the cp group (one flat fp32 all-reduce), then `inner` (dp mean) if any."""

        def __init__(self, group: Group, params, inner=None):
            super().__init__(auto_prefix=False)
            self.all_reduce = AllReduce(group, "sum")
            self.shapes = tuple(tuple(p.shape) for p in params)
            self.dtypes = tuple(p.dtype for p in params)
            self.sizes = tuple(int(np.prod(s)) if s else 1 for s in self.shapes)
            self.offsets = tuple(int(o) for o in np.concatenate([[0], np.cumsum(self.sizes)[:-1]]))
            self.inner = inner
            self.has_inner = inner is not None

        def construct(self, grads):
            flat = self.all_reduce(ops.concat([g.astype(ms.float32).reshape(-1) for g in grads]))
            out = ()
            for i in range(len(self.sizes)):
                piece = flat[self.offsets[i]:self.offsets[i] + self.sizes[i]]
                out = out + (piece.reshape(self.shapes[i]).astype(self.dtypes[i]),)
            if self.has_inner:
                out = self.inner(out)
            return out

    class ChunkProblems(nn.Cell):
        """(q (B, H, 2c, D), gathered k, v (B, kv_heads, S, D)) -> the rank's two causal attention problems.

        Chunk i's queries (positions i*c ..) see exactly the keys at positions [0, (i+1)c): a prefix of
        the sequence in position order. So each chunk attends to its own prefix (keys picked from the
        gathered order by constant indices) under a (c, (i+1)c) mask, key j visible from query t where
        j <= i*c + t. That skips the keys after the chunk: (2cp+1) c^2 scores per head instead of
        2c * S (about half).
        """

        def __init__(self, info: ContextParallel):
            super().__init__()
            cp, rank = info.size, info.rank
            c = chunk_size(info.seq_len, cp)
            self.c = c
            order = np.argsort(gathered_positions(info.seq_len, cp), kind="stable").astype(np.int32)
            firsts = (rank, 2 * cp - 1 - rank)
            self.index_a = ms.Tensor(order[:(firsts[0] + 1) * c])
            self.index_b = ms.Tensor(order[:(firsts[1] + 1) * c])
            self.mask_a = ms.Tensor(_prefix_mask(c, firsts[0]))
            self.mask_b = ms.Tensor(_prefix_mask(c, firsts[1]))

        def construct(self, q, k, v):
            qa = q[:, :, :self.c]
            qb = q[:, :, self.c:]
            ka = ops.gather(k, self.index_a, 2)
            va = ops.gather(v, self.index_a, 2)
            kb = ops.gather(k, self.index_b, 2)
            vb = ops.gather(v, self.index_b, 2)
            return qa, ka, va, self.mask_a, qb, kb, vb, self.mask_b

    class Positions(nn.Cell):
        """() -> this rank's true positions (2c,) int32 (for RoPE)."""

        def __init__(self, info: ContextParallel):
            super().__init__()
            self.positions = ms.Tensor(info.positions(), ms.int32)

        def construct(self):
            return self.positions

    class ChunkAttention(nn.Cell):
        """(q (B, H, 2c, D), gathered k, v (B, kv_heads, S, D)) -> (B, 2c, H * D): the rank's two chunks, each
        attending to its key prefix with its queries at offset chunk * c (fused C++ kernel or composed)."""

        def __init__(self, info: ContextParallel, scaling: float, fused: bool):
            super().__init__()
            from mft.ops.attention import flash_attention

            self.attention = flash_attention
            self.problems = ChunkProblems(info)
            self.scaling = float(scaling)
            self.fused = bool(fused)
            c = self.problems.c
            self.offset_a = info.rank * c
            self.offset_b = (2 * info.size - 1 - info.rank) * c

        def construct(self, q, k, v):
            qa, ka, va, _, qb, kb, vb, _ = self.problems(q, k, v)
            out_a = self.attention(qa, ka, va, self.scaling, None, self.fused, True, self.offset_a)
            out_b = self.attention(qb, kb, vb, self.scaling, None, self.fused, True, self.offset_b)
            b, heads, c, d = qa.shape
            return ops.concat((out_a, out_b), 2).swapaxes(1, 2).reshape(b, 2 * c, heads * d)

    return KVGather, ChunkSelect, CPLossTotal, CPGradReducer, Positions, ChunkProblems, ChunkAttention


def kv_gather(info: ContextParallel):
    return _cells()[0](info.group)


def chunk_select(info: ContextParallel):
    return _cells()[1](info)


def loss_total(info: ContextParallel):
    return _cells()[2](info.group)


def positions(info: ContextParallel):
    """A Cell returning this rank's true positions, for a model built for cp."""
    return _cells()[4](info)


def chunk_problems(info: ContextParallel):
    """A Cell splitting the rank's attention into its two chunks' prefix problems (see ChunkProblems)."""
    return _cells()[5](info)


def chunk_attention(info: ContextParallel, scaling: float, fused: bool):
    """The attention of the rank's two chunks over the gathered K/V (see ChunkAttention); `fused`: the C++ kernel."""
    return _cells()[6](info, scaling, fused)


def _prefix_mask(c: int, chunk: int) -> np.ndarray:
    """Additive fp32 (1, 1, c, (chunk+1)c): query t of chunk `chunk` sees key j where j <= chunk*c + t."""
    keys = np.arange((chunk + 1) * c)[None, :]
    queries = chunk * c + np.arange(c)[:, None]
    return np.where(keys <= queries, 0.0, _MASKED).astype(np.float32)[None, None]


def grad_reducer(group: Group, params, inner=None):
    """The train step's grad reducer: cp sum, then `inner` (the dp mean); `inner` itself at cp=1."""
    if group is None or group.size == 1:
        return inner
    return _cells()[3](group, params, inner)


# ----------------------------------------------------------------------------- config checks


def check_config(cfg) -> None:
    """Load-time checks of a recipe with parallel.cp > 1 (MftError naming the keys)."""
    p = cfg.parallel
    cp = p.cp
    if not isinstance(cp, int) or cp < 1:
        raise MftError(f"parallel.cp must be an integer >= 1, got {cp!r}")
    if cp == 1:
        return
    if cfg.data.seq_len % (2 * cp):
        raise MftError(f"parallel.cp={cp}: data.seq_len={cfg.data.seq_len} must be a multiple of 2*parallel.cp="
                       f"{2 * cp} (each cp rank holds two of 2*cp equal chunks of every sequence)")
    if p.sp and (cfg.data.seq_len // (2 * cp) * 2) % p.tp:
        raise MftError(f"parallel.cp={cp} with parallel.sp: each cp rank's {cfg.data.seq_len // cp} tokens "
                       f"(data.seq_len / parallel.cp) are split over parallel.tp={p.tp}; make data.seq_len a multiple of "
                       f"2*cp*tp={2 * cp * p.tp}")
    arch = cfg.model.arch
    if arch == "deepseek_v3":
        raise MftError(f"parallel.cp={cp} with model.arch={arch}: context parallelism is not implemented for MLA "
                       "attention (multi-head latent attention); set parallel.cp=1")
    if arch not in CP_ARCHS or cfg.model.num_experts:
        raise MftError(f"parallel.cp={cp}: context parallelism is implemented for the dense families "
                       f"({', '.join(CP_ARCHS)}), not model.arch={arch}"
                       f"{' with model.num_experts' if cfg.model.num_experts else ''} (MoE routing statistics would be "
                       "per chunk); set parallel.cp=1")
    refusals = [
        (cfg.finetune.packing, "finetune.packing=true (packed SFT rows: positions and attention restart per "
                               "conversation, which the chunk split does not follow)"),
        (cfg.finetune.distill.teacher, "finetune.distill.teacher (the teacher's logits are not split over cp)"),
        (p.pp > 1, f"parallel.pp={p.pp}"),
        (p.ep > 1, f"parallel.ep={p.ep}"),
        (p.zero, f"parallel.zero={p.zero}"),
        (cfg.monitor.grad_histograms, "monitor.grad_histograms=true (the probe would see one rank's chunks)"),
        (cfg.model.mtp_layers, f"model.mtp_layers={cfg.model.mtp_layers}"),
    ]
    for bad, what in refusals:
        if bad:
            raise MftError(f"parallel.cp={cp} with {what}: not supported with context parallelism; set parallel.cp=1")
