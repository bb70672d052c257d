"""PagedRunner: the step inputs of `mft serve` over a paged KV cache (block-table slots -> tensors), run.

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
step for `ms.jit` in PyNative on the llama fixture; equal at batch 16).
Prefill chunks on the composed backend (and the cases below) run in PyNative,
several sequences' chunks (new prompts and continued chunks alike) in one
call, right-padded; their shapes are bounded too (PrefillShapes: rows and
chunk width powers of two) and all run once at warm-up, because PyNative keeps
compiled code per input shape: with unbounded shapes the server's memory grew
with every new prompt length.

Attention backends (`attention_backend`): "composed" is the path above;
"fused" runs without the gather: each layer's attention gets its pools, the
rows' block tables, context lengths and write slots (a tuple in place of its
cache, see mft.models.common.attention.attend), writes the rows' new keys and
values to their slots, then runs the C++ paged-attention kernel
(mft.ops.paged_attention) over the blocks in place. "auto" picks fused where
the kernel runs (mft's C++ library loads, CPU target, float32 or int8 caches;
MLA through its own kernel, models/common/mla.py), else composed. The model's
RMSNorm/RoPE then run as C++ kernels too (decode_kernels.py).

Because each layer writes before it reads, a prefill token can run as a row of
its own, like a decode token: its context length counts the chunk tokens
before it. With prefill_mode "rows" (the default, fused backend) a step is one
compiled call over every decode token and every text prefill token
(`run_rows`), one graph per row bucket (row_buckets: 1, 4, 16, 64, then
doubling up to max_num_batched_tokens; the tables are max_model_len wide whatever the
contexts), the vocabulary projection only on each sequence's last row. The
whole serving loop then runs compiled graphs, so memory stays flat (PyNative
grows ~23 KB per call). Chunks that want every prompt logit (echo) output
every row. Prompts with images and engines with LoRA adapters keep the
PyNative chunk path.
"""

from __future__ import annotations

import numpy as np

import mindspore as ms
from mindspore import mint, ops

from mft.graph_call import GraphCaller
from mft.serving.decode_kernels import use_fused_kernels
from mft.serving.paged_forward import BACKENDS, PagedForward, fused_backend_problem
from mft.serving.step_shapes import PrefillShapes, batch_buckets, bucket, context_buckets, row_buckets

__all__ = ["PagedForward", "PagedRunner", "PrefillShapes", "fused_backend_problem"]


