"""Builds data/eval/kjv_next_verse.jsonl, the bundled multiple-choice sample for `mft eval --task mc`.

Each item: a verse of the King James Bible (data/kjv/kjv.jsonl) as the
context; the choices are the verse that really follows it and three
distractor verses drawn from other chapters; `label` is the index of the
true one. Chapters, verses, distractors and the order of choices come from
one numpy generator seeded with --seed, so the file is reproducible:

    python tools/make_eval_mc_sample.py            # writes the default file
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def verses(text: str) -> list[str]:
    out = []
    for line in text.split("\n"):
        number, _, verse = line.partition(" ")
        if number.isdigit() and verse.strip():
            out.append(verse.strip())
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--corpus", default=os.path.join(ROOT, "data", "kjv", "kjv.jsonl"))
    p.add_argument("--output", default=os.path.join(ROOT, "data", "eval", "kjv_next_verse.jsonl"))
    p.add_argument("--items", type=int, default=100)
    p.add_argument("--choices", type=int, default=4)
    p.add_argument("--max-chars", type=int, default=160, help="skip verses longer than this (keeps items short)")
    p.add_argument("--seed", type=int, default=15)
    args = p.parse_args()
    with open(args.corpus, encoding="utf-8") as f:
        chapters = [(o["id"], verses(o["text"])) for o in map(json.loads, f)]
    rng = np.random.default_rng(args.seed)
    items, used = [], set()
    while len(items) < args.items:
        c = int(rng.integers(len(chapters)))
        name, vs = chapters[c]
        if len(vs) < 2:
            continue
        v = int(rng.integers(len(vs) - 1))
        context, answer = vs[v], vs[v + 1]
        if (c, v) in used or len(context) > args.max_chars or len(answer) > args.max_chars:
            continue
        distractors = []
        while len(distractors) < args.choices - 1:
            oc = int(rng.integers(len(chapters)))
            if oc == c or not chapters[oc][1]:
                continue
            d = chapters[oc][1][int(rng.integers(len(chapters[oc][1])))]
            if len(d) <= args.max_chars and d not in distractors and d != answer:
                distractors.append(d)
        label = int(rng.integers(args.choices))
        choices = distractors[:label] + [answer] + distractors[label:]
        used.add((c, v))
        items.append({"id": f"{name}:{v + 1}", "context": context, "choices": choices, "label": label})
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as f:
        for item in items:
            f.write(json.dumps(item, ensure_ascii=False) + "\n")
    print(f"{args.output}: {len(items)} items")


if __name__ == "__main__":
    main()
