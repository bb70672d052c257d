"""Writes the bundled image-text instruction set data/vlm/: shapes.jsonl + images/*.png.

Every image is drawn here with numpy and saved with Pillow (no downloads):
one coloured shape (square, disc or triangle) on a light background, 40x40
pixels, at a position and size drawn from a seeded generator. Each record is
a LLaVA / ShareGPT-with-images conversation asking what the picture shows;
a few records hold two images. Written by mft's authors for its tests and
examples; released with mft under its licence (no third-party content).

    python data/vlm/make_shapes.py        # rewrites data/vlm/ byte for byte
"""

from __future__ import annotations

import json
import os

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
SIZE = 40
COLORS = {"red": (220, 30, 30), "green": (30, 170, 40), "blue": (30, 60, 220), "yellow": (230, 210, 20)}
SHAPES = ("square", "disc", "triangle")
QUESTIONS = ("What is in the image?", "Describe the picture.", "What shape and colour do you see?")


def draw(shape: str, color: tuple, rng: np.random.Generator) -> np.ndarray:
    img = np.full((SIZE, SIZE, 3), rng.integers(225, 256), np.uint8)
    r = int(rng.integers(8, 13))
    cy, cx = (int(v) for v in rng.integers(r + 2, SIZE - r - 2, size=2))
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    if shape == "square":
        inside = (abs(yy - cy) <= r) & (abs(xx - cx) <= r)
    elif shape == "disc":
        inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    else:  # triangle, apex up
        inside = (yy >= cy - r) & (yy <= cy + r) & (abs(xx - cx) <= (yy - (cy - r)) / 2)
    img[inside] = color
    return img


def main() -> None:
    rng = np.random.default_rng(20261130)
    os.makedirs(os.path.join(HERE, "images"), exist_ok=True)
    records, n = [], 0
    pairs = [(s, c) for s in SHAPES for c in COLORS]
    for rep in range(3):
        for shape, color in pairs:
            name = f"images/{n:03d}_{color}_{shape}.png"
            Image.fromarray(draw(shape, COLORS[color], rng)).save(os.path.join(HERE, name))
            q = QUESTIONS[(n + rep) % len(QUESTIONS)]
            records.append({"id": f"shape-{n}", "image": name,
                            "conversations": [{"from": "human", "value": f"<image>\n{q}"},
                                              {"from": "gpt", "value": f"A {color} {shape}."}]})
            n += 1
    for k in range(4):  # two images per record
        (s1, c1), (s2, c2) = pairs[k], pairs[-1 - k]
        names = []
        for shape, color in ((s1, c1), (s2, c2)):
            name = f"images/{n:03d}_{color}_{shape}.png"
            Image.fromarray(draw(shape, COLORS[color], rng)).save(os.path.join(HERE, name))
            names.append(name)
            n += 1
        records.append({"id": f"pair-{k}", "images": names,
                        "conversations": [{"from": "human", "value": "<image> and <image>: what are they?"},
                                          {"from": "gpt", "value": f"A {c1} {s1} and a {c2} {s2}."}]})
    with open(os.path.join(HERE, "shapes.jsonl"), "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    print(f"wrote {len(records)} records, {n} images to {HERE}")


if __name__ == "__main__":
    main()
