"""Shipped recipes: every configs/*/*.yaml loads through the strict loader; the 8B SFT/LoRA
recipes are planned by `mft plan`; a tiny SFT recipe trains on the bundled instruction set."""

from __future__ import annotations

import glob
import json
import os

import numpy as np
import pytest

from mft.config import load_config

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
RECIPES = sorted(glob.glob(os.path.join(REPO, "configs", "*", "*.yaml")))
SFT_RECIPES = [p for p in RECIPES if "sft" in os.path.basename(p) or "lora" in os.path.basename(p)]
BIG = [p for p in SFT_RECIPES if "tiny" not in os.path.basename(p) and "_8b_" in os.path.basename(p)]


def test_recipes_found():
    names = {os.path.relpath(p, REPO) for p in SFT_RECIPES}
    for family in ("llama", "qwen3"):
        assert {f"configs/{family}/tiny_sft.yaml", f"configs/{family}/tiny_lora.yaml"} <= names
    assert {"configs/qwen3/qwen3_8b_lora.yaml", "configs/qwen3/qwen3_8b_sft.yaml",
            "configs/llama/llama3_8b_lora.yaml", "configs/llama/llama3_8b_sft.yaml"} <= names


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: os.path.relpath(p, REPO))
def test_every_recipe_loads(path):
    cfg = load_config(path)
    if path in SFT_RECIPES and os.path.basename(os.path.dirname(path)) in ("llama", "qwen3"):  # the text recipes pack
        assert cfg.finetune.packing and cfg.finetune.method == ("lora" if "lora" in path else "full")


@pytest.mark.parametrize("path", BIG, ids=lambda p: os.path.relpath(p, REPO))
def test_real_size_recipes_are_planned(path):
    from mft.plan import make_plan

    plan = make_plan(load_config(path))
    assert 7.5e9 < plan["params"]["total"] < 8.5e9, plan["params"]
    assert plan["layout"]["devices"] >= 8 and not plan["layout"]["problems"]
    assert plan["memory"]["per_device"]["total"] > plan["memory"]["per_device"]["weights"] > 15e9 / plan["layout"]["tp"]  # bf16 weights of 8B over tp


def test_bundled_sft_sample_is_what_the_script_writes(tmp_path):
    from mft.data.sft_sample import main

    main([str(tmp_path)])
    for name in ("kjv_quote.jsonl", "kjv_quote_heldout.jsonl"):
        with open(os.path.join(REPO, "data", "sft", name), encoding="utf-8") as a, open(tmp_path / name, encoding="utf-8") as b:
            assert a.read() == b.read(), name
    train = [json.loads(line) for line in open(tmp_path / "kjv_quote.jsonl", encoding="utf-8")]
    held = [json.loads(line) for line in open(tmp_path / "kjv_quote_heldout.jsonl", encoding="utf-8")]
    assert not {r["instruction"] for r in train} & {r["instruction"] for r in held}
    assert any(r["instruction"].startswith("Quote") for r in held) and any(r["instruction"].startswith("Which") for r in held)


def test_tiny_lora_recipe_trains_on_the_bundled_sample(tmp_path):
    """configs/llama/tiny_lora.yaml (and its base tiny_sft.yaml) on data/sft/kjv_quote.jsonl; only the
    paths of what `make demo` would have made (tokenizer, pre-trained model) and the step count are overridden."""
    import mindspore as ms

    from mft.data.sft import preprocess_sft
    from mft.models import AutoModelForCausalLM
    from mft.models.llama import LlamaConfig
    from mft.monitor.metrics import read_metrics
    from mft.tokenizer import Tokenizer
    from mft.training.trainer import train

    sample = os.path.join(REPO, "data", "sft", "kjv_quote.jsonl")
    texts = [line for line in open(sample, encoding="utf-8")]
    Tokenizer.train(texts, vocab_size=512, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"]).save(
        str(tmp_path / "tokenizer.json"))
    tok = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    stats = preprocess_sft([sample], tok, str(tmp_path / "kjv_quote"), chat_template="chatml")
    assert stats.conversations == len(texts)
    ms.set_seed(0)
    base = AutoModelForCausalLM.from_config(LlamaConfig(vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                                        num_attention_heads=4, num_key_value_heads=2,
                                                        max_position_embeddings=256, tie_word_embeddings=True))
    base.save_pretrained(str(tmp_path / "base"))
    cfg = load_config(os.path.join(REPO, "configs", "llama", "tiny_lora.yaml"), [
        f"tokenizer.path={tmp_path / 'tokenizer.json'}", f"data.prefix={tmp_path / 'kjv_quote'}",
        f"model.pretrained={tmp_path / 'base'}", f"run.output_dir={tmp_path / 'run'}", "train.steps=6",
        "train.lr_schedule.warmup_steps=1", "monitor.log_every=1"])
    summary = train(cfg, echo=lambda *_: None)
    metrics = read_metrics(os.path.join(summary["output_dir"], "metrics.jsonl"))
    assert metrics[-1]["step"] == 6 and all(np.isfinite(m["loss"]) for m in metrics)
    assert metrics[-1]["loss"] < metrics[0]["loss"] - 0.02, [m["loss"] for m in metrics]  # packed rows, LoRA: it learns
    assert os.path.isfile(os.path.join(summary["checkpoint"], "adapter_model.safetensors"))
