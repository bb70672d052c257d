"""Text pairs and type ids against HF `tokenizers`' own outputs.

tests/fixtures/tokenizers/pairs.cases.json (tools/make_tokenizer_pair_fixtures.py)
holds HF's `encode(a, b)` ids, type_ids and offsets, with and without special
tokens, for fixture files with TemplateProcessing (BERT, ALBERT, T5, Gemma,
Llama-3, DeepSeek-V3, one with typed specials and B before A),
BertProcessing, RobertaProcessing (trimmed or not), a Sequence of ByteLevel
and Bert, and no template at all. HF is not needed here.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from mft.errors import MftError
from mft.tokenizer import Tokenizer

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures", "tokenizers")

with open(os.path.join(FIXTURES, "pairs.cases.json"), encoding="utf-8") as _f:
    CASES = json.load(_f)["tokenizers"]


def _tokenizer(name: str) -> Tokenizer:
    entry = CASES[name]
    with open(os.path.join(FIXTURES, entry["file"]), encoding="utf-8") as f:
        doc = json.load(f)
    if entry["post_processor"] is not None:
        doc["post_processor"] = entry["post_processor"]
    return Tokenizer.from_str(json.dumps(doc))


def _as_lists(row):
    ids, offsets, type_ids = row
    return {"ids": list(ids), "type_ids": list(type_ids), "offsets": [list(o) for o in offsets]}


@pytest.mark.parametrize("name", sorted(CASES))
def test_pairs_match_hf(name):
    tok = _tokenizer(name)
    cases = CASES[name]["cases"]
    for c in cases:
        for special, key in ((True, "special"), (False, "plain")):
            got = tok.encode(c["a"], special, pair=c["b"], return_offsets=True, return_type_ids=True)
            assert _as_lists(got) == c[key], (name, c["a"], c["b"], key)
            assert tok.encode(c["a"], special, pair=c["b"]) == c[key]["ids"]
        assert tok.encode(c["a"], return_type_ids=True)[1] == c["single_type_ids"], (name, c["a"])
        # A single text through the pair path is the plain encode.
        assert tok.encode(c["a"], return_type_ids=True)[0] == tok.encode(c["a"])
    # The batch form: tuples are pairs, in order, on the pool.
    batch = tok.encode_batch([(c["a"], c["b"]) for c in cases], return_offsets=True, return_type_ids=True)
    assert [_as_lists(r) for r in batch] == [c["special"] for c in cases]
    assert tok.encode_batch([(c["a"], c["b"]) for c in cases], False) == [c["plain"]["ids"] for c in cases]


def test_pair_type_ids_and_numpy():
    tok = _tokenizer("bert_cased_wordpiece")
    ids, type_ids = tok.encode("Hello world", pair="second text", return_type_ids=True, as_numpy=True)
    assert ids.dtype == np.uint32 and len(ids) == len(type_ids)
    # [CLS] A [SEP] is type 0, B [SEP] type 1, as BERT's segment embedding expects.
    sep = tok.token_to_id("[SEP]")
    first_sep = list(ids).index(sep)
    assert set(type_ids[: first_sep + 1]) == {0} and set(type_ids[first_sep + 1 :]) == {1}
    # Mixed batch: plain strings and pairs.
    rows = tok.encode_batch(["Hello world", ("Hello world", "second text")])
    assert rows[0] == tok.encode("Hello world") and rows[1] == list(ids)


def test_pair_bad_input():
    tok = _tokenizer("bert_wordpiece")
    with pytest.raises(MftError, match="pair must be a str"):
        tok.encode("a", pair=3)
    with pytest.raises(MftError, match="item 1"):
        tok.encode_batch(["a", ("b",)])
    with pytest.raises(MftError, match="max_length"):
        tok.encode_batch([("a", "b")], max_length=8)
    # A file with its own truncation/padding: pairs are cut and padded as HF
    # does it (test_tokenizer_truncation.py); the layout is still the template's.
    limited = Tokenizer.from_file(os.path.join(FIXTURES, "truncate_pad_fixed.json"))
    ids, type_ids = limited.encode("a " * 40, pair="b " * 40, return_type_ids=True)
    assert len(ids) == len(type_ids) == 16  # cut to max_length 12, padded to Fixed 16
    assert ids[12:] == [0] * 4
