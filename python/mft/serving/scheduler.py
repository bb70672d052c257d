"""Continuous batching: which sequences run in the next step and on how many tokens.

Every step first gives each running sequence in decode one token (new blocks
as it crosses a block boundary). When the pool runs out, the latest-arrived
running sequence is preempted: its blocks go back to the pool and it
returns to the head of the waiting queue, to be recomputed (prefilled again
over prompt + output) when blocks free up. The rest of the
`max_num_batched_tokens` budget goes to prefill: first sequences whose
prompt is partly cached (chunked prefill), then waiting ones, in arrival
order, while there are free blocks and fewer than `max_num_seqs` run. With
prefix caching a waiting sequence first takes the cached blocks of its
longest matching prefix (block_manager.py) and is prefilled from there.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from mft.serving.block_manager import BlockManager
from mft.serving.sequence import FINISHED, RUNNING, WAITING, Sequence


@dataclass
class Plan:
    decode: list = field(default_factory=list)  # sequences getting one token
    prefill: list = field(default_factory=list)  # (sequence, chunk length)
    preempted: list = field(default_factory=list)


class Scheduler:
    def __init__(self, blocks: BlockManager, max_num_seqs: int, max_num_batched_tokens: int):
        self.blocks = blocks
        self.max_num_seqs = max_num_seqs
        self.max_num_batched_tokens = max_num_batched_tokens
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.num_preemptions = 0

    def add(self, seq: Sequence) -> None:
        self.waiting.append(seq)

    def drop(self, seq: Sequence) -> None:
        """Remove a finished or aborted sequence and free its blocks."""
        if seq in self.running:
            self.running.remove(seq)
        elif seq in self.waiting:
            self.waiting.remove(seq)
        self.blocks.free(seq.seq_id)
        seq.status = FINISHED

    def _preempt(self, seq: Sequence, plan: Plan) -> None:
        self.running.remove(seq)
        self.blocks.free(seq.seq_id)
        seq.num_cached = 0
        seq.prompt_logits = []
        seq.status = WAITING
        self.waiting.appendleft(seq)
        plan.preempted.append(seq)
        self.num_preemptions += 1

    def schedule(self) -> Plan:
        plan = Plan()
        budget = self.max_num_batched_tokens
        # Decode: the earliest arrivals first; preempt from the latest when blocks run out.
        self.running.sort(key=lambda s: (s.request.arrival, s.index))
        for seq in list(self.running):
            if seq.status != RUNNING or seq.remaining != 1 or budget <= 0:
                continue
            while not self.blocks.can_hold(seq.seq_id, seq.num_cached + 1):
                victim = self.running[-1]
                self._preempt(victim, plan)
                if victim is seq:
                    break
            if seq.status != RUNNING:
                continue
            self.blocks.reserve(seq.seq_id, seq.num_cached + 1)
            plan.decode.append(seq)
            budget -= 1
        # Prefill: partly cached prompts, then new arrivals.
        for seq in list(self.running):
            if budget <= 0:
                break
            if seq.remaining > 1 and seq not in plan.decode:
                chunk = min(seq.remaining, budget)
                if self.blocks.can_hold(seq.seq_id, seq.num_cached + chunk):
                    self.blocks.reserve(seq.seq_id, seq.num_cached + chunk)
                    plan.prefill.append((seq, chunk))
                    budget -= chunk
        while self.waiting and budget > 0 and len(self.running) < self.max_num_seqs:
            seq = self.waiting[0]
            hit = 0
            if self.blocks.prefix_caching and seq.request.options.prompt_logprobs is None:  # echo needs every prompt logit
                hit = seq.num_cached = self.blocks.match_prefix(seq.seq_id, seq.tokens, seq.request.cache_key)
            chunk = min(seq.remaining, budget)
            if not self.blocks.can_hold(seq.seq_id, seq.num_cached + chunk):
                if hit:  # give the shared blocks back until it can be admitted
                    self.blocks.free(seq.seq_id)
                    seq.num_cached = 0
                break
            self.waiting.popleft()
            if self.blocks.prefix_caching:
                self.blocks.note_lookup(len(seq.tokens), hit)
            self.blocks.reserve(seq.seq_id, seq.num_cached + chunk)
            seq.status = RUNNING
            self.running.append(seq)
            plan.prefill.append((seq, chunk))
            budget -= chunk
        return plan
