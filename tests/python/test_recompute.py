"""Recompute: every layer, only the first N (`train.recompute_layers`), or selective (attention core, SwiGLU).
Recomputing changes what is kept for the backward, never the numbers: losses
and grad norms are bit-identical to a run that keeps every activation."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mft.config import load_config
from mft.errors import MftError
from mft.monitor.metrics import read_metrics
from mft.plan import make_plan
from test_train import REPO, corpus, run_train, write_recipe  # noqa: F401  (corpus is a fixture)


def metrics_of(tmp_path, corpus, name, *overrides):
    out = tmp_path / name
    run_train(write_recipe(tmp_path, corpus, out, steps=3), *overrides)
    return [(m["loss"], m["grad_norm"]) for m in read_metrics(str(out / "metrics.jsonl"))]


def test_full_and_first_n_layer_recompute_give_bit_identical_losses(tmp_path, corpus):
    none = metrics_of(tmp_path, corpus, "none")
    assert metrics_of(tmp_path, corpus, "full", "train.recompute=full") == none
    assert metrics_of(tmp_path, corpus, "first1", "train.recompute=full", "train.recompute_layers=1") == none
    assert metrics_of(tmp_path, corpus, "selective", "train.recompute=selective") == none


def test_selective_marks_only_the_attention_core_and_the_swiglu_activation():
    from mft.models.common.attention import AttentionCore
    from mft.models.common.mlp import SwiGLU
    from mft.training.memory_modes import selective_cells

    from mft.models.llama.config import LlamaConfig
    from mft.models.llama.model import LlamaForCausalLM

    model = LlamaForCausalLM(LlamaConfig(vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=4, num_key_value_heads=2))
    cells = selective_cells(model.model.layers[0])
    assert sorted(type(c).__name__ for c in cells) == ["AttentionCore", "SwiGLU"]
    assert all(isinstance(c, (AttentionCore, SwiGLU)) and not c.trainable_params() for c in cells)


def test_old_boolean_recompute_is_a_config_error_naming_the_new_values(tmp_path, corpus):
    out = tmp_path / "old"
    with pytest.raises(MftError, match=r"train\.recompute.*none \| full \| selective.*write full instead of true"):
        run_train(write_recipe(tmp_path, corpus, out), "train.recompute=true")
    assert not out.exists()


def test_activation_offload_is_refused_on_cpu(tmp_path, corpus):
    out = tmp_path / "offload"
    with pytest.raises(MftError, match=r"train\.offload_activations.*host and device memory are one"):
        run_train(write_recipe(tmp_path, corpus, out), "train.offload_activations=true")
    assert not out.exists()


@pytest.mark.parametrize("overrides, message", [
    (["train.recompute_layers=1"], "train.recompute is none"),
    (["train.recompute=full", "train.recompute_layers=-1"], "must be >= 0"),
    (["train.recompute=full", "train.recompute_layers=3"], "the model has 2 layers"),
])
def test_bad_recompute_layers_name_the_key(tmp_path, corpus, overrides, message):
    out = tmp_path / "bad"
    with pytest.raises(MftError, match=rf"train\.recompute_layers.*{message}"):
        run_train(write_recipe(tmp_path, corpus, out), *overrides)
    assert not out.exists()


def test_plan_activations_shrink_with_each_recomputed_layer():
    recipe = f"{REPO}/configs/tiny/demo.yaml"

    def activations(*overrides):
        return make_plan(load_config(recipe, ["model.vocab_size=4096", *overrides]))["memory"]["per_device"]["activations"]

    none, first2, full = (activations(), activations("train.recompute=full", "train.recompute_layers=2"),
                          activations("train.recompute=full"))
    assert none > first2 > full


def test_mft_plan_cli_prints_the_recompute_choice():
    out = subprocess.run([sys.executable, "-m", "mft", "plan", f"{REPO}/configs/tiny/demo.yaml", "--set", "model.vocab_size=4096",
                          "--set", "train.recompute=full", "--set", "train.recompute_layers=2"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "recompute first 2 layers" in out.stdout


def test_plan_selective_drops_the_repeated_kv_and_silu_but_not_the_composed_scores():
    """What benches/memory.py measured (demo shape, CPU): selective saves 29 MB fused and 21 MB composed, so the
    composed core's scores and probabilities stay alive; the plan counts them under selective too."""
    recipe = f"{REPO}/configs/tiny/demo.yaml"

    def activations(*overrides):
        plan = make_plan(load_config(recipe, ["model.vocab_size=4096", "train.micro_batch_size=4", *overrides]))
        return plan["memory"]["per_device"]["activations"]

    for attention in ("model.fused_attention=true", "model.fused_attention=false"):
        none, selective, full = (activations(attention, f"train.recompute={m}") for m in ("none", "selective", "full"))
        assert none > selective > full, attention
    scores = activations("model.fused_attention=false") - activations("model.fused_attention=true")
    assert scores > 0
    assert activations("model.fused_attention=false", "train.recompute=selective") - activations(
        "model.fused_attention=true", "train.recompute=selective") == scores
