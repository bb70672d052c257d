"""HF's overflowing windows and the file's truncation errors in preprocessing.

tests/fixtures/tokenizers/overflow.cases.json (tools/make_tokenizer_overflow_fixtures.py)
holds, for BERT/RoBERTa/Llama-3/T5-templated and template-less files with a
`truncation` section (every strategy, both directions, several max_length
and stride values, fixed or batch-longest padding), HF's main encoding and
every `Encoding.overflowing` window: ids, type_ids and offsets of single
texts, pairs and a batch, or the error HF raises. HF is not needed here.

`mft data preprocess` with such a file: a text HF's truncation refuses is a
bad document named by file:line (fatal, or skipped with skip_bad), never a
document silently left uncut.
"""

from __future__ import annotations

import json
import os

import pytest

from mft.data.indexed import IndexedDataset
from mft.data.preprocess import preprocess
from mft.errors import MftError
from mft.tokenizer import Tokenizer

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures", "tokenizers")

with open(os.path.join(FIXTURES, "overflow.cases.json"), encoding="utf-8") as _f:
    _DATA = json.load(_f)
CASES = _DATA["tokenizers"]
ERRORS = {"too_short": "too few to remove", "no_second": "no second sequence", "stride": "stride"}


def _rows(got, offsets: bool) -> list:
    out = []
    for r in got:
        row = {"ids": list(r[0]), "type_ids": list(r[-1])}
        if offsets:
            row["offsets"] = [list(o) for o in r[1]]
        out.append(row)
    return out


def _check(want, call, where):
    if isinstance(want, dict) and "error" in want:
        with pytest.raises(MftError, match=ERRORS[want["error"]]):
            call()
        return
    assert call() == want, where


@pytest.mark.parametrize("name", sorted(CASES))
def test_overflowing_windows_match_hf(name):
    with open(os.path.join(FIXTURES, CASES[name]["file"]), encoding="utf-8") as f:
        doc = json.load(f)
    texts, pairs = _DATA["texts"], _DATA["pairs"]
    for case in CASES[name]["cases"]:
        doc["truncation"], doc["padding"] = case["truncation"], case["padding"]
        tok = Tokenizer.from_str(json.dumps(doc))
        at = (name, case["truncation"], case["padding"])
        for text, want in zip(texts, case["singles"]):
            _check(want, lambda: _rows(tok.encode(text, return_overflowing=True, return_offsets=True,
                                                  return_type_ids=True), True), at + (text,))
            if "error" not in want:  # ids only: a list of id lists
                assert tok.encode(text, return_overflowing=True) == [r["ids"] for r in want], at
        for (a, b), row in zip(pairs, case["pairs"]):
            for special, key in ((True, "special"), (False, "plain")):
                _check(row[key], lambda: _rows(tok.encode(a, special, pair=b, return_overflowing=True,
                                                          return_offsets=special, return_type_ids=True), special),
                       at + (a, b, key))
        items = [texts[0], texts[1], tuple(pairs[0])]
        _check(case["batch"],
               lambda: [_rows(r, False) for r in tok.encode_batch(items, return_overflowing=True, return_type_ids=True)],
               at + ("batch",))


def test_overflowing_without_truncation_is_the_encoding_alone():
    tok = Tokenizer.from_file(os.path.join(FIXTURES, "bert_wordpiece.json"))
    text = "one two three four five six seven"
    assert tok.encode(text, return_overflowing=True) == [tok.encode(text)]
    with pytest.raises(MftError, match="return_overflowing"):
        tok.encode_batch([text], return_overflowing=True, max_length=4)


def _bert_with(truncation, tmp_path):
    with open(os.path.join(FIXTURES, "bert_wordpiece.json"), encoding="utf-8") as f:
        doc = json.load(f)
    doc["truncation"] = truncation
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    return Tokenizer.from_file(path)


def _docs(prefix):
    ds = IndexedDataset(prefix)
    return [ds[i].tolist() for i in range(len(ds))]


@pytest.mark.parametrize("kind", ["jsonl", "txt"])
def test_preprocess_reports_texts_the_truncation_refuses(tmp_path, kind):
    # OnlySecond with one text: HF refuses every text that needs cutting.
    tok = _bert_with({"direction": "Right", "max_length": 6, "strategy": "OnlySecond", "stride": 0}, tmp_path)
    lines = ["one two", "one two three four five six seven", "three"]
    path = tmp_path / f"docs.{kind}"
    body = [json.dumps({"text": t}) for t in lines] if kind == "jsonl" else lines
    path.write_text("\n".join(body) + "\n", encoding="utf-8")
    with pytest.raises(MftError, match=rf"docs.{kind}:2: .*truncation.*no second sequence"):
        preprocess([str(path)], tok, str(tmp_path / "o"))
    assert not os.path.exists(tmp_path / "o.bin")
    stats = preprocess([str(path)], tok, str(tmp_path / "o"), skip_bad=True)
    assert (stats.documents, stats.skipped_bad) == (2, 1)
    assert _docs(str(tmp_path / "o")) == [tok.encode(t) + [tok.eos_id] for t in (lines[0], lines[2])]


