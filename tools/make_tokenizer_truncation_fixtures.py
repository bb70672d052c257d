"""Writes tests/fixtures/tokenizers/truncation.cases.json with Hugging Face `tokenizers` (run by hand).

    /root/.cache/hf-venv/bin/python tools/make_tokenizer_truncation_fixtures.py

For fixture files already in tests/fixtures/tokenizers, sets the file's own
`truncation` section (every strategy, both directions, several max_length
and stride values) and sometimes its `padding` section, and records what
HF's `Tokenizer.encode(a, b)` / `encode(a)` / `encode_batch` give: ids,
type_ids and offsets, or which error HF raises ("too_short": the sequence a
strategy may cut is too short; "no_second": OnlySecond without a pair;
"stride": the stride is not below what a sequence keeps, a panic in HF).
The tests compare mft against this file without HF installed.
"""

from __future__ import annotations

import json
import os

from tokenizers import Tokenizer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIR = os.path.join(REPO, "tests", "fixtures", "tokenizers")

PAIRS = [
    ["one two three four five six seven", "alpha beta gamma"],
    ["Hello world", "In the beginning God created the heaven and the earth."],
    ["", "a short one"],
    ["def foo(x):\n    return x**2\n", "中文测试：你好，世界！"],
]
# (name, fixture file): a BERT template (3 specials in a pair), RoBERTa (4),
# a Llama-3 template (bos only) and no template at all.
FILES = [
    ("bert", "bert_wordpiece.json"),
    ("roberta", "roberta_trim_offsets.json"),
    ("llama3", "llama3_style.json"),
    ("gpt2", "gpt2_style.json"),
]
MAX_LENGTHS = [0, 3, 5, 8, 13]
PADDINGS = [
    None,
    {"strategy": {"Fixed": 24}, "direction": "Right", "pad_to_multiple_of": None, "pad_id": 0,
     "pad_type_id": 5, "pad_token": "[PAD]"},
    {"strategy": "BatchLongest", "direction": "Left", "pad_to_multiple_of": 8, "pad_id": 1,
     "pad_type_id": 2, "pad_token": "<pad>"},
]


def error_kind(e: BaseException) -> str:
    msg = str(e)
    if "too short" in msg:
        return "too_short"
    if "Second sequence not provided" in msg:
        return "no_second"
    if "stride" in msg:
        return "stride"
    raise e


def run(fn):
    try:
        return fn()
    except BaseException as e:  # noqa: BLE001 - HF's stride check is a Rust panic (PanicException)
        return {"error": error_kind(e)}


def record(enc, offsets: bool = True) -> dict:
    out = {"ids": enc.ids, "type_ids": enc.type_ids}
    if offsets:
        out["offsets"] = [list(o) for o in enc.offsets]
    return out


def configs():
    for strategy in ("LongestFirst", "OnlyFirst", "OnlySecond"):
        for direction in ("Right", "Left"):
            for max_length in MAX_LENGTHS:
                for stride in (0, 2) if (strategy, direction) == ("LongestFirst", "Right") else (0,):
                    yield {"direction": direction, "max_length": max_length, "strategy": strategy,
                           "stride": stride}, None
    # Padding with truncation (and one padding without it).
    for i, pad in enumerate(PADDINGS[1:]):
        yield {"direction": "Right", "max_length": 11, "strategy": ["LongestFirst", "OnlySecond"][i],
               "stride": 0}, pad
    yield None, PADDINGS[2]


def main() -> None:
    result = {}
    for name, file in FILES:
        with open(os.path.join(DIR, file), encoding="utf-8") as f:
            doc = json.load(f)
        cases = []
        for trunc, pad in configs():
            doc["truncation"], doc["padding"] = trunc, pad
            tok = Tokenizer.from_str(json.dumps(doc))
            case = {"truncation": trunc, "padding": pad, "pairs": [], "singles": []}
            for a, b in PAIRS:
                row = {}
                for special in (True, False):
                    key = "special" if special else "plain"
                    row[key] = run(lambda: record(tok.encode(a, b, add_special_tokens=special), special))
                case["pairs"].append(row)
                case["singles"].append(run(lambda: record(tok.encode(a, add_special_tokens=True), False)))
            case["batch"] = run(lambda: [record(e, False) for e in tok.encode_batch([tuple(p) for p in PAIRS])])
            cases.append(case)
        result[name] = {"file": file, "cases": cases}
    path = os.path.join(DIR, "truncation.cases.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"generator": "tools/make_tokenizer_truncation_fixtures.py", "pairs": PAIRS, "tokenizers": result},
                  f, ensure_ascii=False, separators=(",", ":"))
    print(path, os.path.getsize(path))


if __name__ == "__main__":
    main()
