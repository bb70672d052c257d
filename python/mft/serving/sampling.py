"""Per-request sampling options and the per-sequence logits processor (numpy).

Order: `allowed_token_ids` (vLLM's: every other id masked), `logit_bias`
added to the raw logits (OpenAI's per-token bias, as vLLM applies it before
the penalties), penalties (repetition over
prompt + output as Hugging Face applies it; presence/frequency over the
output as OpenAI defines them), then temperature, top-k (ties kept), top-p (both from
mft.inference.sampling.warp), then min-p. temperature 0 is greedy.
Reported logprobs are those of the model's raw distribution (log-softmax of
the unprocessed logits), which is what log-likelihood scoring needs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from mft.errors import MftError
from mft.inference.sampling import SamplingParams, warp

MAX_LOGPROBS = 20
SEED_MODULUS = 2**64  # a negative or huge seed (OpenAI allows any int64) names the same generator as its value mod 2^64


class ParamError(MftError):
    """An invalid request parameter; `param` names the field."""

    def __init__(self, param: str, message: str, code: str | None = None):
        super().__init__(message)
        self.param = param
        self.code = code  # OpenAI's error code, e.g. "context_length_exceeded"


def _check(cond: bool, param: str, message: str) -> None:
    if not cond:
        raise ParamError(param, f"{param}: {message}")


def _number(value, param: str) -> float:
    _check(isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value), param, f"must be a finite number, got {value!r}")
    return float(value)


def _integer(value, param: str) -> int:
    _check(isinstance(value, int) and not isinstance(value, bool), param, f"must be an integer, got {value!r}")
    return int(value)


@dataclass
class SamplingOptions:
    max_tokens: int = 16
    temperature: float = 1.0
    top_k: int = 0  # 0 or -1 = off
    top_p: float = 1.0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None
    stop: list = field(default_factory=list)
    stop_token_ids: list = field(default_factory=list)
    ignore_eos: bool = False
    n: int = 1
    logprobs: int | None = None  # top alternatives per generated token (0 = only the chosen token's)
    prompt_logprobs: int | None = None  # same for every prompt token (echo)
    logit_bias: dict = field(default_factory=dict)  # token id -> bias in [-100, 100] added to its logit before sampling
    allowed_token_ids: list | None = None  # vLLM's extension: only these ids can be sampled

    def __post_init__(self):
        self.max_tokens = _integer(self.max_tokens, "max_tokens")
        _check(self.max_tokens >= 0, "max_tokens", f"must be >= 0, got {self.max_tokens}")
        self.temperature = _number(self.temperature, "temperature")
        _check(0.0 <= self.temperature <= 100.0, "temperature", f"must be in [0, 100], got {self.temperature}")
        self.top_k = _integer(self.top_k, "top_k")
        _check(self.top_k >= -1, "top_k", f"must be -1, 0 (off) or positive, got {self.top_k}")
        self.top_k = max(self.top_k, 0)
        self.top_p = _number(self.top_p, "top_p")
        _check(0.0 < self.top_p <= 1.0, "top_p", f"must be in (0, 1], got {self.top_p}")
        self.min_p = _number(self.min_p, "min_p")
        _check(0.0 <= self.min_p <= 1.0, "min_p", f"must be in [0, 1], got {self.min_p}")
        self.repetition_penalty = _number(self.repetition_penalty, "repetition_penalty")
        _check(self.repetition_penalty > 0, "repetition_penalty", f"must be > 0, got {self.repetition_penalty}")
        for name in ("presence_penalty", "frequency_penalty"):
            value = _number(getattr(self, name), name)
            _check(-2.0 <= value <= 2.0, name, f"must be in [-2, 2], got {value}")
            setattr(self, name, value)
        if self.seed is not None:
            self.seed = _integer(self.seed, "seed")
        self.logit_bias = _logit_bias(self.logit_bias)
        if self.allowed_token_ids is not None:
            _check(isinstance(self.allowed_token_ids, list) and self.allowed_token_ids
                   and all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in self.allowed_token_ids),
                   "allowed_token_ids", "must be a non-empty list of token ids")
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        _check(isinstance(self.stop, list) and len(self.stop) <= 16 and all(isinstance(s, str) and s for s in self.stop),
               "stop", "must be a non-empty string or a list of at most 16 non-empty strings")
        _check(isinstance(self.stop_token_ids, list) and all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in self.stop_token_ids),
               "stop_token_ids", "must be a list of non-negative integers")
        self.n = _integer(self.n, "n")
        _check(1 <= self.n <= 16, "n", f"must be in [1, 16], got {self.n}")
        for name in ("logprobs", "prompt_logprobs"):
            value = getattr(self, name)
            if value is not None:
                value = _integer(value, name)
                _check(0 <= value <= MAX_LOGPROBS, name, f"must be in [0, {MAX_LOGPROBS}], got {value}")
                setattr(self, name, value)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


def _logit_bias(value) -> dict[int, float]:
    """OpenAI's `logit_bias`: {token id (a JSON key, so a string of digits, or an int): bias in [-100, 100]}."""
    if value is None:
        return {}
    _check(isinstance(value, dict), "logit_bias", f"must be an object mapping token ids to biases, got {value!r}")
    out = {}
    for key, bias in value.items():
        token = key
        if isinstance(key, str):
            _check(key.strip().isdigit(), "logit_bias", f"keys must be token ids, got {key!r}")
            token = int(key)
        _check(isinstance(token, int) and not isinstance(token, bool) and token >= 0, "logit_bias", f"keys must be token ids, got {key!r}")
        bias = _number(bias, "logit_bias")
        _check(-100.0 <= bias <= 100.0, "logit_bias", f"biases must be in [-100, 100], got {bias} for token {token}")
        out[token] = bias
    return out


