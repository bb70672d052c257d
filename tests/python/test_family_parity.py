"""Every non-llama family: forward logits and greedy tokens against transformers'
(fixture), and a save/load round trip with transformers' names. (llama has its
own, longer file: test_llama_parity.py.)"""

import json
import os

import numpy as np
import pytest

import mindspore as ms

from mft.models import AutoModelForCausalLM
from mft.weights.safetensors import load_file

ms.set_device("CPU")
FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures", "hf")
FAMILIES = ["qwen2", "qwen3", "mixtral", "qwen3_moe", "deepseek_v3"]


@pytest.fixture(scope="module", params=FAMILIES)
def family(request):
    folder = os.path.join(FIXTURES, request.param)
    return request.param, folder, AutoModelForCausalLM.from_pretrained(folder), np.load(os.path.join(folder, "reference.npz"))


def test_logits_match_transformers(family):
    name, _, model, reference = family
    assert model.config.model_type == name
    logits = model(ms.Tensor(reference["input_ids"])).asnumpy()
    assert logits.shape == reference["logits"].shape
    diff = np.abs(logits - reference["logits"]).max()
    assert diff < 1e-4, f"{name}: max |logits - reference| = {diff}"


def test_greedy_with_cache_matches_transformers(family):
    _, _, model, reference = family
    out = model.generate(reference["input_ids"], max_new_tokens=16)
    np.testing.assert_array_equal(out, reference["greedy"])


def test_save_pretrained_writes_transformers_names_and_reloads(family, tmp_path):
    _, folder, model, _ = family
    model.save_pretrained(str(tmp_path))
    theirs = load_file(os.path.join(folder, "model.safetensors"))
    ours = load_file(str(tmp_path / "model.safetensors"))
    assert sorted(ours) == sorted(theirs)
    for name, arr in theirs.items():
        np.testing.assert_array_equal(ours[name], arr, err_msg=name)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert type(model).config_class.from_hf_dict(saved) == model.config


def test_fused_attention_switch_keeps_parity():
    folder = os.path.join(FIXTURES, "qwen3")
    reference = np.load(os.path.join(folder, "reference.npz"))
    fused = AutoModelForCausalLM.from_pretrained(folder, fused_attention=True)
    assert fused.model.layers[0].self_attn.fused_attention
    assert "fused_attention" not in fused.config.to_hf_dict()
    diff = np.abs(fused(ms.Tensor(reference["input_ids"])).asnumpy() - reference["logits"]).max()
    assert diff < 1e-4, f"max |logits - reference| = {diff}"
