"""finetune.distill: KL(teacher || student) on soft targets mixed with CE on the labels.

The teacher is the tiny Hugging Face Llama fixture (tests/fixtures/hf/llama, vocabulary 512); the
student a smaller Llama trained from scratch on masked Alpaca records with a 512-token BPE."""

from __future__ import annotations

import json
import os
import shutil

import mindspore as ms
import numpy as np
import pytest
import yaml

from mft.config import load_config
from mft.errors import MftError
from mft.monitor.metrics import read_metrics
from mft.tokenizer import Tokenizer

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CORPUS = os.path.join(REPO, "data", "kjv", "kjv.jsonl")
TEACHER = os.path.join(REPO, "tests", "fixtures", "hf", "llama")
ms.set_device("CPU")


@pytest.fixture(scope="module")
def sft(tmp_path_factory):
    from mft.data.sft import preprocess_sft

    root = tmp_path_factory.mktemp("distill")
    records, texts = [], []
    with open(CORPUS, encoding="utf-8") as f:
        for _, line in zip(range(3), f):
            chapter = json.loads(line)
            texts.append(chapter["text"])
            for verse in chapter["text"].splitlines()[:12]:
                num, _, words = verse.partition(" ")
                records.append({"instruction": f"Quote {chapter['id']}:{num}.", "output": words})
    tok = Tokenizer.train(texts + [json.dumps(r) for r in records], vocab_size=500, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    tok.save(str(root / "tokenizer.json"))
    data = root / "sft.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    preprocess_sft([str(data)], Tokenizer.from_file(str(root / "tokenizer.json")), str(root / "sft"), chat_template="chatml")
    return {"tokenizer": str(root / "tokenizer.json"), "prefix": str(root / "sft"), "root": root}


def recipe(tmp_path, sft, name, teacher=TEACHER, **distill):
    r = {
        "run": {"output_dir": str(tmp_path / name), "seed": 5},
        "tokenizer": {"path": sft["tokenizer"]},
        "data": {"prefix": sft["prefix"], "seq_len": 48},
        "model": {"hidden_size": 32, "intermediate_size": 64, "num_layers": 1, "num_heads": 4, "num_kv_heads": 2,
                  "max_position_embeddings": 64, "vocab_size": 512},
        "train": {"steps": 16, "micro_batch_size": 4, "optimizer": {"lr": 1e-2}, "lr_schedule": {"warmup_steps": 2}},
        "finetune": {"distill": {"teacher": teacher, "temperature": 2.0, "alpha": 0.3, **distill}},
        "checkpoint": {"every_steps": 0},
        "monitor": {"progress_bar": False, "tensorboard": False, "log_every": 1},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(r))
    return load_config(str(path))


def _log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def reference(student_logits, teacher_logits, labels, t, alpha):
    """alpha * T^2 * mean KL(p_t || p_s) + (1 - alpha) * mean CE over labels != -100, in float64."""
    s = student_logits.reshape(-1, student_logits.shape[-1]).astype(np.float64)
    te = teacher_logits.reshape(-1, teacher_logits.shape[-1]).astype(np.float64)
    y = labels.reshape(-1)
    keep = y != -100
    ce = -_log_softmax(s)[np.arange(len(y)), np.maximum(y, 0)][keep].mean()
    lpt, lps = _log_softmax(te / t), _log_softmax(s / t)
    kl = (np.exp(lpt) * (lpt - lps)).sum(-1)[keep].mean()
    return alpha * t * t * kl + (1 - alpha) * ce, kl, ce


@pytest.fixture(scope="module")
def run(sft, tmp_path_factory):
    """A 16-step distillation run of a h32 x 1 layer student from scratch (teacher: the h64 x 2 fixture)."""
    from mft.training.trainer import train

    tmp = tmp_path_factory.mktemp("run")
    cfg = recipe(tmp, sft, "run")
    return cfg, train(cfg, echo=lambda *_: None)


def test_short_run_loss_falls_and_saves_only_the_student(run):
    _, summary = run
    losses = [m["loss"] for m in read_metrics(os.path.join(summary["output_dir"], "metrics.jsonl"))]
    assert len(losses) == 16
    assert np.mean(losses[-3:]) < losses[0] - 0.5, losses
    with open(os.path.join(summary["checkpoint"], "model.safetensors"), "rb") as f:
        header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
    assert header and not any(k.startswith("teacher") for k in header)
    assert header["model.embed_tokens.weight"]["shape"] == [512, 32]  # the student's, not the teacher's 64


def test_loss_equals_numpy_on_one_batch(sft, run):
    """DistillLoss (the cell the train step differentiates) on the trained student and the teacher equals
    numpy's alpha*T^2*KL + (1-alpha)*CE over the batch's target tokens."""
    from mft.data.epoch_samples import EpochSamples
    from mft.data.indexed import IndexedDataset
    from mft.finetune.distill import DistillLoss, load_teacher
    from mft.finetune.train_setup import inputs_labels, with_loss_mask
    from mft.models import AutoModelForCausalLM

    cfg, summary = run
    student = AutoModelForCausalLM.from_pretrained(summary["checkpoint"])
    teacher = load_teacher(cfg, student)
    assert all(p.name.startswith("teacher.") and not p.requires_grad for p in teacher.get_parameters())
    indexed = IndexedDataset(sft["prefix"])
    inputs, labels = inputs_labels(with_loss_mask(cfg, indexed, EpochSamples(indexed, 48, seed=5)).rank_batch(0, 1, 4))
    assert 0 < (labels != -100).mean() < 1  # masked: prompts are not targets
    x, y = ms.Tensor(inputs[0]), ms.Tensor(labels[0])
    got = float(DistillLoss(student, teacher, 2.0, 0.3)(x, y).asnumpy())
    want, kl, ce = reference(student(x).asnumpy(), teacher(x).asnumpy(), labels[0], 2.0, 0.3)
    assert kl > 1e-3 and ce > 1.0  # both terms are present
    assert got == pytest.approx(want, rel=1e-5), (got, want)


def test_vocabulary_mismatch_names_both_sizes(sft, tmp_path):
    from mft.training.trainer import train

    other = tmp_path / "teacher600"
    other.mkdir()
    with open(os.path.join(TEACHER, "config.json"), encoding="utf-8") as f:
        config = json.load(f)
    config["vocab_size"] = 600
    (other / "config.json").write_text(json.dumps(config))
    shutil.copy(os.path.join(TEACHER, "model.safetensors"), other / "model.safetensors")
    cfg = recipe(tmp_path, sft, "bad", teacher=str(other))
    with pytest.raises(MftError, match=r"finetune\.distill\.teacher .* 600 tokens .* has 512"):
        train(cfg, echo=lambda *_: None)
    assert not os.path.exists(tmp_path / "bad")  # refused before anything was written
    with pytest.raises(MftError, match=r"finetune\.distill\.alpha must be in \[0, 1\]"):
        train(recipe(tmp_path, sft, "alpha", alpha=1.5), echo=lambda *_: None)
