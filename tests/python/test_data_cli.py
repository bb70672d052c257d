"""`mft data preprocess|inspect` and `mft weights inspect`, run on real files
with a real (small, freshly trained) tokenizer."""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys

import numpy as np
import pytest

from mft.cli import data_cmd, weights_cmd
from mft.data.indexed import IndexedDataset
from mft.data.preprocess import preprocess
from mft.errors import MftError
from mft.tokenizer import Tokenizer
from mft.weights.safetensors import read_header

KJV = os.path.join(os.path.dirname(__file__), "..", "..", "data", "kjv", "kjv.jsonl")
LLAMA = os.path.join(os.path.dirname(__file__), "..", "fixtures", "hf", "llama")


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """Runs our subcommands the way `mft.cli.main.main` does (MftError -> one line, exit 2)."""
    parser = argparse.ArgumentParser(prog="mft")
    sub = parser.add_subparsers(dest="command")
    data_cmd.add_parser(sub)
    weights_cmd.add_parser(sub)
    args = parser.parse_args(argv)
    try:
        rc = int(args.func(args) or 0)
    except MftError as e:
        print(f"mft {args.command}: error: {e}", file=sys.stderr)
        rc = 2
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(scope="module")
def kjv_texts() -> list[str]:
    with open(KJV, encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f][:40]


@pytest.fixture(scope="module")
def tokenizer_path(tmp_path_factory, kjv_texts) -> str:
    tok = Tokenizer.train(kjv_texts, vocab_size=600, special_tokens=["<|endoftext|>"])
    path = str(tmp_path_factory.mktemp("tok") / "tokenizer.json")
    tok.save(path)
    return path


def write_jsonl(path, rows) -> str:
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(r if isinstance(r, str) else json.dumps(r))
            f.write("\n")
    return str(path)


def test_preprocess_jsonl_and_txt_in_order_with_eod(tmp_path, capsys, tokenizer_path, kjv_texts):
    jsonl = write_jsonl(tmp_path / "a.jsonl", [{"text": t, "id": i} for i, t in enumerate(kjv_texts[:10])] + [""])
    txt = tmp_path / "b.txt"
    txt.write_text("first line document\n\n   \nsecond one\n", encoding="utf-8")
    prefix = str(tmp_path / "out")
    rc, out, _ = run_cli(
        ["data", "preprocess", "--input", jsonl, str(txt), "--tokenizer", tokenizer_path, "--output-prefix", prefix, "--workers", "2"],
        capsys,
    )
    assert rc == 0
    tok = Tokenizer.from_file(tokenizer_path)
    expected_docs = kjv_texts[:10] + ["first line document", "second one"]
    ds = IndexedDataset(prefix)
    assert len(ds) == 12 and ds.dtype == np.uint16
    for i, text in enumerate(expected_docs):
        assert ds[i].tolist() == tok.encode(text) + [tok.eos_id]
    assert "12 documents" in out and f"{ds.num_tokens} tokens" in out and "MB/s" in out


def test_stand_in_tokenizer_without_flat_api_gives_the_same_files(tmp_path, tokenizer_path, kjv_texts):
    """The generic `encode_batch` path (any tokenizer object) matches the fast path."""
    real = Tokenizer.from_file(tokenizer_path)

    class PlainTokenizer:
        eos_id = real.eos_id
        vocab_size = real.vocab_size

        def encode_batch(self, texts):
            return [real.encode(t) for t in texts]

    jsonl = write_jsonl(tmp_path / "c.jsonl", [{"text": t} for t in kjv_texts[:15]])
    a = preprocess([jsonl], real, str(tmp_path / "fast"), chunk_docs=4, workers=3)
    b = preprocess([jsonl], PlainTokenizer(), str(tmp_path / "plain"), chunk_docs=7)
    assert (a.documents, a.tokens) == (b.documents, b.tokens) == (15, a.tokens)
    for ext in (".bin", ".idx"):
        assert (tmp_path / f"fast{ext}").read_bytes() == (tmp_path / f"plain{ext}").read_bytes()


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"text": "ok"', "malformed JSON"),
        ('{"body": "no text field"}', "missing field 'text'"),
        ('{"text": 5}', "field 'text' is int"),
        ('["a list"]', "expected a JSON object"),
    ],
)
def test_bad_lines_are_fatal_with_file_and_line(tmp_path, capsys, tokenizer_path, line, message):
    jsonl = write_jsonl(tmp_path / "bad.jsonl", [{"text": "good"}, "", line, {"text": "also good"}])
    prefix = str(tmp_path / "out")
    args = ["data", "preprocess", "--input", jsonl, "--tokenizer", tokenizer_path, "--output-prefix", prefix]
    rc, _, err = run_cli(args, capsys)
    assert rc == 2
    assert f"bad.jsonl:3: {message}" in err and "--skip-bad" in err
    assert sorted(os.listdir(tmp_path)) == ["bad.jsonl"]  # nothing half-written

    rc, out, _ = run_cli(args + ["--skip-bad"], capsys)
    assert rc == 0 and "2 documents" in out and "skipped 1 bad documents" in out and "bad.jsonl:3" in out
    assert len(IndexedDataset(prefix)) == 2


