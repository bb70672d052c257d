"""Runs every documentation block marked runnable, so a page whose command breaks fails CI.

A fenced ```bash or ```python block directly preceded by the line
`<!-- runnable -->` in README.md, CONTRIBUTING.md or docs/**/*.md is run from
one scratch folder holding symlinks to the repository's `configs/`, `data/` and `examples/`,
with the venv's `bin/` first on PATH: docs/quick_start.md first (it makes the
tokenizer, dataset and 4-step run under runs/quick/ that the other pages use),
then the other pages in path order, each page's blocks in page order. Bash
blocks run under `bash -euo pipefail`, Python blocks with this interpreter.
Keep the set small: every `mft` process pays the MindSpore import.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MARKER = "<!-- runnable -->"
FIRST = os.path.join("docs", "quick_start.md")


def runnable_blocks(path: str) -> list[tuple[int, str, str]]:
    """(line, language, code) of each block marked runnable in `path`."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        if lines[i].strip() == MARKER:
            fence = lines[i + 1].strip() if i + 1 < len(lines) else ""
            m = re.match(r"^```(\w+)$", fence)
            if not m:
                raise AssertionError(f"{path}:{i + 1}: {MARKER} must be followed directly by a ```bash or ```python fence")
            lang = m.group(1)
            if lang not in ("bash", "python"):
                raise AssertionError(f"{path}:{i + 2}: runnable blocks are bash or python, not {lang}")
            end = i + 2
            while end < len(lines) and lines[end].strip() != "```":
                end += 1
            blocks.append((i + 3, lang, "\n".join(lines[i + 2:end]) + "\n"))
            i = end
        i += 1
    return blocks


def pages() -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(os.path.join(REPO, "docs")):
        dirnames.sort()
        out += [os.path.relpath(os.path.join(dirpath, n), REPO) for n in sorted(filenames) if n.endswith(".md")]
    out = sorted(out) + ["README.md", "CONTRIBUTING.md"]
    return [p for p in out if os.path.exists(os.path.join(REPO, p)) and runnable_blocks(os.path.join(REPO, p))]


def run_block(workdir: str, page: str, line: int, lang: str, code: str) -> None:
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    cmd = ["bash", "-euo", "pipefail", "-c", code] if lang == "bash" else [sys.executable, "-c", code]
    r = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, (
        f"{page}:{line}: the {lang} block failed (exit {r.returncode}):\n{code}\n"
        f"--- stdout (tail)\n{r.stdout[-3000:]}\n--- stderr (tail)\n{r.stderr[-3000:]}"
    )


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A scratch folder after docs/quick_start.md's blocks ran in it."""
    d = str(tmp_path_factory.mktemp("docs-runnable"))
    for name in ("configs", "data", "examples"):
        os.symlink(os.path.join(REPO, name), os.path.join(d, name))
    blocks = runnable_blocks(os.path.join(REPO, FIRST))
    assert len(blocks) >= 4, f"{FIRST} lost its runnable blocks"
    for line, lang, code in blocks:
        run_block(d, FIRST, line, lang, code)
    return d


def test_quick_start_made_a_run(workdir):
    run = os.path.join(workdir, "runs", "quick", "train")
    with open(os.path.join(run, "checkpoints", "latest"), encoding="utf-8") as f:
        assert f.read().strip() == "step_00000004"
    with open(os.path.join(run, "metrics.jsonl"), encoding="utf-8") as f:
        assert len(f.read().splitlines()) == 4


@pytest.mark.parametrize("page", [p for p in pages() if p != FIRST])
def test_page_blocks_run(workdir, page):
    for line, lang, code in runnable_blocks(os.path.join(REPO, page)):
        run_block(workdir, page, line, lang, code)
