"""A multi-turn chat over a causal LM: history -> chat template -> generate, streamed.

Each turn renders the whole conversation (system prompt, earlier turns, the
new user message) with the model's chat template and
`add_generation_prompt=True`, tokenizes it as transformers does for a
rendered chat (`add_special_tokens=False`) and generates the reply. The reply
ends at an end-of-turn token: the tokenizer's eos, the model config's
eos ids, and the template's own end-of-turn tokens when the vocabulary has
them (`<|im_end|>`, `<|eot_id|>`, `<|end|>`, `<end_of_turn>`, `</s>`). The reply text
(decoded without that token) is what goes into the history, so the next
turn's prompt is the template's rendering of the conversation so far.

When the prompt would not leave room for `max_new_tokens` within the model's
`max_position_embeddings`, the oldest turns (never the system prompt) are
dropped and `dropped_turns` counts them.
"""

from __future__ import annotations

import unicodedata
from typing import Callable

import numpy as np

from mft.errors import MftError
from mft.inference.streamer import IncrementalDecoder
from mft.tokenizer.chat_template import render, special_tokens_of

END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "</s>")


def visible(text: str) -> str:
    """Text safe to print on a terminal: control characters other than newline and tab
    (an escape sequence in a model's output would drive the terminal) become U+FFFD."""
    return "".join(c if c in "\n\t" or unicodedata.category(c) != "Cc" else "\ufffd" for c in text)


def stop_ids_of(tokenizer, model_config) -> list[int]:
    ids: list[int] = []
    eos = getattr(model_config, "eos_token_id", None)
    for i in ([eos] if isinstance(eos, int) else list(eos or [])):
        ids.append(int(i))
    if tokenizer.eos_id is not None:
        ids.append(int(tokenizer.eos_id))
    for token in END_OF_TURN_TOKENS:
        i = tokenizer.token_to_id(token)
        if i is not None:
            ids.append(int(i))
    return list(dict.fromkeys(ids))


class ReplyStopped(Exception):
    """The reply was stopped (`stop()` became true between two tokens); nothing was added to the history."""


class ChatSession:
    def __init__(self, model, tokenizer, template: str, system: str | None = None, max_new_tokens: int = 256,
                 temperature: float = 0.0, top_p: float = 1.0, top_k: int = 0, seed: int | None = None):
        if max_new_tokens < 1:
            raise MftError(f"--max-new-tokens={max_new_tokens} must be >= 1")
        self.model = model
        self.tokenizer = tokenizer
        self.template = template
        self.system = system
        self.specials = special_tokens_of(tokenizer)
        self.stop_ids = stop_ids_of(tokenizer, model.config)
        self.stop_strings = end_of_turn_strings(template, self.specials)
        self.max_new_tokens = max_new_tokens
        self.sampling = dict(do_sample=temperature > 0, temperature=temperature if temperature > 0 else 1.0,
                             top_p=top_p, top_k=top_k)
        self.seed = seed
        self.max_length = int(getattr(model.config, "max_position_embeddings", 0) or 0)
        self.turns: list[dict] = []
        self.dropped_turns = 0

    def reset(self) -> None:
        self.turns = []
        self.dropped_turns = 0

    def messages(self, extra: list[dict] = ()) -> list[dict]:
        head = [{"role": "system", "content": self.system}] if self.system else []
        return head + self.turns + list(extra)

    def prompt_ids(self, user: str) -> list[int]:
        """The rendered conversation with the new user message, oldest turns dropped to fit."""
        while True:
            text = render(self.template, self.messages([{"role": "user", "content": user}]), add_generation_prompt=True,
                          special_tokens=self.specials)
            ids = [int(i) for i in self.tokenizer.encode(text, add_special_tokens=False)]
            if not self.max_length or len(ids) + self.max_new_tokens <= self.max_length or not self.turns:
                break
            self.turns = self.turns[2:]  # one user + assistant exchange
            self.dropped_turns += 1
        if self.max_length and len(ids) + self.max_new_tokens > self.max_length:
            raise MftError(f"the message is {len(ids)} tokens with the template; with --max-new-tokens {self.max_new_tokens} "
                           f"that exceeds the model's {self.max_length} positions")
        return ids

    def reply(self, user: str, write: Callable[[str], None] = lambda _: None, stop: Callable[[], bool] | None = None) -> str:
        """Generates the assistant's reply to `user`, streaming visible text to `write`; returns the reply text.
        `stop()` is asked after every token; when true, ReplyStopped is raised and the history is unchanged."""
        ids = self.prompt_ids(user)
        sink = _ReplySink(self.tokenizer, ids, self.stop_ids, write, stop, self.stop_strings)
        try:
            self.model.generate([ids], max_new_tokens=self.max_new_tokens, eos_token_id=self.stop_ids or None, seed=self.seed,
                                streamer=sink, **self.sampling)
        except _EndOfTurn:
            pass
        text = sink.text
        self.turns += [{"role": "user", "content": user}, {"role": "assistant", "content": text}]
        return text


def end_of_turn_strings(template: str, specials: dict) -> list[str]:
    """The end-of-turn markers the template writes after a reply (`<|im_end|>`, ...), as text: a
    tokenizer without them as special tokens spells them in pieces, so the reply must stop on the text."""
    try:
        text = render(template, [{"role": "user", "content": "u"}, {"role": "assistant", "content": "\x00"}],
                      special_tokens=specials)
    except MftError:
        return []
    after = text.split("\x00", 1)[1] if "\x00" in text else ""
    return [t for t in END_OF_TURN_TOKENS if t in after]


class _EndOfTurn(Exception):
    """An end-of-turn marker appeared in the reply text: generation stops there."""


class _ReplySink:
    """generate's streamer: collects the reply up to a stop id or an end-of-turn string and writes its
    text as it completes (text that may be the start of such a string is held back until it is not)."""

    def __init__(self, tokenizer, prompt_ids, stop_ids, write, stop=None, stop_strings=()):
        self.decoder = IncrementalDecoder(tokenizer.decode, prompt_ids)
        self.stop = stop
        self.stop_ids = set(stop_ids)
        self.stop_strings = list(stop_strings)
        self.write = write
        self.ids: list[int] = []
        self.text = ""  # the reply text written so far (before `visible`)
        self.held = ""
        self.stopped = False

    def put(self, ids) -> None:
        if self.stop is not None and self.stop():
            raise ReplyStopped()
        token = int(np.asarray(ids).reshape(-1)[0])
        if self.stopped or token in self.stop_ids:
            self.stopped = True
            return
        self.ids.append(token)
        self._emit(self.decoder.push([token]))

    def end(self) -> None:
        self._emit(self.decoder.flush(), final=True)

    def _emit(self, text: str, final: bool = False) -> None:
        text = self.held + text
        self.held = ""
        cut = min((i for i in (text.find(m) for m in self.stop_strings) if i >= 0), default=-1)
        if cut >= 0:
            self._write(text[:cut])
            self.stopped = True
            raise _EndOfTurn()
        if not final:  # keep back a tail that could begin a marker
            keep = max((k for m in self.stop_strings for k in range(1, len(m)) if text.endswith(m[:k])), default=0)
            if keep:
                text, self.held = text[:-keep], text[-keep:]
        self._write(text)

    def _write(self, text: str) -> None:
        if text:
            self.text += text
            self.write(visible(text))
