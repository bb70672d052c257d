"""qwen3: forward logits and greedy tokens against transformers' (fixture), save/load round trip."""

import json
import os

import numpy as np
import pytest

import mindspore as ms

from mft.models import AutoModelForCausalLM
from mft.weights.safetensors import load_file

ms.set_device("CPU")
FIXTURE = os.path.join(os.path.dirname(__file__), "..", "fixtures", "hf", "qwen3")


@pytest.fixture(scope="module")
def reference():
    return np.load(os.path.join(FIXTURE, "reference.npz"))


@pytest.fixture(scope="module")
def model():
    return AutoModelForCausalLM.from_pretrained(FIXTURE)


def test_logits_match_transformers(model, reference):
    assert model.config.model_type == "qwen3"
    logits = model(ms.Tensor(reference["input_ids"])).asnumpy()
    assert logits.shape == reference["logits"].shape
    diff = np.abs(logits - reference["logits"]).max()
    assert diff < 1e-4, f"max |logits - reference| = {diff}"


def test_greedy_with_cache_matches_transformers(model, reference):
    out = model.generate(reference["input_ids"], max_new_tokens=16)
    np.testing.assert_array_equal(out, reference["greedy"])


def test_save_pretrained_writes_transformers_names_and_reloads(model, reference, tmp_path):
    model.save_pretrained(str(tmp_path))
    theirs = load_file(os.path.join(FIXTURE, "model.safetensors"))
    ours = load_file(str(tmp_path / "model.safetensors"))
    assert sorted(ours) == sorted(theirs)
    for name, arr in theirs.items():
        np.testing.assert_array_equal(ours[name], arr, err_msg=name)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert type(model).config_class.from_hf_dict(saved) == model.config


def test_fused_attention_switch_keeps_parity(reference):
    fused = AutoModelForCausalLM.from_pretrained(FIXTURE, fused_attention=True)
    assert fused.model.layers[0].self_attn.fused_attention
    assert "fused_attention" not in fused.config.to_hf_dict()
    diff = np.abs(fused(ms.Tensor(reference["input_ids"])).asnumpy() - reference["logits"]).max()
    assert diff < 1e-4, f"max |logits - reference| = {diff}"
