"""Writes tests/fixtures/tokenizers/overflow_batch.cases.json with transformers (run by hand).

    /root/.cache/hf-venv/bin/python tools/make_tokenizer_overflow_batch_fixtures.py

transformers' fast tokenizer called on a batch with `truncation=True`,
`max_length`, `stride`, `return_overflowing_tokens=True`,
`return_offsets_mapping=True`: the rows of every text's encoding and its
overflowing windows, flattened in order, with `overflow_to_sample_mapping`
(row -> batch item), ids, type ids and offsets; for single texts and text
pairs. The tests set the same truncation in the file and compare mft's
`encode_batch(..., return_overflowing=True, return_overflow_to_sample_mapping=True)`.
"""

from __future__ import annotations

import json
import os
import tempfile

from make_tokenizer_truncation_fixtures import DIR

FILES = ["bert_wordpiece.json", "roberta_trim_offsets.json", "llama3_style.json", "families/gemma.json", "families/xlm_r.json"]
TEXTS = ["one two three four five six seven eight nine ten", "Hi", "", "def f(x): return x  # 你好，世界！ 😀 e\u0301",
         "In the beginning God created the heaven and the earth."]
PAIRS = [("one two three four five six", "alpha beta gamma delta"), ("Hi", "a b c d e f g h i j k"), ("", "short"),
         ("中文测试：你好，世界！", "emoji 😀 and more words here")]
# (max_length, stride): long enough for every template's special tokens plus
# one. Pairs without a stride (HF refuses most strides on these pairs).
LENGTHS = [(6, 0), (7, 2), (10, 3)]
PAIR_LENGTHS = [(9, 0)]


def encode(tok, items, max_length, stride, pairs):
    kwargs = dict(truncation=True, max_length=max_length, stride=stride, return_overflowing_tokens=True,
                  return_offsets_mapping=True, return_token_type_ids=True)
    try:
        if pairs:
            out = tok([a for a, _ in items], [b for _, b in items], **kwargs)
        else:
            out = tok(list(items), **kwargs)
    except BaseException as e:  # noqa: BLE001 - HF's stride check is a Rust panic
        return {"error": type(e).__name__}
    return {"ids": out["input_ids"], "type_ids": out["token_type_ids"],
            "offsets": [[list(o) for o in row] for row in out["offset_mapping"]],
            "overflow_to_sample_mapping": out["overflow_to_sample_mapping"]}


def main() -> None:
    from transformers import PreTrainedTokenizerFast

    cases = []
    for file in FILES:
        with open(os.path.join(DIR, file), encoding="utf-8") as f:
            doc = json.load(f)
        doc["truncation"], doc["padding"] = None, None
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "tokenizer.json")
            with open(path, "w", encoding="utf-8") as f:
                json.dump(doc, f, ensure_ascii=False)
            tok = PreTrainedTokenizerFast(tokenizer_file=path)
            runs = [(m, s, False, TEXTS) for m, s in LENGTHS] + [(m, s, True, PAIRS) for m, s in PAIR_LENGTHS]
            for max_length, stride, pairs, items in runs:
                cases.append({"file": file, "max_length": max_length, "stride": stride, "pairs": pairs,
                              **encode(tok, items, max_length, stride, pairs)})
    path = os.path.join(DIR, "overflow_batch.cases.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"generator": "tools/make_tokenizer_overflow_batch_fixtures.py", "texts": TEXTS,
                   "pairs": [list(p) for p in PAIRS], "cases": cases}, f, ensure_ascii=False, separators=(",", ":"))
    print(path, os.path.getsize(path), sum("error" in c for c in cases), "errors")


if __name__ == "__main__":
    main()