def test_preprocess_cuts_as_the_file_says(tmp_path):
    tok = _bert_with({"direction": "Left", "max_length": 5, "strategy": "LongestFirst", "stride": 0}, tmp_path)
    lines = ["one two three four five six seven", "one"]
    path = tmp_path / "docs.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    preprocess([str(path)], tok, str(tmp_path / "o"))
    docs = _docs(str(tmp_path / "o"))
    assert docs == [tok.encode(t) + [tok.eos_id] for t in lines]
    assert len(docs[0]) == 6  # 5 (cut from the left, [CLS]/[SEP] included) + EOD


def test_sft_preprocess_reports_texts_the_truncation_refuses(tmp_path):
    from mft.data.sft import preprocess_sft

    with open(os.path.join(FIXTURES, "chatml.json"), encoding="utf-8") as f:
        doc = json.load(f)
    doc["truncation"] = {"direction": "Right", "max_length": 40, "strategy": "OnlySecond", "stride": 0}
    (tmp_path / "tokenizer.json").write_text(json.dumps(doc), encoding="utf-8")
    tok = Tokenizer.from_file(tmp_path / "tokenizer.json")
    short = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yes."}]}
    long = {"messages": [{"role": "user", "content": "In the beginning God created the heaven and the earth. " * 4},
                         {"role": "assistant", "content": "And the earth was without form, and void."}]}
    data = tmp_path / "chat.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in (short, long, short)) + "\n", encoding="utf-8")
    with pytest.raises(MftError, match=r"chat\.jsonl:2: .*no second sequence"):
        preprocess_sft([str(data)], tok, str(tmp_path / "o"), chat_template="chatml")
    stats = preprocess_sft([str(data)], tok, str(tmp_path / "o"), chat_template="chatml", skip_bad=True)
    assert stats.conversations == 2 and stats.skipped_bad == 1


# ---- a batch with overflow, flattened as transformers returns it -----------------

with open(os.path.join(FIXTURES, "overflow_batch.cases.json"), encoding="utf-8") as _f:
    _BATCH = json.load(_f)


@pytest.mark.parametrize("case", _BATCH["cases"], ids=lambda c: f"{c['file']}-{c['max_length']}-{c['stride']}-{c['pairs']}")
def test_batch_overflow_to_sample_mapping_matches_transformers(case):
    """transformers' return_overflowing_tokens + return_offsets_mapping on a batch:
    the same rows (ids, type ids, offsets) and overflow_to_sample_mapping."""
    with open(os.path.join(FIXTURES, case["file"]), encoding="utf-8") as f:
        doc = json.load(f)
    doc["truncation"] = {"direction": "Right", "max_length": case["max_length"], "strategy": "LongestFirst",
                         "stride": case["stride"]}
    doc["padding"] = None
    tok = Tokenizer.from_str(json.dumps(doc))
    items = [tuple(p) for p in _BATCH["pairs"]] if case["pairs"] else _BATCH["texts"]
    got = tok.encode_batch(items, return_overflowing=True, return_offsets=True, return_type_ids=True,
                           return_overflow_to_sample_mapping=True)
    assert got.overflow_to_sample_mapping == case["overflow_to_sample_mapping"]
    assert [list(ids) for ids, _, _ in got.rows] == case["ids"]
    assert [[list(o) for o in offs] for _, offs, _ in got.rows] == case["offsets"]
    assert [list(t) for _, _, t in got.rows] == case["type_ids"]
    assert len(set(got.overflow_to_sample_mapping)) == len(items) < len(got.rows)  # some text really overflowed
    # ids only: flat id lists, same mapping
    plain = tok.encode_batch(items, return_overflowing=True, return_overflow_to_sample_mapping=True)
    assert plain.rows == case["ids"] and plain.overflow_to_sample_mapping == case["overflow_to_sample_mapping"]


def test_overflow_to_sample_mapping_needs_return_overflowing():
    tok = Tokenizer.from_file(os.path.join(FIXTURES, "bert_wordpiece.json"))
    with pytest.raises(MftError, match="needs return_overflowing"):
        tok.encode_batch(["a b"], return_overflow_to_sample_mapping=True)
