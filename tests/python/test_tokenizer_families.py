"""Model-family tokenizer.json shapes against HF's own outputs.

The files (tests/fixtures/tokenizers/families, made by
tools/make_tokenizer_family_fixtures.py) are laid out as Llama-2, Mistral v0.3,
tekken, Phi-3, Gemma-2/3, StarCoder2, SmolLM, GPT-NeoX, OLMo, Falcon, BLOOM,
GLM-4, Whisper, CLIP, RoBERTa, DeBERTa-v3, XLM-R, Yi and InternLM2 files ship
them; the cases hold HF's ids, offsets, decodes (skipping and keeping special
tokens, of text and of random id lists) and pair encodings. HF is not needed here.
"""

from __future__ import annotations

import json
import os

import pytest

from mft.tokenizer import Tokenizer

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FAMILIES = os.path.join(REPO, "tests", "fixtures", "tokenizers", "families")
NAMES = sorted(n[: -len(".cases.json")] for n in os.listdir(FAMILIES) if n.endswith(".cases.json"))


@pytest.fixture(scope="module", params=NAMES)
def family(request):
    with open(os.path.join(FAMILIES, f"{request.param}.cases.json"), encoding="utf-8") as f:
        doc = json.load(f)
    return doc, Tokenizer.from_file(os.path.join(FAMILIES, doc["tokenizer"]))


def test_the_family_set_is_complete():
    assert len(NAMES) >= 23, NAMES


def test_ids_and_offsets_match_hf(family):
    doc, tok = family
    for case in doc["cases"]:
        ids, offsets = tok.encode(case["text"], return_offsets=True)
        assert (ids, [list(o) for o in offsets]) == (case["ids"], case["offsets"]), repr(case["text"])
        ids, offsets = tok.encode(case["text"], add_special_tokens=False, return_offsets=True)
        assert (ids, [list(o) for o in offsets]) == (case["ids_no_special"], case["offsets_no_special"]), repr(case["text"])
    assert tok._tok.vocab_size == doc["hf_vocab_size"]


def test_batch_matches_hf(family):
    doc, tok = family
    texts = [c["text"] for c in doc["cases"]]
    got = tok.encode_batch(texts, return_offsets=True)
    assert [ids for ids, _ in got] == [c["ids"] for c in doc["cases"]]
    assert [[list(o) for o in offs] for _, offs in got] == [c["offsets"] for c in doc["cases"]]
    assert tok.encode_batch(texts, add_special_tokens=False) == [c["ids_no_special"] for c in doc["cases"]]


def test_decode_matches_hf(family):
    doc, tok = family
    for case in doc["cases"]:
        assert tok.decode(case["ids"]) == case["decoded"], repr(case["text"])
        keep = case.get("decoded_keep_special", case["decoded"])  # absent: the same
        assert tok.decode(case["ids"], skip_special_tokens=False) == keep, repr(case["text"])
    for case in doc["decodes"]:
        assert tok.decode(case["ids"]) == case["decoded"], case["ids"]
        keep = case.get("decoded_keep_special", case["decoded"])
        assert tok.decode(case["ids"], skip_special_tokens=False) == keep, case["ids"]
    ids = [c["ids"] for c in doc["decodes"]]
    assert tok.decode_batch(ids) == [c["decoded"] for c in doc["decodes"]]


def test_pairs_match_hf(family):
    doc, tok = family
    for case in doc["pairs"]:
        what = (case["text"], case["pair"], case["add_special_tokens"])
        if "error" in case:
            with pytest.raises(Exception):
                tok.encode(case["text"], case["add_special_tokens"], pair=case["pair"])
            continue
        ids, offsets, type_ids = tok.encode(case["text"], case["add_special_tokens"], pair=case["pair"],
                                            return_offsets=True, return_type_ids=True)
        assert (ids, [list(o) for o in offsets], type_ids) == (case["ids"], case["offsets"], case["type_ids"]), what
    special = [c for c in doc["pairs"] if c["add_special_tokens"] and "error" not in c]
    got = tok.encode_batch([(c["text"], c["pair"]) for c in special], return_type_ids=True)
    assert [list(g) for g in got] == [[c["ids"], c["type_ids"]] for c in special]


def test_regex_syntax_reads_as_onig():
    """Split regexes as HF's Oniguruma reads them (\\w/\\b/POSIX classes, anchors,
    \\Z \\R \\N \\O, Ruby's (?m)): HF's pieces of one text per pattern."""
    with open(os.path.join(FAMILIES, "..", "onig_regex.cases.json"), encoding="utf-8") as f:
        doc = json.load(f)
    for case in doc["cases"]:
        tok = Tokenizer.from_str(json.dumps({
            "version": "1.0", "model": {"type": "WordLevel", "vocab": {"<unk>": 0}, "unk_token": "<unk>"},
            "pre_tokenizer": {"type": "Split", "pattern": {"Regex": case["pattern"]}, "behavior": "Isolated", "invert": False}}))
        _, offsets = tok.encode(doc["text"], return_offsets=True)
        assert [list(o) for o in offsets] == case["offsets"], case["pattern"]


def test_unicode_scripts_as_hf_table():
    """UnicodeScripts with HF's Unicode 9.0 script table: chars assigned later
    match any script, a few chars keep their 9.0 script; HF's pieces (offsets)."""
    with open(os.path.join(FAMILIES, "..", "onig_regex.cases.json"), encoding="utf-8") as f:
        cases = json.load(f)["unicode_scripts"]
    tok = Tokenizer.from_str(json.dumps({
        "version": "1.0", "model": {"type": "WordLevel", "vocab": {"<unk>": 0}, "unk_token": "<unk>"},
        "pre_tokenizer": {"type": "UnicodeScripts"}}))
    for case in cases:
        _, offsets = tok.encode(case["text"], return_offsets=True)
        assert [list(o) for o in offsets] == case["offsets"], repr(case["text"])
