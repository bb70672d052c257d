"""Writes tests/fixtures/tokenizers/pairs.cases.json with Hugging Face `tokenizers` (run by hand).

    /root/.cache/hf-venv/bin/python tools/make_tokenizer_pair_fixtures.py

For several fixture files already in tests/fixtures/tokenizers (and variants
of them with another post-processor), records what HF's
`Tokenizer.encode(a, b)` gives for text pairs: ids, type_ids and offsets,
with and without special tokens. The tests compare mft's pair encoding
against this file without HF installed.
"""

from __future__ import annotations

import json
import os
import random

from tokenizers import Tokenizer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIR = os.path.join(REPO, "tests", "fixtures", "tokenizers")

TEXTS = [
    "", " ", "Hello world", "  leading spaces", "trailing spaces   ",
    "don't stop, we're gonna.", "中文测试：你好，世界！", "emoji 😀👍🏽 flags 🇺🇸",
    "def foo(x):\n    return x**2\n", "Numbers: 1234567 3.14", "Ünïcödé àccents e\u0301",
    "In the beginning God created the heaven and the earth.", "<s> inside </s> text",
    "[CLS] and [SEP] [MASK] typed", "<|begin_of_text|>already there",
]

# (name in the output, fixture file, post_processor replacing the file's own or None)
ROBERTA_PLAIN = {"type": "RobertaProcessing", "sep": ["</s>", 1], "cls": ["<s>", 0],
                 "trim_offsets": False, "add_prefix_space": True}
TEMPLATE_TYPED = {
    "type": "TemplateProcessing",
    "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 2}}, {"Sequence": {"id": "A", "type_id": 0}},
               {"SpecialToken": {"id": "[SEP2]", "type_id": 0}}],
    "pair": [{"Sequence": {"id": "B", "type_id": 1}}, {"SpecialToken": {"id": "[SEP2]", "type_id": 1}},
             {"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 3}},
             {"SpecialToken": {"id": "[SEP2]", "type_id": 2}}],
    "special_tokens": {
        "[CLS]": {"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]},
        "[SEP2]": {"id": "[SEP2]", "ids": [3, 3], "tokens": ["[SEP]", "[SEP]"]},
    },
}
BERT_OF_BERT = {"type": "BertProcessing", "sep": ["[SEP]", 3], "cls": ["[CLS]", 2]}
SEQUENCE_ROBERTA = {"type": "Sequence", "processors": [
    {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}, BERT_OF_BERT]}

FILES = [
    ("bert_wordpiece", "bert_wordpiece.json", None),
    ("bert_cased_wordpiece", "bert_cased_wordpiece.json", None),
    ("bert_template_typed", "bert_wordpiece.json", TEMPLATE_TYPED),
    ("roberta_trim_offsets", "roberta_trim_offsets.json", None),
    ("roberta_plain", "roberta_trim_offsets.json", ROBERTA_PLAIN),
    ("gpt2_trim_then_bert", "gpt2_trim_offsets.json", SEQUENCE_ROBERTA),
    ("llama3_style", "llama3_style.json", None),
    ("deepseek_v3_style", "deepseek_v3_style.json", None),
    ("gemma_style", "gemma_style.json", None),
    ("t5_unigram", "t5_unigram.json", None),
    ("albert_unigram", "albert_unigram.json", None),
    ("prefix_space_template", "prefix_space_template.json", None),
    ("gpt2_style", "gpt2_style.json", None),
]


def pairs() -> list[list[str]]:
    rng = random.Random(7)
    out = [[a, b] for a, b in zip(TEXTS, TEXTS[1:] + TEXTS[:1])]
    out += [[rng.choice(TEXTS), rng.choice(TEXTS)] for _ in range(5)]
    return out


def main() -> None:
    result = {}
    for name, file, post in FILES:
        with open(os.path.join(DIR, file), encoding="utf-8") as f:
            doc = json.load(f)
        if post is not None:
            doc["post_processor"] = post
        tok = Tokenizer.from_str(json.dumps(doc))
        cases = []
        for a, b in pairs():
            case = {"a": a, "b": b}
            for special in (True, False):
                enc = tok.encode(a, b, add_special_tokens=special)
                key = "special" if special else "plain"
                case[key] = {"ids": enc.ids, "type_ids": enc.type_ids, "offsets": [list(o) for o in enc.offsets]}
            single = tok.encode(a)
            case["single_type_ids"] = single.type_ids
            cases.append(case)
        result[name] = {"file": file, "post_processor": post, "cases": cases}
    path = os.path.join(DIR, "pairs.cases.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"generator": "tools/make_tokenizer_pair_fixtures.py", "tokenizers": result}, f, ensure_ascii=False)
    print(path, os.path.getsize(path))


if __name__ == "__main__":
    main()
