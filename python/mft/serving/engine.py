"""LLMEngine: requests in, one scheduled step at a time, updates out (no HTTP, no threads).

`add_request` may be called from any thread (requests land in an inbox the
next `step` drains); `step` runs on one thread: it schedules (see
scheduler.py), runs one compiled decode over every decoding sequence,
PyNative prefills over the text chunks (new prompts and continued chunks
together, right-padded, grouped by length into the runner's bounded
shapes; a prompt with images alone), samples, applies stop rules and
frees the blocks of finished sequences at once. `generate` runs a batch of
prompts to completion (offline use and tests).
"""

from __future__ import annotations

import threading

import numpy as np

from mft.errors import MftError
from mft.serving.block_manager import BlockManager
from mft.serving.paged_runner import PagedRunner
from mft.serving.sampling import ParamError, SamplingOptions, log_softmax, top_entries
from mft.serving.scheduler import Scheduler
from mft.serving.sequence import FINISHED, RUNNING, Request, TokenLogprob, Update

REPLACEMENT = "\ufffd"


def _as_list(value) -> list[int]:
    if value is None:
        return []
    return [value] if isinstance(value, int) else list(value)


class LLMEngine:
    def __init__(self, model, tokenizer=None, *, block_size: int = 16, num_blocks: int | None = None,
                 max_num_seqs: int = 16, max_model_len: int | None = None, max_num_batched_tokens: int = 512,
                 decode_mode: str = "graph", eos_token_ids=None, adapters=None, enable_prefix_caching: bool = True,
                 attention_backend: str = "auto", prefill_mode: str = "rows"):
        """adapters: [(name, PEFT folder)] served per request over the base model (`adapter=` of add_request)."""
        cfg = model.config
        self.model = model
        self.tokenizer = tokenizer
        self.vocab_size = cfg.vocab_size
        text_cfg = getattr(cfg, "text_config", cfg)  # a vision-language model: its language model's limits
        self.max_model_len = int(max_model_len or text_cfg.max_position_embeddings)
        if self.max_model_len < 2:
            raise MftError(f"max_model_len={self.max_model_len} must be at least 2")
        blocks_per_seq = -(-self.max_model_len // block_size)
        if num_blocks is None:
            num_blocks = max_num_seqs * blocks_per_seq + 1
        if num_blocks - 1 < blocks_per_seq:
            raise MftError(f"num_blocks={num_blocks} cannot hold one sequence of max_model_len={self.max_model_len} "
                           f"({blocks_per_seq} blocks of {block_size} plus the scratch block)")
        if max_num_batched_tokens < 1:
            raise MftError(f"max_num_batched_tokens={max_num_batched_tokens} must be >= 1")
        self.lora = None
        if adapters:
            from mft.serving.adapters import MultiLora

            # one adapter index per row of the widest step (one row per token with prefill_mode "rows")
            self.lora = MultiLora(model, adapters, max(max_num_seqs, max_num_batched_tokens))
        self.blocks = BlockManager(num_blocks, block_size, prefix_caching=enable_prefix_caching)
        self.scheduler = Scheduler(self.blocks, max_num_seqs, max_num_batched_tokens)
        self.runner = PagedRunner(model, num_blocks * block_size, block_size, max_num_seqs, self.max_model_len, decode_mode,
                                  attention_backend, max_num_batched_tokens, prefill_mode)
        eos = _as_list(eos_token_ids if eos_token_ids is not None else text_cfg.eos_token_id)
        if tokenizer is not None and tokenizer.eos_id is not None and tokenizer.eos_id not in eos:
            eos.append(tokenizer.eos_id)
        self.eos_ids = eos
        self._inbox: list = []
        self._lock = threading.Lock()
        self.requests: dict[str, Request] = {}
        self.steps = 0
        self.num_aborted = 0
        self.batched_prefills = 0  # prefill calls that took several sequences' chunks at once

    # ---- requests ---------------------------------------------------------
    def check(self, prompt_ids, options: SamplingOptions) -> None:
        """Raises ParamError for a request that can never run."""
        if not prompt_ids:
            raise ParamError("prompt", "prompt: must contain at least one token")
        bad = [t for t in prompt_ids if not (isinstance(t, (int, np.integer)) and 0 <= t < self.vocab_size)]
        if bad:
            raise ParamError("prompt", f"prompt: token id {bad[0]!r} is outside the vocabulary [0, {self.vocab_size})")
        if len(prompt_ids) + options.max_tokens > self.max_model_len:
            raise ParamError("max_tokens" if len(prompt_ids) < self.max_model_len else "prompt",
                             f"this model's maximum context length is {self.max_model_len} tokens; the prompt has "
                             f"{len(prompt_ids)} and max_tokens is {options.max_tokens}")

    def add_request(self, prompt_ids, options: SamplingOptions | None = None, request_id: str | None = None, on_update=None,
                    adapter: int = 0, images=None) -> Request:
        """`images`: serving/images.py ImageInputs for a prompt whose image tokens are expanded."""
        options = options or SamplingOptions()
        self.check(prompt_ids, options)
        if adapter and (self.lora is None or not 0 < adapter <= len(self.lora.names)):
            raise MftError(f"adapter slot {adapter} does not exist ({0 if self.lora is None else len(self.lora.names)} adapters loaded)")
        request = Request(list(prompt_ids), options, self.vocab_size, request_id, on_update, adapter, images)
        with self._lock:
            self._inbox.append(("add", request))
        return request

    def abort(self, request_id: str) -> None:
        with self._lock:
            self._inbox.append(("abort", request_id))

    def has_work(self) -> bool:
        with self._lock:
            if self._inbox:
                return True
        return bool(self.scheduler.running or self.scheduler.waiting)

    def _drain_inbox(self) -> None:
        with self._lock:
            items, self._inbox = self._inbox, []
        for kind, item in items:
            if kind == "add":
                self.requests[item.request_id] = item
                if item.options.max_tokens == 0 and item.options.prompt_logprobs is None:
                    for seq in item.seqs:
                        self._finish(seq, "length")
                    continue
                for seq in item.seqs:
                    self.scheduler.add(seq)
            else:
                request = self.requests.get(item)
                if request is not None:
                    self.num_aborted += not request.finished
                    for seq in request.seqs:
                        if not seq.finished:
                            self.scheduler.drop(seq)
                            seq.finish_reason = "abort"
                    self.requests.pop(item, None)

    # ---- one step -------------------------------------------------------
    def step(self) -> int:
        """Runs one scheduled step; returns how many sequences it advanced."""
        self._drain_inbox()
        plan = self.scheduler.schedule()
        self.steps += 1
        advanced = 0
        text = [(seq, chunk) for seq, chunk in plan.prefill if seq.request.images is None]
        # Fused backend (rows_prefill): text chunks run as rows of the decode step's compiled graph
        # (chunks that want every prompt position's logits, for echo, get all their rows' logits).
        joined = text if self.runner.rows_prefill else []
        if plan.decode or joined:
            bm = self.blocks
            items = [([s.tokens[-1]], bm.slots(s.seq_id, 0, s.num_cached), bm.slots(s.seq_id, s.num_cached, s.num_cached + 1),
                      s.request.rope_delta) for s in plan.decode]  # M-RoPE: position = slot + delta after an image prompt
            items += [(seq.tokens[seq.num_cached:seq.num_cached + chunk], bm.slots(seq.seq_id, 0, seq.num_cached),
                       bm.slots(seq.seq_id, seq.num_cached, seq.num_cached + chunk), 0) for seq, chunk in joined]
            every = [len(plan.decode) + i for i, (seq, _) in enumerate(joined) if self._wants_prompt_logprobs(seq)]
            if self.lora is not None:  # each row's adapter (one row per token) and each output row's
                decoding = [s.request.adapter for s in plan.decode]
                self.lora.set_rows(decoding + [seq.request.adapter for seq, chunk in joined for _ in range(chunk)],
                                   decoding + [seq.request.adapter for i, (seq, chunk) in enumerate(joined, len(plan.decode))
                                               for _ in range(chunk if i in every else 1)])
            if joined:
                logits = self.runner.run_rows(items, every=every)
            else:
                deltas = [item[3] for item in items]
                logits = self.runner.decode([t[0] for t, _, _, _ in items], [c for _, c, _, _ in items],
                                            [w[0] for _, _, w, _ in items], deltas if any(deltas) else None)
            for row, seq in enumerate(plan.decode):
                if self._wants_prompt_logprobs(seq):  # a prompt's last token left alone by chunking: still prefill
                    self._after_prefill(seq, 1, logits[row].reshape(1, -1))
                    advanced += 1
                    continue
                seq.num_cached += 1
                if seq.num_cached % bm.block_size == 0:
                    bm.register(seq.seq_id, seq.tokens, seq.num_cached, seq.request.cache_key)
                self._sample(seq, logits[row].reshape(-1))
                advanced += 1
            for (seq, chunk), chunk_logits in zip(joined, logits[len(plan.decode):]):
                self._after_prefill(seq, chunk, chunk_logits)
                advanced += 1
            self.batched_prefills += len(joined) > 1
        for seq, chunk in plan.prefill:
            if seq.request.images is not None:  # a prompt with images: its own call, from its embeddings
                self._prefill(seq, chunk)
                advanced += 1
        in_rows = {id(seq) for seq, _ in joined}
        text = [(seq, chunk) for seq, chunk in text if id(seq) not in in_rows]
        for group in self._prefill_groups(text):
            self._prefill_batch(group)
            advanced += len(group)
        for request in [r for r in self.requests.values() if r.finished]:
            self.requests.pop(request.request_id, None)
        return advanced

    def _set_adapters(self, seqs) -> None:
        if self.lora is not None:
            self.lora.set_rows([s.request.adapter for s in seqs])

    def _prefill_groups(self, items: list) -> list:
        """Text prefill chunks (new prompts and continued ones alike) in groups of one call each: by length,
        within the runner's bounded shapes (rows x width), padding at most doubling the tokens computed
        (or within one minimal-width row per sequence); chunks that want every position's logits (prompt
        logprobs) in groups of their own."""
        shapes = self.runner.prefill_shapes
        groups = []
        for wants_all in (False, True):
            chosen = sorted((item for item in items if self._wants_prompt_logprobs(item[0]) == wants_all), key=lambda item: item[1])
            group, real = [], 0
            for seq, chunk in chosen:
                if group:
                    rows, width = len(group) + 1, shapes.width(chunk)
                    padded = shapes.batch(rows) * width
                    if not shapes.fits(rows, chunk) or padded > max(2 * (real + chunk), rows * shapes.widths[0]):
                        groups.append(group)
                        group, real = [], 0
                group.append((seq, chunk))
                real += chunk
            if group:
                groups.append(group)
        return groups

    def _wants_prompt_logprobs(self, seq) -> bool:
        request = seq.request
        return request.options.prompt_logprobs is not None and seq.index == 0 and request.prompt_logprobs is None

    def _prefill_batch(self, group: list) -> None:
        """One runner call for a group of text chunks (each after its own cached context)."""
        self.batched_prefills += len(group) > 1
        all_logits = self._wants_prompt_logprobs(group[0][0])
        bm = self.blocks
        rows = [(seq.tokens[seq.num_cached:seq.num_cached + chunk], bm.slots(seq.seq_id, 0, seq.num_cached),
                 bm.slots(seq.seq_id, seq.num_cached, seq.num_cached + chunk)) for seq, chunk in group]
        self._set_adapters([seq for seq, _ in group])
        for (seq, chunk), logits in zip(group, self.runner.prefill_rows(rows, all_logits)):
            self._after_prefill(seq, chunk, logits)

    def _prefill(self, seq, chunk: int) -> None:
        start = seq.num_cached
        tokens = seq.tokens[start:start + chunk]
        self._set_adapters([seq])
        embeds, positions = self._chunk_inputs(seq, start, chunk)
        logits = self.runner.prefill(tokens, self.blocks.slots(seq.seq_id, 0, start),
                                     self.blocks.slots(seq.seq_id, start, start + chunk), all_logits=self._wants_prompt_logprobs(seq),
                                     embeds=embeds, rope_positions=positions)
        self._after_prefill(seq, chunk, logits)

    def _chunk_inputs(self, seq, start: int, chunk: int):
        """A prompt with images: (the chunk's embeddings with image features in place, its M-RoPE positions
        (3, 1, chunk) or None); (None, None) for text, which runs from the ids. The model's
        `serving_prompt` embeds the prompt once per request; tokens after it (a preempted sequence's
        output) are embedded by id, at slot + delta."""
        request = seq.request
        prompt_len = len(request.prompt_ids)
        if request.images is None or start >= prompt_len:
            return None, None
        from mindspore import mint

        if request.prompt_embeds is None:
            request.prompt_embeds, request.prompt_positions, request.rope_delta = self.model.serving_prompt(
                np.asarray([request.prompt_ids], np.int64), **request.images.kwargs)
        end = start + chunk
        embeds = request.prompt_embeds[:, start:min(end, prompt_len)]
        positions = None if request.prompt_positions is None else request.prompt_positions[:, :, start:min(end, prompt_len)]
        if end > prompt_len:
            import mindspore as ms

            rest = ms.Tensor(np.asarray([seq.tokens[prompt_len:end]], np.int32))
            embeds = mint.cat([embeds, self.model.embed_text(rest).astype(embeds.dtype)], dim=1)
            if positions is not None:
                after = np.arange(prompt_len, end, dtype=positions.dtype) + request.rope_delta
                positions = np.concatenate([positions, np.broadcast_to(after, (3, 1, end - prompt_len))], axis=2)
        return embeds, positions

    def _after_prefill(self, seq, chunk: int, logits: np.ndarray) -> None:
        want_prompt = self._wants_prompt_logprobs(seq)
        seq.num_cached += chunk
        self.blocks.register(seq.seq_id, seq.tokens, seq.num_cached, seq.request.cache_key)
        if want_prompt:
            seq.prompt_logits.append(logits)
            if seq.num_cached >= len(seq.request.prompt_ids):
                self._prompt_logprobs(seq)
        if seq.remaining == 0:  # the whole stream is cached: sample the next token
            if seq.request.options.max_tokens == 0:
                self._finish(seq, "length")
            else:
                self._sample(seq, logits[-1])

    def _prompt_logprobs(self, seq) -> None:
        request = seq.request
        k = request.options.prompt_logprobs
        logits = np.concatenate(seq.prompt_logits, axis=0)[:len(request.prompt_ids)]
        seq.prompt_logits = []
        lp = log_softmax(logits)
        out = [None]
        for i in range(1, len(request.prompt_ids)):
            token = request.prompt_ids[i]
            out.append(TokenLogprob(token, float(lp[i - 1, token]), top_entries(lp[i - 1], k)))
        request.prompt_logprobs = out

    def _sample(self, seq, logits: np.ndarray) -> None:
        options = seq.request.options
        token = seq.sampler.choose(logits)
        seq.sampler.accept(token)
        entry = None
        if options.logprobs is not None:
            lp = log_softmax(logits)
            entry = TokenLogprob(token, float(lp[token]), top_entries(lp, options.logprobs))
        stop_ids = set(options.stop_token_ids) | (set() if options.ignore_eos else set(self.eos_ids))
        if token in stop_ids:
            seq.extra.append(token)
            self._finish(seq, "stop", [token])
            return
        seq.output.append(token)
        if entry is not None:
            seq.pending_logprobs.append(entry)
        reason = None
        if self.tokenizer is not None:
            previous = len(seq.text)
            seq.text = self.tokenizer.decode(seq.output)
            if options.stop:
                longest = max(len(s) for s in options.stop)
                window_start = max(0, min(previous, len(seq.text)) - longest + 1)
                cut = min((i for i in (seq.text.find(s, window_start) for s in options.stop) if i >= 0), default=-1)
                if cut >= 0:
                    seq.text = seq.text[:cut]
                    reason = "stop"
        if reason is None and (len(seq.output) >= options.max_tokens or len(seq.tokens) >= self.max_model_len):
            reason = "length"
        if reason is not None:
            self._finish(seq, reason, [token])
        else:
            self._emit(seq, [token], None)

    def _finish(self, seq, reason: str, tokens=()) -> None:
        self.scheduler.drop(seq)
        seq.status = FINISHED
        seq.finish_reason = reason
        self._emit(seq, list(tokens), reason)

    def _emit(self, seq, tokens: list, reason: str | None) -> None:
        text = seq.text
        end = len(text)
        if reason is None:
            stops = seq.request.options.stop
            if stops:  # hold back what could still become a stop string
                end = max(seq.released, end - (max(len(s) for s in stops) - 1))
            while end > seq.released and text[end - 1] == REPLACEMENT:
                end -= 1
        new_text = text[seq.released:end]
        seq.released = max(seq.released, end)
        logprobs, seq.pending_logprobs = seq.pending_logprobs, []
        update = Update(seq.index, [t for t in tokens if t not in seq.extra], new_text, logprobs, reason)
        if seq.request.on_update is not None:
            seq.request.on_update(seq.request, update)

    # ---- offline --------------------------------------------------------------
    def generate(self, prompts, options: SamplingOptions | None = None) -> list[Request]:
        """Runs every prompt (ids lists) to completion; returns the finished requests in order."""
        requests = [self.add_request(p, options) for p in prompts]
        while self.has_work():
            self.step()
        return requests

    def stats(self) -> dict:
        return {
            "running": len(self.scheduler.running), "waiting": len(self.scheduler.waiting),
            "blocks_used": self.blocks.num_used, "blocks_total": self.blocks.num_blocks - 1,
            "preemptions": self.scheduler.num_preemptions, "aborted": self.num_aborted, "steps": self.steps,
            "decode_shapes": sorted(self.runner.compiled_shapes),
            "prefix_caching": self.blocks.prefix_caching, "prefix_cache_hit_rate": round(self.blocks.hit_rate(), 4),
            "prefix_cache_hit_tokens": self.blocks.prefix_hits, "prefix_cache_query_tokens": self.blocks.prefix_queries,
            "blocks_shared": self.blocks.num_shared, "blocks_cached": self.blocks.num_cached,
            # int8 with a kv8 checkpoint (mft quantize --scheme kv8): a quarter of fp32's bytes per token
            "kv_cache_dtype": str(self.runner.forward.k_pool.dtype).lower(),
            "kv_cache_bytes_per_token": (self.runner.forward.k_pool.nbytes + self.runner.forward.v_pool.nbytes)
            // self.runner.forward.num_slots,
        }
