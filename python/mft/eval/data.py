"""Evaluation inputs: documents for `ppl`, items for `mc`.

Documents (`read_documents`):
- `FILE.jsonl`: one JSON object per line, the text in `field` (default "text");
- `FILE.txt` (or any other text file): the whole file is one document;
- `PREFIX.idx` / `PREFIX.bin` (mft's indexed dataset): already token ids, one
  document per entry; used as stored (no BOS added or removed).

Multiple-choice items (`read_mc_items`), one JSON object per line, in any of
these layouts (the first that fits):
- `{"context"|"ctx"|"query": str, "choices"|"endings": [str, ...], "label"|"answer"|"gold": int or letter}`
  (HellaSwag style: the continuation is " " + choice after the context);
- `{"question": str, "choices": [str, ...], "answer": int or letter}`
  (MMLU/ARC style: context "Question: {question}\\nAnswer:");
- `{"question": str, "A": str, "B": str, ..., "answer": letter}` (C-Eval style).
"""

from __future__ import annotations

import json
import os
import string
from typing import NamedTuple

from mft.errors import MftError


def read_documents(path: str, field: str = "text") -> tuple[str, list]:
    """-> ("text", [str, ...]) or ("ids", [np.ndarray, ...]) for an indexed dataset."""
    if path.endswith((".idx", ".bin")):
        from mft.data.indexed import IndexedDataset

        ds = IndexedDataset(path[:-4])
        return "ids", [ds[i] for i in range(len(ds))]
    if not os.path.isfile(path):
        raise MftError(f"--data {path}: no such file")
    if path.endswith(".jsonl"):
        texts = []
        for line_no, obj in _jsonl(path):
            if field not in obj:
                raise MftError(f"{path}:{line_no}: no field {field!r} (choose it with --field; keys here: {', '.join(sorted(obj))})")
            if not isinstance(obj[field], str):
                raise MftError(f"{path}:{line_no}: field {field!r} is {type(obj[field]).__name__}, not a string")
            texts.append(obj[field])
        return "text", texts
    try:
        with open(path, encoding="utf-8", newline="") as f:
            return "text", [f.read()]
    except UnicodeDecodeError as e:
        raise MftError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def _jsonl(path: str):
    try:
        with open(path, encoding="utf-8") as f:
            for line_no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise MftError(f"{path}:{line_no}: not valid JSON ({e.msg} at column {e.colno})") from None
                if not isinstance(obj, dict):
                    raise MftError(f"{path}:{line_no}: expected a JSON object, got {type(obj).__name__}")
                yield line_no, obj
    except UnicodeDecodeError as e:
        raise MftError(f"{path}: not UTF-8 ({e.reason} at byte {e.start})") from None


class MCItem(NamedTuple):
    context: str
    choices: list[str]
    label: int
    where: str  # file:line


def _first(obj: dict, keys: tuple[str, ...]):
    for k in keys:
        if k in obj:
            return k, obj[k]
    return None, None


def _label(value, n: int, where: str, key: str) -> int:
    if isinstance(value, str) and len(value.strip()) == 1 and value.strip().upper() in string.ascii_uppercase:
        value = string.ascii_uppercase.index(value.strip().upper())
    elif isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int):
        raise MftError(f"{where}: {key!r} must be a choice index or letter, got {value!r}")
    if not 0 <= value < n:
        raise MftError(f"{where}: {key!r}={value} is not one of the {n} choices")
    return value


def parse_mc_item(obj: dict, where: str) -> MCItem:
    ckey, context = _first(obj, ("context", "ctx", "query"))
    if ckey is None and "question" in obj:
        ckey, context = "question", f"Question: {obj['question']}\nAnswer:"
    if ckey is None:
        raise MftError(f"{where}: no context: expected a 'context', 'ctx', 'query' or 'question' key (keys here: {', '.join(sorted(obj))})")
    if not isinstance(context, str):
        raise MftError(f"{where}: {ckey!r} must be a string")
    chkey, choices = _first(obj, ("choices", "endings"))
    if chkey is None:
        letters = [c for c in string.ascii_uppercase if c in obj]
        if len(letters) >= 2 and letters == list(string.ascii_uppercase[:len(letters)]):
            chkey, choices = "A..", [obj[c] for c in letters]
    if chkey is None:
        raise MftError(f"{where}: no choices: expected 'choices' or 'endings' (a list) or keys 'A', 'B', ...")
    if isinstance(choices, dict) and "text" in choices:  # ARC's {"text": [...], "label": [...]}
        choices = choices["text"]
    if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) for c in choices):
        raise MftError(f"{where}: {chkey!r} must be a list of at least 2 strings")
    lkey, label = _first(obj, ("label", "answer", "gold"))
    if lkey is None:
        raise MftError(f"{where}: no answer: expected a 'label', 'answer' or 'gold' key")
    return MCItem(context, choices, _label(label, len(choices), where, lkey), where)


def read_mc_items(path: str) -> list[MCItem]:
    if not os.path.isfile(path):
        raise MftError(f"--data {path}: no such file")
    if not path.endswith(".jsonl"):
        raise MftError(f"--data {path}: multiple-choice items must be a .jsonl file (see docs/feature/evaluation.md)")
    items = [parse_mc_item(obj, f"{path}:{n}") for n, obj in _jsonl(path)]
    if not items:
        raise MftError(f"--data {path}: no items")
    return items
