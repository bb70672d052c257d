"""Batch surfaces of mft.tokenizer: truncation/padding, numpy outputs, and
fork safety (MindSpore dataset workers fork after the parent tokenized)."""

from __future__ import annotations

import json
import multiprocessing as mp
import os

import numpy as np
import pytest

from mft.errors import MftError
from mft.tokenizer import Tokenizer

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(REPO, "tests", "fixtures", "tokenizers")


def load(name):
    with open(os.path.join(FIXTURES, f"{name}.cases.json"), encoding="utf-8") as f:
        doc = json.load(f)
    return doc, Tokenizer.from_file(os.path.join(FIXTURES, f"{name}.json"))


@pytest.fixture(scope="module")
def llama2():
    return load("llama2_style")


def test_padding_and_truncation_keep_template_tokens(llama2):
    doc, tok = llama2
    texts = [c["text"] for c in doc["cases"] if c["text"]][:40]
    full = [c["ids"] for c in doc["cases"] if c["text"]][:40]
    bos = tok.bos_id
    batch = tok.encode_batch(texts, max_length=8, padding="max_length", pad_id=0)
    assert batch.input_ids.shape == (40, 8) and batch.input_ids.dtype == np.int32
    for row, mask, n, ids in zip(batch.input_ids, batch.attention_mask, batch.lengths, full):
        want = ids[:8]  # BOS + the first 7 text tokens
        assert n == len(want) and row[:n].tolist() == want and row[0] == bos
        assert mask.tolist() == [1] * n + [0] * (8 - n)
        assert (row[n:] == 0).all()
    longest = tok.encode_batch(texts[:3], padding=True, pad_id=7, padding_side="left")
    width = max(len(i) for i in full[:3])
    assert longest.input_ids.shape == (3, width)
    for row, ids in zip(longest.input_ids, full[:3]):
        assert row[width - len(ids):].tolist() == ids and (row[: width - len(ids)] == 7).all()


def test_truncation_without_padding_and_bad_arguments(llama2):
    doc, tok = llama2
    text = doc["cases"][-1]["text"]
    out = tok.encode_batch([text, "a"], max_length=3)
    assert out.lengths.tolist() == [min(3, len(tok.encode(text))), len(tok.encode("a"))]
    _, bos_eos = load("prefix_space_template")  # "<s> $A </s>": two template tokens
    with pytest.raises(MftError, match="cannot hold the 2 tokens"):
        bos_eos.encode_batch(["x"], max_length=1, padding=True)
    row = bos_eos.encode_batch(["hello world and more words"], max_length=4).input_ids[0].tolist()
    assert row[0] == bos_eos.bos_id and row[-1] == bos_eos.eos_id and len(row) == 4
    with pytest.raises(MftError, match="needs max_length"):
        tok.encode_batch(["x"], padding="max_length")
    with pytest.raises(MftError, match="padding must be"):
        tok.encode_batch(["x"], padding="both")


def test_numpy_outputs(llama2):
    doc, tok = llama2
    case = doc["cases"][20]
    arr = tok.encode(case["text"], as_numpy=True)
    assert arr.dtype == np.uint32 and arr.tolist() == case["ids"]
    assert tok.decode(arr) == case["decoded"]


def test_byte_fallback_for_unseen_chars(llama2):
    _, tok = llama2
    text = "\U0001F99C"  # a parrot emoji: not in the small alphabet
    ids = tok.encode(text, add_special_tokens=False)
    pieces = [tok.id_to_token(i) for i in ids]
    assert "<0xF0>" in pieces and tok.decode(ids) == text


def _encode_in_child(path, texts, queue):
    tok = Tokenizer.from_file(path)
    queue.put(tok.encode_batch(texts))


def test_fork_after_use_does_not_deadlock():
    path = os.path.join(FIXTURES, "gpt2_style.json")
    tok = Tokenizer.from_file(path)
    texts = ["hello world, this is a fork test"] * 64
    want = tok.encode_batch(texts)  # starts the parent's thread pool
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_encode_in_child, args=(path, texts, queue))
    child.start()
    got = queue.get(timeout=60)
    child.join(timeout=60)
    assert child.exitcode == 0 and got == want
