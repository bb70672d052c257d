"""mft.inference.chat pieces that need no model: end-of-turn markers spelled in text, terminal-safe output."""

from __future__ import annotations

import json
import os

import pytest

from mft.inference.chat import _EndOfTurn, _ReplySink, end_of_turn_strings, visible
from mft.tokenizer import Tokenizer
from mft.tokenizer.chat_template import BUILTIN_TEMPLATES

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def test_end_of_turn_strings_of_the_builtins():
    assert end_of_turn_strings(BUILTIN_TEMPLATES["chatml"], {}) == ["<|im_end|>"]
    assert end_of_turn_strings(BUILTIN_TEMPLATES["llama3"], {"bos_token": "<s>"}) == ["<|eot_id|>"]


def test_reply_stops_at_a_marker_spelled_in_pieces():
    """A tokenizer without <|im_end|> as a token (the demo's) spells it in pieces: the reply ends
    before it, and no piece of it reaches the screen."""
    with open(os.path.join(REPO, "data", "kjv", "kjv.jsonl"), encoding="utf-8") as f:
        text = json.loads(f.readline())["text"]
    tok = Tokenizer.train([text], vocab_size=300, special_tokens=["<|endoftext|>"])
    ids = tok.encode("Ge 1:5<|im_end|>\nmore", add_special_tokens=False)
    assert len(ids) > 8
    shown = []
    sink = _ReplySink(tok, [], [], shown.append, stop_strings=["<|im_end|>"])
    with pytest.raises(_EndOfTurn):
        for i in ids:
            sink.put([i])
    assert sink.text == "Ge 1:5" and "".join(shown) == "Ge 1:5"
    # a tail that only looked like the start of a marker is written at the end
    sink = _ReplySink(tok, [], [], shown.append, stop_strings=["<|im_end|>"])
    for i in tok.encode("a <|im", add_special_tokens=False):
        sink.put([i])
    sink.end()
    assert sink.text == "a <|im"


def test_visible():
    assert visible("a\tb\nc\x1b[2Jd\x07") == "a\tb\nc\ufffd[2Jd\ufffd"
