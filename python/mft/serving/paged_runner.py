"""Model forward over a paged KV cache, composed from MindSpore gather/scatter ops.

The pools hold every layer's keys and values by slot: (layers * slots,
kv_heads, head_dim), as Parameters updated in place. A step takes, per batch
row, a chunk of S new tokens and the slots of the row's C - S cached tokens
(right-aligned, left-padded with the scratch slot 0). It gathers those slots
into an ordinary (B, kv_heads, C, D) cache, runs the model's own
`forward_step` with the chunk at slots C - S.. and the padding masked
(`pad_lengths`), then scatters the chunk's new keys/values into the pools at
their block-table slots. The model never sees block tables.

Decode steps (S = 1) have static shapes once the batch size and C are
rounded up to buckets, so they run compiled, one graph per bucket: by
default the Cell is called in GRAPH_MODE (2.1 vs 7.5 ms median per batch-1
step for `ms.jit` in PyNative on the llama fixture; equal at batch 16);
prefill chunks run in PyNative.

Attention backends (`attention_backend`): "composed" is the path above;
"fused" decodes without the gather: each layer's attention gets its pools, the
batch's block tables and context lengths (a tuple in place of its cache, see
mft.models.common.attention.attend) and runs the C++ paged-attention kernel
(mft.ops.paged_attention) over the blocks in place; the new token's keys and
values are scattered into the pools afterwards as before. "auto" picks fused
where the kernel runs (mft's C++ library loads, CPU target, float32 caches with
equal key/value shapes), else composed. With fused, a single sequence's text
prefill chunk (`prefill`: a lone new prompt, a continued chunk, a prefix-cache
hit) also runs through the kernel (PyNative; the chunk attends to itself
causally), and the model's RMSNorm/RoPE run as C++ kernels (decode_kernels.py);
several new prompts prefilled together (left-padded) and prompts with images
stay composed.
"""

from __future__ import annotations

import numpy as np

import mindspore as ms
from mindspore import Parameter, nn, ops

from mft.serving.decode_kernels import use_fused_kernels
from mft.graph_call import GraphCaller


BACKENDS = ("auto", "fused", "composed")


def fused_backend_problem(forward) -> str | None:
    """Why the fused paged-attention kernel cannot serve this PagedForward's model (None: it can)."""
    from mft.ops import paged_attention

    if not paged_attention.kernel_available():
        return "mft's C++ kernels are not available on this build/device"
    if forward.cache_dtype != ms.float32:
        return f"the KV cache is {forward.cache_dtype}, the kernel reads float32"
    if (forward.k_heads, forward.k_dim) != (forward.v_heads, forward.v_dim):
        return "keys and values have different shapes (MLA)"
    return None


