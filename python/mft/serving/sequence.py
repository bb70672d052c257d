"""A request (one prompt, `n` sequences) and each sequence's tokens, text and finish state."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from mft.serving.sampling import SamplingOptions, SequenceSampler

_ids = itertools.count(1)

WAITING, RUNNING, FINISHED = "waiting", "running", "finished"


@dataclass
class TokenLogprob:
    token: int
    logprob: float
    top: list  # [(id, logprob)] best first


@dataclass
class Update:
    """What one engine step produced for one sequence."""

    index: int  # the sequence's index within its request (0..n-1)
    tokens: list  # ids sampled this step (shown ones; a stop token is not shown)
    text: str  # newly released text (held back while it may still be a stop string's start)
    logprobs: list  # [TokenLogprob] for the released tokens
    finish_reason: str | None = None


class Sequence:
    def __init__(self, request: "Request", index: int, vocab_size: int):
        self.seq_id = next(_ids)
        self.request = request
        self.index = index
        self.output: list[int] = []  # sampled ids shown to the user
        self.num_cached = 0  # positions whose keys/values are in the cache
        self.extra: list[int] = []  # a stop/eos id sampled last: in the cache stream, not shown
        self.status = WAITING
        self.finish_reason: str | None = None
        self.sampler = SequenceSampler(request.options, request.prompt_ids, vocab_size, index)
        self.text = ""
        self.released = 0  # characters of `text` already handed out
        self.pending_logprobs: list[TokenLogprob] = []
        self.prompt_logits: list = []  # prefill chunk logits while prompt logprobs are wanted

    @property
    def tokens(self) -> list[int]:
        return self.request.prompt_ids + self.output

    @property
    def remaining(self) -> int:
        """Tokens not yet in the cache (1 during decode)."""
        return len(self.tokens) - self.num_cached

    @property
    def finished(self) -> bool:
        return self.status == FINISHED


class Request:
    def __init__(self, prompt_ids: list[int], options: SamplingOptions, vocab_size: int, request_id: str | None = None, on_update=None,
                 adapter: int = 0, images=None):
        self.request_id = request_id or f"req-{next(_ids)}"
        self.adapter = adapter  # LoRA adapter slot (0: the base model; serving/adapters.py)
        self.images = images  # serving/images.py ImageInputs of a vision-language prompt, or None
        self.prompt_embeds = None  # the prompt's embeddings with image features, made at its first prefill
        self.prompt_positions = None  # (3, 1, S) M-RoPE positions of such a prompt (Qwen2.5-VL), else None
        self.rope_delta = 0  # rotary position - cache slot for every token after the prompt (M-RoPE)
        self.prompt_ids = [int(t) for t in prompt_ids]
        self.options = options
        self.on_update = on_update  # called from the engine thread with (request, Update)
        self.seqs = [Sequence(self, i, vocab_size) for i in range(options.n)]
        self.prompt_logprobs: list | None = None  # [None, TokenLogprob, ...] once prefilled, when asked
        self.arrival = next(_ids)

    @property
    def finished(self) -> bool:
        return all(s.finished for s in self.seqs)

    @property
    def cache_key(self):
        """What besides the token ids names this request's cached blocks: the adapter slot, and the
        images' digest (image tokens share one id, so equal ids do not mean equal keys/values)."""
        return self.adapter if self.images is None else (self.adapter, self.images.digest)
