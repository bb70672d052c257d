"""Writes tests/fixtures/tokenizers/overflow.cases.json with Hugging Face `tokenizers` (run by hand).

    /root/.cache/hf-venv/bin/python tools/make_tokenizer_overflow_fixtures.py

For fixture files already in tests/fixtures/tokenizers, sets the file's own
`truncation` section with a `stride` (every strategy, both directions) and
sometimes its `padding` section, and records HF's `Encoding.overflowing`:
the main encoding and then every overflowing window (what transformers
returns with `return_overflowing_tokens=True`), each as ids, type_ids and
offsets (a pair without special tokens: no offsets), for single texts, pairs and a batch; or which error HF raises.
The tests compare mft against this file without HF installed.
"""

from __future__ import annotations

import json
import os

from tokenizers import Tokenizer

from make_tokenizer_truncation_fixtures import DIR, PADDINGS, error_kind

TEXTS = [
    "one two three four five six seven eight",
    "In the beginning God created",
    "",
    "def f(x): return x  # 你好，世界！",
]
PAIRS = [["one two three four five", "alpha beta gamma"], ["In the beginning", "x  # 你好！"], ["", "a short one"], ["Hi", TEXTS[0]]]
FILES = [
    ("bert", "bert_wordpiece.json"),
    ("roberta", "roberta_trim_offsets.json"),
    ("llama3", "llama3_style.json"),
    ("gpt2", "gpt2_style.json"),
    ("t5", "t5_unigram.json"),
]
# (max_length, stride): a stride of 0 still returns the cut-off tokens.
LENGTHS = [(0, 0), (5, 0), (7, 2), (11, 3)]


def rows(enc, offsets: bool) -> list:
    out = []
    for e in [enc, *enc.overflowing]:
        row = {"ids": e.ids, "type_ids": e.type_ids}
        if offsets:
            row["offsets"] = [list(o) for o in e.offsets]
        out.append(row)
    return out


def run(fn):
    try:
        return fn()
    except BaseException as e:  # noqa: BLE001 - HF's stride check is a Rust panic (PanicException)
        return {"error": error_kind(e)}


def configs():
    for strategy in ("LongestFirst", "OnlyFirst", "OnlySecond"):
        for direction in ("Right", "Left"):
            for max_length, stride in LENGTHS:
                yield {"direction": direction, "max_length": max_length, "strategy": strategy, "stride": stride}, None
    for pad in PADDINGS[1:]:
        yield {"direction": "Right", "max_length": 9, "strategy": "LongestFirst", "stride": 2}, pad


def main() -> None:
    result = {}
    for name, file in FILES:
        with open(os.path.join(DIR, file), encoding="utf-8") as f:
            doc = json.load(f)
        cases = []
        for trunc, pad in configs():
            doc["truncation"], doc["padding"] = trunc, pad
            tok = Tokenizer.from_str(json.dumps(doc))
            case = {"truncation": trunc, "padding": pad, "singles": [], "pairs": []}
            for t in TEXTS:
                case["singles"].append(run(lambda: rows(tok.encode(t), True)))
            for a, b in PAIRS:
                row = {}
                for special in (True, False):
                    row["special" if special else "plain"] = run(
                        lambda: rows(tok.encode(a, b, add_special_tokens=special), special))
                case["pairs"].append(row)
            case["batch"] = run(lambda: [rows(e, False) for e in tok.encode_batch(TEXTS[:2] + [tuple(PAIRS[0])])])
            cases.append(case)
        result[name] = {"file": file, "cases": cases}
    path = os.path.join(DIR, "overflow.cases.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"generator": "tools/make_tokenizer_overflow_fixtures.py", "texts": TEXTS, "pairs": PAIRS,
                   "tokenizers": result}, f, ensure_ascii=False, separators=(",", ":"))
    print(path, os.path.getsize(path))


if __name__ == "__main__":
    main()