class PagedForward(nn.Cell):
    def __init__(self, model, num_slots: int, block_size: int = 16, fused: bool = False):
        super().__init__()
        self.block_size = block_size
        self.fused = fused
        self.model = model
        # The model's own cache says the per-layer layout (DeepSeek MLA: all heads, wider keys than values).
        probe = model.new_kv_cache(1, 1)
        _, self.k_heads, _, self.k_dim = probe.keys[0].shape
        _, self.v_heads, _, self.v_dim = probe.values[0].shape
        dtype = probe.keys[0].dtype
        self.cache_dtype = dtype
        self.num_layers = len(probe.keys)
        self.num_slots = num_slots
        k_shape = (self.num_layers * num_slots, self.k_heads, self.k_dim)
        v_shape = (self.num_layers * num_slots, self.v_heads, self.v_dim)
        # M-RoPE models (Qwen2.5-VL) decode at cache slot + a per-row delta after an image prompt
        self.rope_delta = hasattr(model, "forward_step_delta")
        self.k_pool = Parameter(ms.Tensor(np.zeros(k_shape, np.float32)).astype(dtype), name="paged_k_pool", requires_grad=False)
        self.v_pool = Parameter(ms.Tensor(np.zeros(v_shape, np.float32)).astype(dtype), name="paged_v_pool", requires_grad=False)

    def construct(self, ids, gather_idx, pad, write_idx, start, lens, delta):
        """Last-position logits (B, 1, V); the compiled decode entry. Fused: gather_idx is the
        block tables (B, max_blocks) and lens (B,) the context lengths with the new token.
        delta (B, 1) int32: rotary position - slot per row (read by M-RoPE models only)."""
        if self.fused:
            return self.run_paged(ids, gather_idx, lens, pad, write_idx, start, delta)
        return self.run(ids, gather_idx, pad, write_idx, start, True, delta=delta)

    def _step(self, ids, start, keys, values, last_only, pad, delta):
        if self.rope_delta and delta is not None:  # a text prefill (delta None) is at its slots
            return self.model.forward_step_delta(ids, start, keys, values, delta, last_only, pad)
        return self.model.forward_step(ids, start, keys, values, last_only, pad)

    def run_paged(self, ids, tables, lens, pad, write_idx, start, delta, last_only: bool = True):
        """A decode step (S = 1) or one sequence's prefill chunk (S tokens after lens - S cached ones) with the
        paged-attention kernel reading the pools in place; the chunk's keys/values are written after."""
        b, s = ids.shape
        keys = ()
        values = ()
        for i in range(self.num_layers):
            keys = keys + ((self.k_pool, tables, lens, i * self.num_slots, self.block_size),)
            values = values + (self.v_pool,)
        logits, new_k, new_v = self._step(ids, start, keys, values, last_only, pad, delta)
        targets = write_idx.reshape(-1)
        for i in range(self.num_layers):
            index = targets + i * self.num_slots
            k = new_k[i].swapaxes(1, 2).reshape(b * s, self.k_heads, self.k_dim)
            v = new_v[i].swapaxes(1, 2).reshape(b * s, self.v_heads, self.v_dim)
            logits = ops.depend(logits, ops.scatter_update(self.k_pool, index, k))
            logits = ops.depend(logits, ops.scatter_update(self.v_pool, index, v))
        return logits

    def run(self, ids, gather_idx, pad, write_idx, start, last_only: bool, embeds=None, rope_positions=None, delta=None):
        """ids (B, S) int32; gather_idx (B, C) int32 slots; pad (B,) int32 left padding;
        write_idx (B, S) int32 slots for the chunk; start = C - S (int32 scalar tensor).
        `embeds` (B, S, hidden): the chunk's input embeddings instead of ids (a prompt with images),
        `rope_positions` (3, B, S) their M-RoPE positions (None: the slots); `delta` (B, 1): decode offsets."""
        b, c = gather_idx.shape
        s = ids.shape[1]
        flat = gather_idx.reshape(-1)
        keys = ()
        values = ()
        for i in range(self.num_layers):
            index = flat + i * self.num_slots
            keys = keys + (ops.gather(self.k_pool, index, 0).reshape(b, c, self.k_heads, self.k_dim).swapaxes(1, 2),)
            values = values + (ops.gather(self.v_pool, index, 0).reshape(b, c, self.v_heads, self.v_dim).swapaxes(1, 2),)
        if embeds is None:
            logits, new_k, new_v = self._step(ids, start, keys, values, last_only, pad, delta)
        elif rope_positions is None:
            logits, new_k, new_v = self.model.forward_embeds(embeds, start, keys, values, last_only, pad)
        else:
            logits, new_k, new_v = self.model.forward_embeds(embeds, start, keys, values, last_only, pad, rope_positions)
        targets = write_idx.reshape(-1)
        for i in range(self.num_layers):
            index = targets + i * self.num_slots
            k = new_k[i][:, :, c - s:, :].swapaxes(1, 2).reshape(b * s, self.k_heads, self.k_dim)
            v = new_v[i][:, :, c - s:, :].swapaxes(1, 2).reshape(b * s, self.v_heads, self.v_dim)
            logits = ops.depend(logits, ops.scatter_update(self.k_pool, index, k))
            logits = ops.depend(logits, ops.scatter_update(self.v_pool, index, v))
        return logits


