"""The bundled instruction set: Alpaca records built from the bundled KJV corpus.

`python -m mft.data.sft_sample` rewrites data/sft/kjv_quote.jsonl (train) and
data/sft/kjv_quote_heldout.jsonl (every 9th record, never trained on) from
data/kjv/kjv.jsonl. Two kinds of record per verse of the first CHAPTERS
chapters:
- "Quote Ge 1:3." -> the verse text;
- "Which verse says: \"<its first words>\"?" -> "Ge 1:3" (only when no other verse opens so).
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter

CHAPTERS = 6
HELD_OUT_EVERY = 9  # odd, so both kinds of record are held out
OPENING_WORDS = 6


def records(corpus_path: str, chapters: int = CHAPTERS) -> list[dict]:
    """Per verse: the quote record, and the which-verse record when its opening words are unique."""
    verses = []
    with open(corpus_path, encoding="utf-8") as f:
        for _, line in zip(range(chapters), f):
            chapter = json.loads(line)
            for verse in chapter["text"].splitlines():
                num, _, words = verse.partition(" ")
                verses.append((f"{chapter['id']}:{num}", words, " ".join(words.split()[:OPENING_WORDS])))
    counts = Counter(opening for _, _, opening in verses)
    out = []
    for ref, words, opening in verses:
        out.append({"instruction": f"Quote {ref}.", "output": words})
        if counts[opening] == 1:  # an opening several verses share has no single answer
            out.append({"instruction": f"Which verse says: \"{opening}\"?", "output": ref})
    return out


def split(recs: list[dict]) -> tuple[list[dict], list[dict]]:
    """(train, held out): every HELD_OUT_EVERY-th record is held out."""
    train = [r for i, r in enumerate(recs) if i % HELD_OUT_EVERY != HELD_OUT_EVERY - 1]
    held = [r for i, r in enumerate(recs) if i % HELD_OUT_EVERY == HELD_OUT_EVERY - 1]
    return train, held


def write(path: str, recs: list[dict]) -> None:
    """Writes records as JSONL through a temporary name."""
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for r in recs:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    """Rewrites the bundled train and held-out files (into argv[0] if given, else data/sft/)."""
    repo = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
    argv = sys.argv[1:] if argv is None else argv
    out_dir = argv[0] if argv else os.path.join(repo, "data", "sft")
    os.makedirs(out_dir, exist_ok=True)
    train, held = split(records(os.path.join(repo, "data", "kjv", "kjv.jsonl")))
    write(os.path.join(out_dir, "kjv_quote.jsonl"), train)
    write(os.path.join(out_dir, "kjv_quote_heldout.jsonl"), held)
    print(f"{out_dir}: {len(train)} train, {len(held)} held-out records")
    return 0


if __name__ == "__main__":
    sys.exit(main())
