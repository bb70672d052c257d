"""Writes tests/fixtures/tokenizers/added_ids.cases.json with Hugging Face `tokenizers` (run by hand).

    /root/.cache/hf-venv/bin/python tools/make_tokenizer_added_fixtures.py

Added tokens whose ids or contents clash, in fixture files already in
tests/fixtures/tokenizers: a content the model's vocab has under another id,
an id a model token already has, two entries with one id, one content
listed twice with other flags, ids with gaps after the vocab, an empty
content. Records what HF gives: ids of texts, token_to_id / id_to_token,
decodes with and without skipping special tokens, the vocab size with
added tokens, and the added tokens HF writes back. The tests compare mft
against this file without HF installed.
"""

from __future__ import annotations

import json
import os

from tokenizers import Tokenizer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIR = os.path.join(REPO, "tests", "fixtures", "tokenizers")
FLAGS = dict(single_word=False, lstrip=False, rstrip=False, normalized=False, special=False)


def tok(**kw) -> dict:
    return dict(FLAGS, **kw)


def scenarios(vocab: dict[str, int], word: str, n: int) -> dict[str, list[dict]]:
    """`word`: a token of the model vocab; `n`: the model vocab size."""
    other = next(t for t, i in vocab.items() if i == n // 2)  # a model token with another id
    return {
        "content_in_vocab_other_id": [tok(id=n + 5, content=word)],
        "content_in_vocab_other_id_special": [tok(id=3, content=word, special=True)],
        "id_of_a_model_token": [tok(id=vocab[other], content="<|x|>", special=True)],
        "one_id_twice": [tok(id=n + 7, content="<|a|>", special=True), tok(id=n + 7, content="<|b|>", special=True)],
        "content_twice_other_flags": [tok(id=n, content="<|a|>", special=True), tok(id=n + 1, content="<|a|>"),
                                      tok(id=n + 2, content="<|c|>", special=True)],
        "gaps_after_vocab": [tok(id=n + 100, content="<|a|>", special=True), tok(id=n + 50, content="<|b|>"),
                             tok(id=n + 1, content="", special=True), tok(id=n + 2, content="<|c|>", special=True)],
    }


FILES = [("gpt2", "gpt2_style.json", "ther"), ("bert", "bert_wordpiece.json", "the")]
TEXTS = ["say ther other <|x|> <|a|>x<|b|> <|c|> the end", "the the<|a|><|a|>", "plain text only"]


def main() -> None:
    result = {}
    for name, file, word in FILES:
        with open(os.path.join(DIR, file), encoding="utf-8") as f:
            doc = json.load(f)
        vocab = doc["model"]["vocab"]
        n = len(vocab)
        for scen, added in scenarios(vocab, word, n).items():
            d = dict(doc)
            d["added_tokens"] = doc["added_tokens"] + added
            t = Tokenizer.from_str(json.dumps(d))
            contents = sorted({a["content"] for a in added if a["content"]} | {word})
            ids = sorted({a["id"] for a in added} | {vocab[word]} | set(range(n - 1, n + 4)))
            saved = json.loads(t.to_str())["added_tokens"]
            result[f"{name}/{scen}"] = {
                "file": file,
                "added_tokens": d["added_tokens"],
                "encode": [t.encode(x, add_special_tokens=False).ids for x in TEXTS],
                "token_to_id": {c: t.token_to_id(c) for c in contents},
                "id_to_token": {str(i): t.id_to_token(i) for i in ids},
                "decode": [t.decode([i for i in ids if t.id_to_token(i) is not None], skip_special_tokens=s)
                           for s in (False, True)],
                "vocab_size": t.get_vocab_size(with_added_tokens=True),
                "saved_added": [[a["id"], a["content"]] for a in saved],
            }
    path = os.path.join(DIR, "added_ids.cases.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"generator": "tools/make_tokenizer_added_fixtures.py", "texts": TEXTS, "cases": result}, f,
                  ensure_ascii=False, indent=1)
    print(path, os.path.getsize(path))


if __name__ == "__main__":
    main()
