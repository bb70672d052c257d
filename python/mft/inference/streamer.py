"""Incremental detokenisation for streaming generated text (one sequence).

Decoding token by token breaks multi-byte characters (a UTF-8 character can
span several byte-level tokens) and loses tokenizer-specific spacing (a
sentencepiece "▁word" decodes with its space only after other text). So the
streamer decodes the pending tokens together with a few context tokens before
them, emits only the text beyond the context, and holds text back while it
ends in U+FFFD (an incomplete character).
"""

from __future__ import annotations

import sys
from typing import Callable, Sequence

REPLACEMENT = "\ufffd"


class IncrementalDecoder:
    """Feed ids with `push(ids)`, get the newly completed text back."""

    def __init__(self, decode: Callable[[list[int]], str], context_ids: Sequence[int] = ()):
        self.decode = decode
        self.context = list(context_ids)[-4:]  # a few prompt tokens so the first word gets its spacing
        self.pending: list[int] = []

    def push(self, ids: Sequence[int]) -> str:
        self.pending.extend(int(i) for i in ids)
        prefix = self.decode(self.context)
        text = self.decode(self.context + self.pending)
        if text.endswith(REPLACEMENT) or not text.startswith(prefix):
            return ""  # an incomplete character: wait for the bytes that finish it
        new = text[len(prefix):]
        # Keep the last pending tokens as context for what comes next.
        self.context = (self.context + self.pending)[-4:]
        self.pending = []
        return new

    def flush(self) -> str:
        """Whatever is still pending at the end, undecodable bytes included."""
        if not self.pending:
            return ""
        prefix = self.decode(self.context)
        text = self.decode(self.context + self.pending)
        self.pending = []
        return text[len(prefix):] if text.startswith(prefix) else text


class TextStreamer:
    """`generate(..., streamer=TextStreamer(tok, prompt_ids))` writes text as tokens arrive (batch 1)."""

    def __init__(self, tokenizer, prompt_ids: Sequence[int] = (), out=None, stop_ids: Sequence[int] = ()):
        self.decoder = IncrementalDecoder(tokenizer.decode, prompt_ids)
        self.out = out if out is not None else sys.stdout
        self.stop_ids = set(int(i) for i in stop_ids)
        self.stopped = False

    def put(self, ids) -> None:
        token = int(ids[0])
        if self.stopped or token in self.stop_ids:
            self.stopped = True
            return
        self._write(self.decoder.push([token]))

    def end(self) -> None:
        self._write(self.decoder.flush())
        self._write("\n")

    def _write(self, text: str) -> None:
        if text:
            self.out.write(text)
            self.out.flush()
