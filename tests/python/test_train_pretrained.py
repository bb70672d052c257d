"""`model.pretrained: DIR` continues training from a Hugging Face folder: the
first step's loss is the cross-entropy of transformers' own logits for the
same tokens (tests/fixtures/hf/llama/reference.npz), computed here in numpy."""

from __future__ import annotations

import os

import numpy as np
import yaml

from mft.config import load_config
from mft.data.indexed import IndexedDatasetBuilder
from mft.monitor.metrics import read_metrics
from mft.tokenizer import Tokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, "..", "fixtures", "hf", "llama")
CORPUS = os.path.join(HERE, "..", "..", "data", "kjv", "kjv.jsonl")


def numpy_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    z = logits.astype(np.float64)
    z = z - z.max(-1, keepdims=True)
    log_probs = z - np.log(np.exp(z).sum(-1, keepdims=True))
    return float(-np.take_along_axis(log_probs, labels[:, None], -1).mean())


def test_first_step_loss_is_the_cross_entropy_of_transformers_logits(tmp_path):
    ref = np.load(os.path.join(FIXTURE, "reference.npz"))
    ids = ref["input_ids"][0]  # one 24-token row: one document, one training sample of seq_len 23
    expected = numpy_cross_entropy(ref["logits"][0][:-1], ids[1:])

    # The trainer needs a tokenizer no larger than the model's vocabulary (512); the data are the fixture's ids.
    src = tmp_path / "slice.jsonl"
    with open(CORPUS, encoding="utf-8") as f, open(src, "w", encoding="utf-8") as out:
        for _, line in zip(range(20), f):
            out.write(line)
    tok_path = str(tmp_path / "tokenizer.json")
    Tokenizer.train([str(src)], vocab_size=300).save(tok_path)
    prefix = str(tmp_path / "fixture_ids")
    with IndexedDatasetBuilder(prefix, vocab_size=512) as builder:
        builder.add_document(ids.astype(np.int64))

    out_dir = tmp_path / "run"
    recipe = {
        "run": {"output_dir": str(out_dir), "seed": 1},
        "tokenizer": {"path": tok_path},
        "data": {"prefix": prefix, "seq_len": int(ids.shape[0]) - 1},
        "model": {"pretrained": FIXTURE},
        "train": {"steps": 2, "micro_batch_size": 1, "optimizer": {"lr": 1e-3}, "lr_schedule": {"name": "constant"}},
        "monitor": {"progress_bar": False, "tensorboard": False, "mfu": False},
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    from mft.training.trainer import train

    train(load_config(str(path)), echo=lambda *_: None)
    metrics = read_metrics(str(out_dir / "metrics.jsonl"))
    assert abs(metrics[0]["loss"] - expected) <= 1e-5 * expected, (metrics[0]["loss"], expected)
    assert metrics[1]["loss"] < metrics[0]["loss"]  # it trains on: the same sample again, after one update
