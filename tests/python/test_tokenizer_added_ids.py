"""Added tokens whose ids or contents clash, against HF `tokenizers`' own outputs.

tests/fixtures/tokenizers/added_ids.cases.json (tools/make_tokenizer_added_fixtures.py):
a content the model vocab has under another id, an id a model token
already has, one id twice, one content twice with other flags, ids with
gaps after the vocab, an empty content; in a byte-level BPE and a WordPiece
file. HF gives a content in the vocab the model's id and every other
content the next id after the vocab, whatever the file says; mft must give
the same ids, tokens, decodes, vocab size and saved file. HF is not needed.
"""

from __future__ import annotations

import json
import os

import pytest

from mft.tokenizer import Tokenizer

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures", "tokenizers")

with open(os.path.join(FIXTURES, "added_ids.cases.json"), encoding="utf-8") as _f:
    _DATA = json.load(_f)


@pytest.mark.parametrize("name", sorted(_DATA["cases"]))
def test_added_token_ids_match_hf(name):
    case = _DATA["cases"][name]
    with open(os.path.join(FIXTURES, case["file"]), encoding="utf-8") as f:
        doc = json.load(f)
    doc["added_tokens"] = case["added_tokens"]
    tok = Tokenizer.from_str(json.dumps(doc))
    assert [tok.encode(t, add_special_tokens=False) for t in _DATA["texts"]] == case["encode"], name
    assert {c: tok.token_to_id(c) for c in case["token_to_id"]} == case["token_to_id"], name
    assert {i: tok.id_to_token(int(i)) for i in case["id_to_token"]} == case["id_to_token"], name
    ids = [int(i) for i, t in case["id_to_token"].items() if t is not None]
    assert [tok.decode(ids, skip_special_tokens=s) for s in (False, True)] == case["decode"], name
    assert tok.vocab_size == case["vocab_size"], name
    saved = json.loads(tok.to_str())["added_tokens"]
    assert [[a["id"], a["content"]] for a in saved] == case["saved_added"], name
    # The saved file reads back to the same tokenizer.
    again = Tokenizer.from_str(tok.to_str())
    assert [again.encode(t, add_special_tokens=False) for t in _DATA["texts"]] == case["encode"], name
