"""Bad input through the real `mft` CLI: one line naming the problem, exit 2, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CORPUS = os.path.join(REPO, "data", "kjv", "kjv.jsonl")


def mft(*args, cwd=None):
    proc = subprocess.run([sys.executable, "-m", "mft", *args], capture_output=True, text=True, cwd=cwd)
    return proc.returncode, proc.stdout, proc.stderr


def assert_one_line_error(rc, err, *needles):
    assert rc == 2, err
    lines = [l for l in err.strip().splitlines() if "WARNING" not in l and not l.startswith("[")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    root = tmp_path_factory.mktemp("good")
    rc, _, err = mft("tokenizer", "train", "--input", CORPUS, "--vocab-size", "300", "--output", str(root / "tok.json"))
    assert rc == 0, err
    return root


def recipe(path, **sections):
    import yaml

    base = {"run": {"output_dir": str(path.parent / "out")}, "tokenizer": {"path": "tok.json"}, "data": {"prefix": "d"}}
    base.update(sections)
    path.write_text(yaml.safe_dump(base))
    return str(path)


def test_missing_config(tmp_path):
    rc, _, err = mft("train", str(tmp_path / "absent.yaml"))
    assert_one_line_error(rc, err, "absent.yaml", "not found")


def test_unreadable_config(tmp_path):
    path = tmp_path / "locked.yaml"
    path.write_text("run: {}\n")
    os.chmod(path, 0)
    if os.access(path, os.R_OK):  # root reads anything: use a directory instead
        path = tmp_path / "dir.yaml"
        path.mkdir()
    rc, _, err = mft("train", str(path))
    assert_one_line_error(rc, err, str(path.name), "cannot read config")


def test_unknown_key_and_wrong_type(tmp_path):
    rc, _, err = mft("train", recipe(tmp_path / "c.yaml", model={"hidden_sise": 3}))
    assert_one_line_error(rc, err, "c.yaml", "model.hidden_sise", "did you mean 'model.hidden_size'")
    rc, _, err = mft("train", recipe(tmp_path / "d.yaml", train={"steps": "ten"}))
    assert_one_line_error(rc, err, "d.yaml", "train.steps", "must be an integer")


def test_missing_data_path(tmp_path, good):
    cfg = recipe(tmp_path / "c.yaml", tokenizer={"path": str(good / "tok.json")}, data={"prefix": str(tmp_path / "nodata")})
    rc, _, err = mft("train", cfg)
    assert_one_line_error(rc, err, "nodata")
    assert not (tmp_path / "out").exists()


def test_corrupt_tokenizer_json(tmp_path):
    bad = tmp_path / "tok.json"
    bad.write_text('{"model": {"type": "BPE", "vocab": ')
    rc, _, err = mft("tokenizer", "encode", "--tokenizer", str(bad), "--text", "hi")
    assert_one_line_error(rc, err, "tok.json")
    cfg = recipe(tmp_path / "c.yaml", tokenizer={"path": str(bad)})
    rc, _, err = mft("train", cfg)
    assert_one_line_error(rc, err, "tok.json")


def test_empty_corpus(tmp_path, good):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    rc, _, err = mft("data", "preprocess", "--input", str(empty), "--tokenizer", str(good / "tok.json"), "--output-prefix", str(tmp_path / "p"))
    assert_one_line_error(rc, err, "empty", "empty.jsonl")
    assert not (tmp_path / "p.bin").exists() and not (tmp_path / "p.idx").exists()
    rc, _, err = mft("tokenizer", "train", "--input", str(empty), "--vocab-size", "300", "--output", str(tmp_path / "t.json"))
    assert rc != 0 and "Traceback" not in err and "empty.jsonl" in err


def test_checkpoint_folder_without_weights(tmp_path, good):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": 300, "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2}')
    (folder / "tokenizer.json").write_text((good / "tok.json").read_text())
    rc, _, err = mft("generate", "--model", str(folder), "--prompt", "hi")
    assert_one_line_error(rc, err, "ckpt")