def test_custom_field_and_errors(tmp_path, capsys, tokenizer_path):
    jsonl = write_jsonl(tmp_path / "f.jsonl", [{"content": "hello world"}])
    rc, out, _ = run_cli(
        ["data", "preprocess", "--input", jsonl, "--field", "content", "--tokenizer", tokenizer_path, "--output-prefix", str(tmp_path / "f")],
        capsys,
    )
    assert rc == 0 and "1 documents" in out

    empty = write_jsonl(tmp_path / "empty.jsonl", ["", "  "])
    rc, _, err = run_cli(
        ["data", "preprocess", "--input", empty, "--tokenizer", tokenizer_path, "--output-prefix", str(tmp_path / "e")], capsys
    )
    assert rc == 2 and "empty corpus" in err
    assert not glob.glob(str(tmp_path / "e.*"))

    other = tmp_path / "x.csv"
    other.write_text("a,b\n")
    rc, _, err = run_cli(
        ["data", "preprocess", "--input", str(other), "--tokenizer", tokenizer_path, "--output-prefix", str(tmp_path / "o")], capsys
    )
    assert rc == 2 and "x.csv: unsupported input type" in err


def test_inspect_prints_counts_histogram_and_samples(tmp_path, capsys, tokenizer_path, kjv_texts):
    jsonl = write_jsonl(tmp_path / "k.jsonl", [{"text": t} for t in kjv_texts[:20]])
    prefix = str(tmp_path / "k")
    assert run_cli(["data", "preprocess", "--input", jsonl, "--tokenizer", tokenizer_path, "--output-prefix", prefix], capsys)[0] == 0
    ds = IndexedDataset(prefix)
    rc, out, _ = run_cli(["data", "inspect", prefix, "--tokenizer", tokenizer_path], capsys)
    assert rc == 0
    assert "documents 20" in out and f"tokens    {ds.num_tokens}" in out
    assert "length histogram" in out
    counts = [int(line.split()[1]) for line in out.splitlines() if line.startswith("  ") and "-" in line.split()[0]]
    assert sum(counts) == 20
    assert "document 0" in out and kjv_texts[0][:40] in out and "document 2" not in out

    rc, _, err = run_cli(["data", "inspect", str(tmp_path / "missing")], capsys)
    assert rc == 2 and "missing.idx" in err


def test_weights_inspect_table_and_json(capsys):
    path = os.path.join(LLAMA, "model.safetensors")
    header, _, _ = read_header(path)
    total_bytes = sum(e["data_offsets"][1] - e["data_offsets"][0] for e in header.values())
    rc, out, _ = run_cli(["weights", "inspect", LLAMA], capsys)
    assert rc == 0
    assert "model.embed_tokens.weight" in out and "512x64" in out
    assert f"total: {len(header)} tensors" in out and f"{total_bytes:,d} bytes" in out

    rc, out, _ = run_cli(["weights", "inspect", path, "--json"], capsys)
    info = json.loads(out)
    assert info["total"]["tensors"] == len(header) and info["total"]["bytes"] == total_bytes
    assert info["files"][0]["metadata"] == {"format": "pt"}
    params = sum(int(np.prod(e["shape"])) for e in header.values())
    assert info["total"]["parameters"] == params == info["by_dtype"]["F32"]["parameters"]


def test_weights_inspect_errors(tmp_path, capsys):
    rc, _, err = run_cli(["weights", "inspect", str(tmp_path)], capsys)
    assert rc == 2 and "no .safetensors files" in err
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x01")
    rc, _, err = run_cli(["weights", "inspect", str(bad)], capsys)
    assert rc == 2 and "bad.safetensors" in err
