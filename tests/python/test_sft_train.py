"""`mft train` fine-tuning: SFT data with a loss mask, full and LoRA, from a pretrained folder."""

from __future__ import annotations

import json
import os

import mindspore as ms
import numpy as np
import pytest
import yaml

from mft.config import load_config
from mft.data.sft import preprocess_sft
from mft.monitor.metrics import read_metrics
from mft.tokenizer import Tokenizer

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CORPUS = os.path.join(REPO, "data", "kjv", "kjv.jsonl")
ms.set_device("CPU")  # before any kernel runs, as the trainer's own set_device needs

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


@pytest.fixture(scope="module")
def sft(tmp_path_factory):
    """A 400-token BPE with ChatML specials and Alpaca records "Quote Ge 1:3." -> the verse."""
    root = tmp_path_factory.mktemp("sft")
    records, texts = [], []
    with open(CORPUS, encoding="utf-8") as f:
        for _, line in zip(range(3), f):
            chapter = json.loads(line)
            texts.append(chapter["text"])
            for verse in chapter["text"].splitlines()[:12]:
                num, _, words = verse.partition(" ")
                records.append({"instruction": f"Quote {chapter['id']}:{num}.", "output": words})
    tok = Tokenizer.train(texts + [json.dumps(r) for r in records], vocab_size=400, special_tokens=SPECIALS)
    tok_path = str(root / "tokenizer.json")
    tok.save(tok_path)
    data = root / "sft.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    stats = preprocess_sft([str(data)], Tokenizer.from_file(tok_path), str(root / "sft"), chat_template="chatml")
    assert stats.conversations == len(records) and 0 < stats.trained_tokens < stats.tokens
    return {"tokenizer": tok_path, "prefix": str(root / "sft"), "root": root}


def recipe(tmp_path, sft, name, **sections):
    r = {
        "run": {"output_dir": str(tmp_path / name), "seed": 3},
        "tokenizer": {"path": sft["tokenizer"]},
        "data": {"prefix": sft["prefix"], "seq_len": 48},
        "model": {"hidden_size": 32, "intermediate_size": 64, "num_layers": 2, "num_heads": 4, "num_kv_heads": 2, "max_position_embeddings": 64},
        "train": {"steps": 25, "micro_batch_size": 4, "optimizer": {"lr": 1e-2}, "lr_schedule": {"warmup_steps": 2}},
        "checkpoint": {"every_steps": 0},
        "monitor": {"progress_bar": False, "tensorboard": False},
    }
    for key, value in sections.items():
        r.setdefault(key, {}).update(value)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(r))
    return load_config(str(path))


def test_masked_labels(sft):
    from mft.data.epoch_samples import EpochSamples
    from mft.data.indexed import IndexedDataset
    from mft.finetune.train_setup import MaskedSamples, inputs_labels, with_loss_mask

    cfg = load_config_dict(sft)
    indexed = IndexedDataset(sft["prefix"])
    stream = with_loss_mask(cfg, indexed, EpochSamples(indexed, 48, seed=3))
    assert isinstance(stream, MaskedSamples)
    tokens, mask = stream.rank_batch(0, 1, 4)
    inputs, labels = inputs_labels((tokens, mask))
    assert np.array_equal(inputs, tokens[..., :-1])
    kept = labels != -100
    assert np.array_equal(labels[kept], tokens[..., 1:][kept]) and 0 < kept.mean() < 1
    assert np.array_equal(kept, mask[..., 1:] == 1)
    tok = Tokenizer.from_file(sft["tokenizer"])
    im_start = tok.token_to_id("<|im_start|>")
    assert not np.any(labels == im_start)  # headers are never targets; replies and their <|im_end|> are
    assert np.any(labels == tok.token_to_id("<|im_end|>"))


def load_config_dict(sft):
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        from pathlib import Path

        return recipe(Path(d), sft, "x")


@pytest.fixture(scope="module")
def full_run(sft, tmp_path_factory):
    from mft.training.trainer import train

    tmp = tmp_path_factory.mktemp("full")
    summary = train(recipe(tmp, sft, "full"), echo=lambda *_: None)
    return summary


def test_full_sft_loss_falls(full_run):
    metrics = read_metrics(os.path.join(full_run["output_dir"], "metrics.jsonl"))
    first, last = metrics[0]["loss"], np.mean([m["loss"] for m in metrics[-3:]])
    assert last < first - 1.0, (first, last)


def test_masked_validation(sft, tmp_path):
    """With data.split, val_loss is the masked loss on the held-out conversations."""
    from mft.data.epoch_samples import EpochSamples
    from mft.data.indexed import IndexedDataset
    from mft.data.split import split_documents
    from mft.finetune.train_setup import MaskedSamples, inputs_labels, with_loss_mask
    from mft.models import AutoModelForCausalLM
    from mft.training.trainer import train

    cfg = recipe(tmp_path, sft, "val", data={"split": "80,20,0"}, train={"steps": 2}, monitor={"eval_every": 2, "eval_batches": 1})
    summary = train(cfg, echo=lambda *_: None)
    val = [m for m in read_metrics(os.path.join(summary["output_dir"], "metrics.jsonl")) if "val_loss" in m]
    assert len(val) == 1
    ix = IndexedDataset(sft["prefix"])
    docs = split_documents(len(ix), "80,20,0")["valid"]
    stream = with_loss_mask(cfg, ix, EpochSamples(ix, 48, seed=3, documents=docs))
    assert isinstance(stream, MaskedSamples)
    inputs, labels = inputs_labels(stream.rank_batch(0, 1, 4))
    import mindspore as ms
    from mft.training.loss import causal_lm_loss

    model = AutoModelForCausalLM.from_pretrained(summary["checkpoint"])
    expect = float(causal_lm_loss(model(ms.Tensor(inputs[0])), ms.Tensor(labels[0])).asnumpy())
    unmasked = float(causal_lm_loss(model(ms.Tensor(inputs[0])), ms.Tensor(stream.tokens.rank_batch(0, 1, 4)[0][:, 1:])).asnumpy())
    assert abs(val[0]["val_loss"] - expect) < 1e-4 and abs(expect - unmasked) > 1e-3


