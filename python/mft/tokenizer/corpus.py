"""Training text from files: `.jsonl` (one JSON object per line, text in a
field) or plain text (every line is one text, line ending kept as HF's
`train_from_files` keeps it)."""

from __future__ import annotations

import json
import os
from typing import Iterable, Iterator

from mft.errors import MftError


def iter_texts(paths: Iterable[str | os.PathLike], field: str = "text") -> Iterator[str]:
    """Every text of `paths` in order: `field` of each line of a .jsonl file, each line of any other file.

    Not UTF-8, malformed JSON or a missing field is an MftError naming file:line."""
    for path in paths:
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise MftError(f"{path}: no such training file")
        if path.endswith(".jsonl"):
            yield from _iter_jsonl(path, field)
        else:
            yield from _iter_lines(path)


def _iter_lines(path: str) -> Iterator[str]:
    try:
        with open(path, encoding="utf-8", newline="") as f:
            yield from f
    except UnicodeDecodeError as e:
        raise MftError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def _iter_jsonl(path: str, field: str) -> Iterator[str]:
    with open(path, encoding="utf-8", errors="strict") as f:
        line_no = 0
        while True:
            try:
                line = f.readline()
            except UnicodeDecodeError as e:
                raise MftError(f"{path}:{line_no + 1}: not UTF-8 ({e.reason})") from None
            if not line:
                return
            line_no += 1
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise MftError(f"{path}:{line_no}: invalid JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(obj, dict) or field not in obj:
                raise MftError(f"{path}:{line_no}: no {field!r} field (use --field to pick another)")
            text = obj[field]
            if not isinstance(text, str):
                raise MftError(f"{path}:{line_no}: field {field!r} is {type(text).__name__}, expected a string")
            yield text