PREFILL_ALIGN = 16  # prefill chunk widths are padded to a multiple of this


def align(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


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


class PagedRunner:
    """Builds the step inputs from block-table slots and runs prefill / decode."""

    MODES = ("graph", "jit", "pynative")

    def __init__(self, model, num_slots: int, block_size: int, max_rows: int, max_len: int, mode: str = "graph",
                 attention_backend: str = "auto"):
        if mode not in self.MODES:
            raise ValueError(f"decode mode {mode!r}: expected one of {self.MODES}")
        if attention_backend not in BACKENDS:
            raise ValueError(f"attention backend {attention_backend!r}: expected one of {BACKENDS}")
        self.forward = PagedForward(model, num_slots, block_size)
        problem = None if attention_backend == "composed" else fused_backend_problem(self.forward)
        if attention_backend == "fused" and problem is not None:
            from mft.errors import MftError

            raise MftError(f"--attention-backend fused: {problem}; use auto or composed")
        self.forward.fused = attention_backend != "composed" and problem is None
        self.attention_backend = "fused" if self.forward.fused else "composed"
        self.block_size = block_size
        self.batch_sizes = batch_buckets(max_rows)
        self.context_sizes = context_buckets(max_len, block_size)
        self.mode = mode
        self._jitted = ms.jit(self.forward.construct) if mode == "jit" else None
        self._graph = GraphCaller.of(self.forward)  # graph mode: later calls of a compiled bucket skip Cell.__call__
        # The fused backend also runs RMSNorm and RoPE as C++ kernels (fewer kernels per decode step).
        self.fused_kernels = use_fused_kernels(model) if self.forward.fused else {"rms_norm": 0, "rope": 0}
        self.compiled_shapes: set[tuple[int, int]] = set()

    def _decode(self, *inputs):
        """graph: the Cell called in GRAPH_MODE (one compiled graph per input shape, the process returns
        to its previous mode right after; later calls run the compiled graph directly, mft/graph_call.py);
        jit: ms.jit of construct in PyNative; pynative: op by op."""
        if self.mode == "jit":
            return self._jitted(*inputs)
        if self.mode == "pynative":
            return self.forward(*inputs)
        return self._graph(*inputs)

    def prefill(self, tokens: list[int], context_slots: list[int], write_slots: list[int], all_logits: bool, embeds=None,
                rope_positions=None) -> np.ndarray:
        """One sequence's chunk `tokens` after its cached `context_slots`; fp32 logits (S, V) or (1, V).
        `embeds` (1, S, hidden): the chunk's embeddings (image features in place) instead of the ids';
        `rope_positions` (3, 1, S): their M-RoPE positions (Qwen2.5-VL), None for slot positions."""
        s = len(tokens)
        ctx = len(context_slots)
        if self.forward.fused and embeds is None and rope_positions is None:
            # Through the paged-attention kernel: the cached blocks are read in place (no gather), the chunk
            # attends causally to itself. The block table covers the cached positions and the chunk's.
            # The chunk is right-padded to a multiple of PREFILL_ALIGN (few distinct shapes, so PyNative's
            # per-shape caches stop growing): padding queries come after every real one, which never sees
            # them; their keys go to the scratch block and their table entries are never read.
            bs = self.block_size
            width = align(s, PREFILL_ALIGN)
            ids = np.zeros((1, width), np.int32)
            ids[0, :s] = tokens
            write = np.zeros((1, width), np.int32)
            write[0, :s] = write_slots
            table = np.zeros((1, -(-(ctx + width) // bs)), np.int32)
            real = [slot // bs for slot in (list(context_slots) + list(write_slots))[::bs]]
            table[0, :len(real)] = real
            logits = self.forward.run_paged(
                ms.Tensor(ids), ms.Tensor(table), ms.Tensor(np.asarray([ctx + width], np.int32)),
                ms.Tensor(np.zeros(1, np.int32)), ms.Tensor(write), ms.Tensor(ctx, ms.int32), None, False)
            logits = logits.asnumpy()[0]
            return logits[:s] if all_logits else logits[s - 1:s]
        gather = np.zeros((1, ctx + s), np.int32)
        gather[0, :ctx] = context_slots
        logits = self.forward.run(
            ms.Tensor(np.asarray([tokens], np.int32)), ms.Tensor(gather), ms.Tensor(np.zeros(1, np.int32)),
            ms.Tensor(np.asarray([write_slots], np.int32)), ms.Tensor(ctx, ms.int32), not all_logits, embeds, rope_positions,
        )
        return logits.asnumpy()[0]

    def prefill_fresh(self, rows: list, all_logits: bool) -> list:
        """Several sequences with nothing cached yet, one call: rows [(tokens, write_slots)], left-padded to
        the longest; -> per row fp32 logits (S_i, V) (all_logits) or (1, V)."""
        width = align(max(len(tokens) for tokens, _ in rows), PREFILL_ALIGN)  # few distinct shapes
        b = len(rows)
        ids = np.zeros((b, width), np.int32)
        write = np.zeros((b, width), np.int32)  # padding writes go to the scratch block
        pad = np.zeros(b, np.int32)
        for r, (tokens, slots) in enumerate(rows):
            pad[r] = width - len(tokens)
            ids[r, pad[r]:] = tokens
            write[r, pad[r]:] = slots
        logits = self.forward.run(ms.Tensor(ids), ms.Tensor(np.zeros((b, width), np.int32)), ms.Tensor(pad),
                                  ms.Tensor(write), ms.Tensor(0, ms.int32), not all_logits).asnumpy()
        if not all_logits:
            return [logits[r] for r in range(b)]
        return [logits[r, pad[r]:] for r in range(b)]

    def decode_shape(self, batch: int, max_context: int) -> tuple[int, int]:
        """(batch bucket, cache-length bucket) for `batch` rows whose longest context is `max_context`."""
        return bucket(batch, self.batch_sizes), bucket(max_context + 1, self.context_sizes)

    def warmup(self) -> None:
        """Compile every (batch, cache length) decode graph now (writes go to the scratch block)."""
        for bb in self.batch_sizes:
            for cb in self.context_sizes:
                self.decode([0] * bb, [[0] * (cb - 1)] * bb, [0] * bb)

    def decode(self, tokens: list[int], context_slots: list[list[int]], write_slots: list[int], deltas=None) -> np.ndarray:
        """One new token per row after its cached context; fp32 logits (rows, V).
        `deltas`: per row, rotary position - cache slot (M-RoPE after an image prompt; None: all 0)."""
        rows = len(tokens)
        bb, cb = self.decode_shape(rows, max(len(c) for c in context_slots))
        ids = np.zeros((bb, 1), np.int32)
        fused = self.forward.fused
        bs = self.block_size
        # Composed: every row's context slots, right-aligned; fused: block tables (B, cb / bs) and lengths.
        gather = np.zeros((bb, cb // bs if fused else cb), np.int32)
        lens = np.ones(bb, np.int32)
        pad = np.full(bb, cb - 1, np.int32)
        write = np.zeros((bb, 1), np.int32)
        delta = np.zeros((bb, 1), np.int32)
        if deltas is not None:
            delta[:rows, 0] = deltas
        for r in range(rows):
            ctx = context_slots[r]
            ids[r, 0] = tokens[r]
            if fused:
                blocks = ctx[::bs]
                gather[r, :len(blocks)] = [slot // bs for slot in blocks]
                lens[r] = len(ctx) + 1
            else:
                gather[r, cb - 1 - len(ctx):cb - 1] = ctx
            pad[r] = cb - 1 - len(ctx)
            write[r, 0] = write_slots[r]
        self.compiled_shapes.add((bb, cb))
        logits = self._decode(ms.Tensor(ids), ms.Tensor(gather), ms.Tensor(pad), ms.Tensor(write),
                              ms.Tensor(cb - 1, ms.int32), ms.Tensor(lens), ms.Tensor(delta))
        return logits.asnumpy()[:rows, -1, :]
