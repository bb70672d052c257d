"""`mft tokenizer train|encode` end to end on real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from mft.cli.main import main

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_train_then_encode_and_decode(tmp_path, capsys):
    corpus = tmp_path / "c.jsonl"
    with open(os.path.join(REPO, "data", "kjv", "kjv.jsonl"), encoding="utf-8") as src:
        corpus.write_text("".join(src.readlines()[:20]), encoding="utf-8")
    out = tmp_path / "tok.json"
    assert main(["tokenizer", "train", "--input", str(corpus), "--vocab-size", "600", "--output", str(out)]) == 0
    assert "vocab size 600" in capsys.readouterr().out
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert doc["added_tokens"][0]["content"] == "<|endoftext|>" and doc["model"]["vocab"]["<|endoftext|>"] == 0

    text = "And God said, Let there be light.<|endoftext|>"
    assert main(["tokenizer", "encode", "--tokenizer", str(out), "--text", text]) == 0
    ids = capsys.readouterr().out.split()
    assert ids[-1] == "0"
    assert main(["tokenizer", "encode", "--tokenizer", str(out), "--decode", "--text", ",".join(ids)]) == 0
    assert capsys.readouterr().out == "And God said, Let there be light.\n"
    assert main(["tokenizer", "encode", "--tokenizer", str(out), "--decode", "--no-special-tokens", "--text", " ".join(ids)]) == 0
    assert capsys.readouterr().out == text + "\n"


def test_user_errors_exit_2_with_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{", encoding="utf-8")
    assert main(["tokenizer", "encode", "--tokenizer", str(bad), "--text", "x"]) == 2
    err = capsys.readouterr().err
    assert "bad.json" in err and "not valid JSON" in err and len(err.strip().splitlines()) == 1
    assert main(["tokenizer", "train", "--input", str(tmp_path / "none.txt"), "--vocab-size", "300",
                 "--output", str(tmp_path / "o.json")]) == 2
    assert "no such training file" in capsys.readouterr().err


def test_help_texts():
    for args in (["tokenizer", "--help"], ["tokenizer", "train", "--help"], ["tokenizer", "encode", "--help"]):
        run = subprocess.run([sys.executable, "-m", "mft", *args], capture_output=True, text=True, cwd=REPO)
        assert run.returncode == 0 and "usage:" in run.stdout
    assert "--vocab-size" in subprocess.run([sys.executable, "-m", "mft", "tokenizer", "train", "--help"],
                                            capture_output=True, text=True).stdout