def masked_loss(model, sft, cfg, samples=32):
    """The model's masked loss on the first training samples (fixed batch)."""
    import mindspore as ms

    from mft.data.epoch_samples import EpochSamples
    from mft.data.indexed import IndexedDataset
    from mft.finetune.train_setup import inputs_labels, with_loss_mask
    from mft.training.loss import causal_lm_loss

    ix = IndexedDataset(sft["prefix"])
    inputs, labels = inputs_labels(with_loss_mask(cfg, ix, EpochSamples(ix, cfg.data.seq_len, seed=cfg.run.seed)).rank_batch(0, 1, samples))
    return float(causal_lm_loss(model(ms.Tensor(inputs[0])), ms.Tensor(labels[0])).asnumpy())


def test_lora_sft_from_pretrained(sft, full_run, tmp_path):
    from mft.finetune.lora import lora_layers
    from mft.models import AutoModelForCausalLM
    from mft.training.trainer import train
    from mft.weights.safetensors import load_file

    base = full_run["checkpoint"]
    cfg = recipe(tmp_path, sft, "lora", model={"pretrained": base}, finetune={"method": "lora", "lora": {"r": 8, "alpha": 16}},
                 train={"steps": 30, "optimizer": {"lr": 1e-2}})
    summary = train(cfg, echo=lambda *_: None)
    ckpt = summary["checkpoint"]
    # the checkpoint holds the (unchanged) base weights and the adapter in PEFT's layout
    before, after = load_file(os.path.join(base, "model.safetensors")), load_file(os.path.join(ckpt, "model.safetensors"))
    assert before.keys() == after.keys() and all(before[k].tobytes() == after[k].tobytes() for k in before)
    cfgj = json.load(open(os.path.join(ckpt, "adapter_config.json")))
    assert cfgj["peft_type"] == "LORA" and cfgj["r"] == 8 and cfgj["lora_alpha"] == 16 and cfgj["base_model_name_or_path"] == base
    adapter = load_file(os.path.join(ckpt, "adapter_model.safetensors"))
    assert len(adapter) == 2 * 7 * 2 and all(k.startswith("base_model.model.model.layers.") for k in adapter)
    assert all(np.abs(v).max() > 0 for k, v in adapter.items() if k.endswith("lora_B.weight"))
    # optimizer state only for adapters
    opt = load_file(os.path.join(ckpt, "optimizer.safetensors"))
    moments = [k for k in opt if k.startswith("exp_avg")]
    assert moments and all(".lora_A." in k or ".lora_B." in k for k in moments)
    # the adapter, applied at load, lowers the masked loss on the training samples
    tuned = AutoModelForCausalLM.from_pretrained(ckpt, adapter=ckpt)
    assert len(lora_layers(tuned)) == 14
    base_loss, tuned_loss = masked_loss(AutoModelForCausalLM.from_pretrained(base), sft, cfg), masked_loss(tuned, sft, cfg)
    assert tuned_loss < base_loss - 0.02, (base_loss, tuned_loss)


def test_lora_resume(sft, full_run, tmp_path):
    """Resuming a LoRA run loads the adapter and its optimizer state from the checkpoint."""
    from mft.training.trainer import train
    from mft.weights.safetensors import load_file

    base = full_run["checkpoint"]
    sections = dict(model={"pretrained": base}, finetune={"method": "lora", "lora": {"r": 2, "alpha": 4, "target_modules": ["q_proj"]}})
    straight = train(recipe(tmp_path, sft, "straight", train={"steps": 4}, **sections), echo=lambda *_: None)
    train(recipe(tmp_path, sft, "resumed", train={"steps": 2}, **sections), echo=lambda *_: None)
    resumed = train(recipe(tmp_path, sft, "resumed", train={"steps": 4}, checkpoint={"resume": "auto"}, **sections), echo=lambda *_: None)
    a = load_file(os.path.join(straight["checkpoint"], "adapter_model.safetensors"))
    b = load_file(os.path.join(resumed["checkpoint"], "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6)


def test_reload_adapter(full_run, tmp_path):
    """nan_action=rollback's adapter restore: a checkpoint's adapter replaces the live values."""
    import mindspore as ms

    from mft.finetune.lora import LoraSettings, adapter_state_dict, apply_lora, lora_layers, save_adapter
    from mft.finetune.train_setup import reload_adapter
    from mft.models import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(full_run["checkpoint"])
    reload_adapter(model, str(tmp_path))  # no LoRA: nothing to do, no files needed
    apply_lora(model, LoraSettings(r=2, alpha=2, target_modules=["o_proj"]), seed=5)
    save_adapter(model, str(tmp_path))
    saved = adapter_state_dict(model)
    for cell in lora_layers(model).values():
        cell.lora_A.weight.set_data(ms.Tensor(np.full(cell.lora_A.weight.shape, np.nan, np.float32)))
    reload_adapter(model, str(tmp_path))
    now = adapter_state_dict(model)
    assert all(np.array_equal(saved[k], now[k]) for k in saved)