def log_softmax(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return (x - np.log(np.exp(x).sum(axis=-1, keepdims=True))).astype(np.float32)


def top_entries(logprobs: np.ndarray, k: int) -> list[tuple[int, float]]:
    """The k most likely (id, logprob), best first (ties by lower id)."""
    if k <= 0:
        return []
    order = np.argsort(-logprobs, kind="stable")[:k]
    return [(int(i), float(logprobs[i])) for i in order]


class SequenceSampler:
    """Chooses one sequence's next tokens; keeps its seeded generator and output counts."""

    def __init__(self, options: SamplingOptions, prompt_ids: list[int], vocab_size: int, index: int = 0):
        self.options = options
        self.rng = np.random.default_rng(None if options.seed is None else [options.seed % SEED_MODULUS, index])
        self.vocab = vocab_size
        self.bias = None
        if options.logit_bias:
            bad = [t for t in options.logit_bias if t >= vocab_size]
            _check(not bad, "logit_bias", f"token id {bad[0] if bad else 0} is outside the vocabulary [0, {vocab_size})")
            self.bias = np.zeros(vocab_size, np.float32)
            for token, bias in options.logit_bias.items():
                self.bias[token] = bias
        self.allowed = None
        if options.allowed_token_ids is not None:
            bad = [t for t in options.allowed_token_ids if t >= vocab_size]
            _check(not bad, "allowed_token_ids", f"token id {bad[0] if bad else 0} is outside the vocabulary [0, {vocab_size})")
            self.allowed = np.zeros(vocab_size, bool)
            self.allowed[options.allowed_token_ids] = True
        self.seen = np.zeros(vocab_size, bool)  # prompt + output (repetition penalty)
        ids = np.asarray([t for t in prompt_ids if 0 <= t < vocab_size], np.int64)
        self.seen[ids] = True
        self.counts = np.zeros(vocab_size, np.int64)  # output only (presence / frequency)
        o = options
        self._warp = SamplingParams(do_sample=True, temperature=o.temperature or 1.0, top_k=o.top_k, top_p=o.top_p)

    def accept(self, token: int) -> None:
        if 0 <= token < self.vocab:
            self.seen[token] = True
            self.counts[token] += 1

    def choose(self, logits: np.ndarray) -> int:
        o = self.options
        x = logits.astype(np.float32)
        if self.allowed is not None:  # first, as vLLM's processors run: nothing after it can bring a masked id back
            n = min(len(self.allowed), x.shape[-1])
            x = np.where(np.pad(self.allowed[:n], (0, x.shape[-1] - n)), x, -np.inf).astype(np.float32)
        if self.bias is not None:
            x = x.copy()
            n = min(len(self.bias), x.shape[-1])
            x[:n] += self.bias[:n]
        if o.repetition_penalty != 1.0:
            x = x.copy()
            hit = self.seen
            x[hit] = np.where(x[hit] > 0, x[hit] / o.repetition_penalty, x[hit] * o.repetition_penalty)
        if o.presence_penalty or o.frequency_penalty:
            x = x - np.float32(o.presence_penalty) * (self.counts > 0) - np.float32(o.frequency_penalty) * self.counts.astype(np.float32)
        if o.greedy:
            return int(np.argmax(x))
        x = warp(x[None, :], self._warp)[0]
        probs = np.exp(log_softmax(x).astype(np.float64))
        if o.min_p > 0:
            probs = np.where(probs < o.min_p * probs.max(), 0.0, probs)
        cdf = np.cumsum(probs)
        u = self.rng.random() * cdf[-1]
        return int(min(np.searchsorted(cdf, u, side="right"), len(cdf) - 1))
