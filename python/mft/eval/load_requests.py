"""The request mix of `mft eval --serving`: from a JSONL file or drawn synthetically.

JSONL: one request per line, `prompt` (a string or a list of token ids) or
`messages` (chat), and `max_tokens` (also read as `output_len` or
`max_new_tokens`; default --max-tokens' upper end). Synthetic: prompts of
words drawn from a fixed list (a word is about one token for most
tokenizers; the server's `usage` gives the real count) with lengths and
max_tokens uniform in the given ranges, seeded.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass

from mft.errors import MftError

WORDS = ("in the beginning god created the heaven and the earth and the earth was without form and void "
         "and darkness was upon the face of the deep and the spirit of god moved upon the waters").split()


@dataclass
class LoadRequest:
    prompt: object = None  # str or list of token ids (completions)
    messages: list | None = None  # chat
    max_tokens: int = 16


def parse_range(text: str, option: str) -> tuple[int, int]:
    """'N' or 'LO:HI' -> (lo, hi), both >= 1."""
    try:
        parts = [int(p) for p in str(text).split(":")]
    except ValueError:
        raise MftError(f"{option} {text!r}: expected N or LO:HI (integers)") from None
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or parts[0] < 1 or parts[1] < parts[0]:
        raise MftError(f"{option} {text!r}: expected N or LO:HI with 1 <= LO <= HI")
    return parts[0], parts[1]


def synthetic_requests(n: int, prompt_len: tuple[int, int], max_tokens: tuple[int, int], seed: int) -> list[LoadRequest]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.randint(*prompt_len))]
        out.append(LoadRequest(prompt=" ".join(words), max_tokens=rng.randint(*max_tokens)))
    return out


def read_requests(path: str, default_max_tokens: int) -> list[LoadRequest]:
    out = []
    try:
        f = open(path, encoding="utf-8")
    except OSError as e:
        raise MftError(f"--data {path}: cannot read: {e}") from None
    with f:
        for no, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{no}"
            try:
                rec = json.loads(line)
            except ValueError as e:
                raise MftError(f"{where}: not JSON ({e})") from None
            if not isinstance(rec, dict):
                raise MftError(f"{where}: expected a JSON object")
            prompt, messages = rec.get("prompt"), rec.get("messages")
            if (prompt is None) == (messages is None):
                raise MftError(f"{where}: needs exactly one of 'prompt' or 'messages'")
            if prompt is not None and not (isinstance(prompt, str) and prompt or isinstance(prompt, list) and prompt
                                           and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt)):
                raise MftError(f"{where}: 'prompt' must be a non-empty string or list of token ids")
            if messages is not None and not (isinstance(messages, list) and messages and all(isinstance(m, dict) for m in messages)):
                raise MftError(f"{where}: 'messages' must be a non-empty list of objects")
            key = next((k for k in ("max_tokens", "output_len", "max_new_tokens") if k in rec), None)
            mt = rec[key] if key else default_max_tokens
            if not isinstance(mt, int) or isinstance(mt, bool) or mt < 1:
                raise MftError(f"{where}: '{key}' must be a positive integer, got {mt!r}")
            out.append(LoadRequest(prompt=prompt, messages=messages, max_tokens=mt))
    if not out:
        raise MftError(f"--data {path}: no requests")
    return out
