"""The tokenizer.json's own `truncation`/`padding` on text pairs, against HF `tokenizers`.

tests/fixtures/tokenizers/truncation.cases.json (tools/make_tokenizer_truncation_fixtures.py)
holds, for BERT/RoBERTa/Llama-3-templated and template-less files, what HF
gives with each truncation strategy (LongestFirst, OnlyFirst, OnlySecond),
both directions, several max_length and stride values, and fixed or
batch-longest padding: ids, type_ids and offsets of pairs, single texts and
a batch of pairs, or the error HF raises. HF is not needed here.
"""

from __future__ import annotations

import json
import os

import pytest

from mft.errors import MftError
from mft.tokenizer import Tokenizer

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures", "tokenizers")

with open(os.path.join(FIXTURES, "truncation.cases.json"), encoding="utf-8") as _f:
    _DATA = json.load(_f)
PAIRS = _DATA["pairs"]
CASES = _DATA["tokenizers"]

# HF's error kinds -> what mft's MftError says.
ERRORS = {"too_short": "too few to remove", "no_second": "no second sequence", "stride": "stride"}


def _row(got, offsets: bool) -> dict:
    out = {"ids": list(got[0]), "type_ids": list(got[-1])}
    if offsets:
        out["offsets"] = [list(o) for o in got[1]]
    return out


def _check(want: dict, call, describe):
    if "error" in want:
        with pytest.raises(MftError, match=ERRORS[want["error"]]):
            call()
        return
    assert call() == want, describe


@pytest.mark.parametrize("name", sorted(CASES))
def test_file_truncation_and_padding_match_hf(name):
    with open(os.path.join(FIXTURES, CASES[name]["file"]), encoding="utf-8") as f:
        doc = json.load(f)
    for case in CASES[name]["cases"]:
        doc["truncation"], doc["padding"] = case["truncation"], case["padding"]
        tok = Tokenizer.from_str(json.dumps(doc))
        for (a, b), row, single in zip(PAIRS, case["pairs"], case["singles"]):
            where = (name, case["truncation"], case["padding"], a, b)
            for special, key in ((True, "special"), (False, "plain")):
                _check(row[key],
                       lambda: _row(tok.encode(a, special, pair=b, return_offsets=special, return_type_ids=True), special),
                       where + (key,))
            _check(single, lambda: _row(tok.encode(a, return_type_ids=True), False), where + ("single",))
            if "error" not in single:  # the plain single-text path gives the same ids
                assert tok.encode(a) == single["ids"], where
        _check(case["batch"],
               lambda: [_row(r, False) for r in tok.encode_batch([tuple(p) for p in PAIRS], return_type_ids=True)],
               (name, case["truncation"], case["padding"], "batch"))


def test_file_truncation_errors_name_the_file(tmp_path):
    with open(os.path.join(FIXTURES, "bert_wordpiece.json"), encoding="utf-8") as f:
        doc = json.load(f)
    doc["truncation"] = {"direction": "Right", "max_length": 6, "strategy": "OnlySecond", "stride": 0}
    path = tmp_path / "only_second.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    tok = Tokenizer.from_file(path)
    with pytest.raises(MftError, match="only_second.json.*no second sequence"):
        tok.encode("one two three four five six seven")
    with pytest.raises(MftError, match="only_second.json.*no second sequence"):
        tok.encode_batch(["a", "one two three four five six seven"])
    assert tok.encode("one two") == tok.encode("one two", pair=None)  # short enough: nothing to cut
    doc["truncation"]["strategy"] = "Bogus"
    with pytest.raises(MftError, match="truncation.strategy"):
        Tokenizer.from_str(json.dumps(doc))