class PagedRunner:
    """Builds the step inputs from block-table slots and runs prefill / decode."""

    MODES = ("graph", "jit", "pynative")
    PREFILL_MODES = ("rows", "pynative")

    def __init__(self, model, num_slots: int, block_size: int, max_rows: int, max_len: int, mode: str = "graph",
                 attention_backend: str = "auto", max_batched_tokens: int = 512, prefill_mode: str = "rows"):
        if mode not in self.MODES:
            raise ValueError(f"decode mode {mode!r}: expected one of {self.MODES}")
        if attention_backend not in BACKENDS:
            raise ValueError(f"attention backend {attention_backend!r}: expected one of {BACKENDS}")
        if prefill_mode not in self.PREFILL_MODES:
            raise ValueError(f"prefill mode {prefill_mode!r}: expected one of {self.PREFILL_MODES}")
        self.forward = PagedForward(model, num_slots, block_size)
        problem = None if attention_backend == "composed" else fused_backend_problem(self.forward)
        if attention_backend == "fused" and problem is not None:
            from mft.errors import MftError

            raise MftError(f"--attention-backend fused: {problem}; use auto or composed")
        self.forward.fused = attention_backend != "composed" and problem is None
        self.attention_backend = "fused" if self.forward.fused else "composed"
        self.block_size = block_size
        self.prefill_shapes = PrefillShapes(max_rows, max_len, max_batched_tokens)
        widest = self.prefill_shapes.widths[-1]
        self.prefill_table_width = -(-(max_len + widest) // block_size)  # fused: lens = context + chunk width
        self.prefill_contexts = context_buckets(max_len + widest, block_size)  # composed: context + chunk width
        self.batch_sizes = batch_buckets(max_rows)
        self.context_sizes = context_buckets(max_len, block_size)
        # Fused: one compiled step per row count, whatever the contexts (the tables are max_len wide; the
        # kernel stops at each row's length). Rows are decode tokens and, with prefill_mode "rows", prefill
        # tokens too, so up to max_batched_tokens of them; outputs at most one per running sequence.
        self.max_len = max_len
        self.table_width = -(-max_len // block_size)
        self.row_sizes = row_buckets(max(max_rows, max_batched_tokens))
        self.out_rows = bucket(max_rows, self.row_sizes)
        self.mode = mode
        self._jitted = ms.jit(self.forward.construct) if mode == "jit" else None
        self._graph = GraphCaller.of(self.forward)  # graph mode: later calls of a compiled bucket skip Cell.__call__
        # The fused backend also runs RMSNorm and RoPE as C++ kernels (fewer kernels per decode step).
        self.fused_kernels = use_fused_kernels(model) if self.forward.fused else {"rms_norm": 0, "rope": 0}
        self.compiled_shapes: set[tuple[int, int]] = set()
        self.prefill_seen: set[tuple[int, int]] = set()  # (rows, width) of the prefill calls run so far
        # prefill_mode "rows": text prefill chunks join the step's compiled graph, one row per token (run_rows)
        self.rows_prefill = prefill_mode == "rows" and self.forward.fused

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
        return self.prefill_rows([(tokens, context_slots, write_slots)], all_logits, embeds, rope_positions)[0]

    def prefill_rows(self, rows: list, all_logits: bool, embeds=None, rope_positions=None) -> list:
        """Several sequences' prefill chunks in one call: rows [(tokens, context_slots, write_slots)], each
        chunk after its cached context (any mix of new prompts and continued chunks); -> per row fp32 logits
        (S_i, V) (all_logits) or (1, V) (its last token's).

        Shapes are bounded (PrefillShapes): rows padded to a power of two, chunks right-padded to a
        power-of-two width. A padding query comes after every real one of its row, so no real query sees
        it; padding keys/values go to the scratch block, padding rows are empty chunks written there too.
        Fused backend: the paged-attention kernel reads each row's cached blocks in place (a table of
        fixed width) and the chunk attends to itself causally. Composed: each row's context is gathered
        right-aligned before the chunk region, left-padded (positions count from the row's first real
        slot), into a cache of the chunk width (nothing cached) or a context bucket."""
        shapes = self.prefill_shapes
        n = len(rows)
        width = shapes.width(max(len(tokens) for tokens, _, _ in rows))
        bb = shapes.batch(n)
        self.prefill_seen.add((bb, width))
        ids = np.zeros((bb, width), np.int32)
        write = np.zeros((bb, width), np.int32)  # padding writes go to the scratch block
        lasts = np.arange(bb, dtype=np.int32) * width  # flat index of each row's last real position
        for r, (tokens, _, slots) in enumerate(rows):
            ids[r, :len(tokens)] = tokens
            write[r, :len(tokens)] = slots
            lasts[r] += len(tokens) - 1
        last_index = None if all_logits else ms.Tensor(lasts)
        contexts = [len(ctx) for _, ctx, _ in rows]
        if self.forward.fused and embeds is None and rope_positions is None:
            bs = self.block_size
            table = np.zeros((bb, self.prefill_table_width), np.int32)
            lens = np.full(bb, width, np.int32)
            start = max(contexts)
            pad = np.full(bb, start, np.int32)  # position = start + i - pad
            for r, (_, ctx, _) in enumerate(rows):
                blocks = [slot // bs for slot in list(ctx)[::bs]]
                table[r, :len(blocks)] = blocks
                lens[r] = len(ctx) + width
                pad[r] = start - len(ctx)
            inputs = (ms.Tensor(ids), ms.Tensor(table), ms.Tensor(lens), ms.Tensor(pad), ms.Tensor(write),
                      ms.Tensor(start, ms.int32))
            logits = self.forward.run_paged(*inputs, None, last_index)
        else:
            longest_ctx = max(contexts)
            c = width if longest_ctx == 0 else bucket(longest_ctx + width, self.prefill_contexts)
            gather = np.zeros((bb, c), np.int32)
            pad = np.full(bb, c - width, np.int32)
            for r, (_, ctx, _) in enumerate(rows):
                pad[r] = c - width - len(ctx)
                gather[r, pad[r]:c - width] = ctx
            if embeds is not None:
                embeds = self._pad_chunk(embeds, width)
            if rope_positions is not None:
                rope_positions = np.asarray(rope_positions)
                s = rope_positions.shape[-1]
                after = rope_positions[..., -1:] + np.arange(1, width - s + 1, dtype=rope_positions.dtype)
                rope_positions = np.concatenate([rope_positions, after], axis=-1)
            logits = self.forward.run(ms.Tensor(ids), ms.Tensor(gather), ms.Tensor(pad), ms.Tensor(write),
                                      ms.Tensor(c - width, ms.int32), False, embeds, rope_positions, None, last_index)
        logits = logits.asnumpy()
        if all_logits:
            return [logits[r, :len(rows[r][0])] for r in range(n)]
        return [logits[r] for r in range(n)]

    @staticmethod
    def _pad_chunk(embeds, width: int):
        """(1, S, hidden) embeddings right-padded with zeros to (1, width, hidden)."""
        b, s, hidden = embeds.shape
        if s == width:
            return embeds
        return mint.cat([embeds, ops.zeros((b, width - s, hidden), embeds.dtype)], dim=1)

    def decode_shape(self, batch: int, max_context: int) -> tuple[int, int]:
        """The compiled step's shape for `batch` rows whose longest context is `max_context`: fused (rows
        bucket, table width in blocks), composed (batch bucket, cache-length bucket)."""
        if self.forward.fused:
            return bucket(batch, self.row_sizes), self.table_width
        return bucket(batch, self.batch_sizes), bucket(max_context + 1, self.context_sizes)

    def warmup(self) -> None:
        """Compile every step shape now and run every PyNative prefill shape once unless prefill runs as rows
        (PyNative keeps code per shape; afterwards no new shape appears, so memory stays flat; a step with
        echo chunks compiles its all-rows-out graph on first use). Writes go to the scratch block.
        Fused: one graph per row bucket (up to max_num_batched_tokens with prefill_mode "rows", else up to
        max_num_seqs); composed: per (batch, cache length)."""
        if self.forward.fused:
            widest = self.row_sizes[-1] if self.rows_prefill else bucket(self.batch_sizes[-1], self.row_sizes)
            for rows in [r for r in self.row_sizes if r <= widest]:
                self.run_rows([([0], [], [0], 0)], min_rows=rows)  # one scratch token, the rest padding rows
        else:
            for bb in self.batch_sizes:
                for cb in self.context_sizes:
                    self.decode([0] * bb, [[0] * (cb - 1)] * bb, [0] * bb)
        if not self.rows_prefill:  # (with rows, only prompts with images prefill in PyNative)
            for rows, width in self.prefill_shapes.all():
                self.prefill_rows([([0] * width, [], [0] * width)] * rows, False)

    def decode(self, tokens: list[int], context_slots: list[list[int]], write_slots: list[int], deltas=None) -> np.ndarray:
        """One new token per row after its cached context; fp32 logits (rows, V).
        `deltas`: per row, rotary position - cache slot (M-RoPE after an image prompt; None: all 0)."""
        rows = len(tokens)
        if self.forward.fused:
            deltas = [0] * rows if deltas is None else deltas
            items = [([t], ctx, [w], d) for t, ctx, w, d in zip(tokens, context_slots, write_slots, deltas)]
            return np.concatenate(self.run_rows(items))
        bb, cb = self.decode_shape(rows, max(len(c) for c in context_slots))
        ids = np.zeros((bb, 1), np.int32)
        gather = np.zeros((bb, cb), np.int32)  # every row's context slots, right-aligned
        pad = np.full(bb, cb - 1, np.int32)
        write = np.zeros((bb, 1), np.int32)
        delta = np.zeros((bb, 1), np.int32)
        if deltas is not None:
            delta[:rows, 0] = deltas
        for r in range(rows):
            ctx = context_slots[r]
            ids[r, 0] = tokens[r]
            gather[r, cb - 1 - len(ctx):cb - 1] = ctx
            pad[r] = cb - 1 - len(ctx)
            write[r, 0] = write_slots[r]
        self.compiled_shapes.add((bb, cb))
        logits = self._decode(ms.Tensor(ids), ms.Tensor(gather), ms.Tensor(pad), ms.Tensor(write),
                              ms.Tensor(cb - 1, ms.int32), ms.Tensor(np.ones(bb, np.int32)), ms.Tensor(delta),
                              ms.Tensor(np.arange(bb, dtype=np.int32)))
        return logits.asnumpy()[:rows, -1, :]

    def run_rows(self, items: list, min_rows: int = 1, every=()) -> list:
        """Fused backend: one compiled step over every token of `items` [(tokens, context_slots,
        write_slots, delta)], one row per token: a decoding sequence's next token, or the tokens of a
        prefill chunk (new prompt, continued chunk, after a prefix-cache hit). Token i of an item sees its
        item's context and tokens 0..i (the step writes each layer's keys/values to the pools before that
        layer's attention). -> per item fp32 logits (1, V) of its last token, or (k, V) of all its k tokens
        for the items whose indices are in `every` (prompt logprobs).

        Rows are padded to a bucket of row_sizes (padding rows write the scratch block and see nothing).
        Outputs are padded to min(rows, out_rows) (one per running sequence at most), or to all rows
        when `every` asks for more (a second graph for that row bucket, compiled on first use);
        `min_rows` pads to a wider bucket (warm-up)."""
        n = sum(len(tokens) for tokens, _, _, _ in items)
        rb = bucket(max(n, min_rows), self.row_sizes)
        wanted = len(items) + sum(len(items[i][0]) - 1 for i in every)
        ob = min(rb, self.out_rows) if wanted <= min(rb, self.out_rows) else rb
        if len(items) > ob:
            raise ValueError(f"{len(items)} sequences in one step: at most {ob} outputs")
        bs = self.block_size
        start = self.max_len  # a row's position = start - pad
        ids = np.zeros((rb, 1), np.int32)
        table = np.zeros((rb, self.table_width), np.int32)
        lens = np.ones(rb, np.int32)
        pad = np.full(rb, start, np.int32)
        write = np.zeros((rb, 1), np.int32)
        delta = np.zeros((rb, 1), np.int32)
        out = np.zeros(ob, np.int32)
        spans = []  # each item's outputs: out[first:last]
        r = o = 0
        for i, (tokens, ctx, writes, d) in enumerate(items):
            k = len(tokens)
            c = len(ctx)
            blocks = np.asarray((list(ctx) + list(writes))[::bs], np.int32) // bs
            table[r:r + k, :len(blocks)] = blocks
            ids[r:r + k, 0] = tokens
            lens[r:r + k] = np.arange(c + 1, c + k + 1)
            pad[r:r + k] = start - np.arange(c, c + k)
            write[r:r + k, 0] = writes
            delta[r:r + k, 0] = d
            first = r if i in every else r + k - 1
            out[o:o + r + k - first] = np.arange(first, r + k)
            spans.append((o, o + r + k - first))
            o += r + k - first
            r += k
        self.compiled_shapes.add((rb, ob))
        logits = self._decode(ms.Tensor(ids), ms.Tensor(table), ms.Tensor(pad), ms.Tensor(write),
                              ms.Tensor(start, ms.int32), ms.Tensor(lens), ms.Tensor(delta), ms.Tensor(out))
        logits = logits.asnumpy()[:, -1, :]
        return [logits[a:b] for a, b in spans]
