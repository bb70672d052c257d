"""LoRA adapters between PEFT and mft, and modules_to_save.

tests/fixtures/peft/llama_lora was saved by PEFT 0.21.2 itself (tools/make_peft_fixtures.py:
get_peft_model on tests/fixtures/hf/llama, r 4 on q_proj/v_proj with random A and B,
modules_to_save [lm_head] with a changed head) with PEFT's logits for fixed ids.
The other direction (PEFT loading an adapter mft saved) needs torch and peft, which CI
does not install: `tools/make_peft_fixtures.py --check DIR OUT.npz` does it by hand.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import mindspore as ms

ms.set_device("CPU")

from mft.errors import MftError
from mft.finetune.lora import LoraSettings, adapter_state_dict, apply_lora, lora_layers, read_adapter, save_adapter
from mft.models import AutoModelForCausalLM

HERE = os.path.dirname(__file__)
LLAMA = os.path.join(HERE, "..", "fixtures", "hf", "llama")
PEFT = os.path.join(HERE, "..", "fixtures", "peft", "llama_lora")


@pytest.fixture(scope="module")
def reference():
    ref = np.load(os.path.join(PEFT, "reference.npz"))
    return ms.Tensor(ref["ids"].astype(np.int32)), ref["logits"]


def test_peft_made_adapter_with_modules_to_save_loads(reference):
    ids, peft_logits = reference
    settings, tensors = read_adapter(PEFT)
    assert settings.modules_to_save == ["lm_head"] and "base_model.model.lm_head.weight" in tensors
    model = AutoModelForCausalLM.from_pretrained(LLAMA, adapter=PEFT)
    assert len(lora_layers(model)) == 4
    np.testing.assert_allclose(model(ids).asnumpy(), peft_logits, atol=1e-4, rtol=0)
    base = AutoModelForCausalLM.from_pretrained(LLAMA)
    assert np.abs(base(ids).asnumpy() - peft_logits).max() > 0.1  # the adapter matters
    # mft writes back the same keys and shapes PEFT wrote
    saved = adapter_state_dict(model)
    assert saved.keys() == tensors.keys()
    assert all(saved[k].shape == tensors[k].shape and np.array_equal(saved[k], tensors[k]) for k in saved)


def test_merge_of_peft_adapter_equals_peft(reference, tmp_path):
    from mft.cli.merge_lora_cmd import merge_lora_folder

    ids, peft_logits = reference
    assert merge_lora_folder(LLAMA, PEFT, str(tmp_path / "m")) == 4
    merged = AutoModelForCausalLM.from_pretrained(str(tmp_path / "m"))
    np.testing.assert_allclose(merged(ids).asnumpy(), peft_logits, atol=1e-4, rtol=0)


def test_modules_to_save_trains_saves_and_round_trips(reference, tmp_path):
    from mindspore import ops

    ids, _ = reference
    model = AutoModelForCausalLM.from_pretrained(LLAMA)
    head_before = model.lm_head.weight.asnumpy().copy()
    apply_lora(model, LoraSettings(r=2, alpha=4, target_modules=["q_proj"], modules_to_save=["lm_head", "model.norm"]))
    names = sorted(p.name for p in model.trainable_params())
    assert "lm_head.weight" in names and "model.norm.weight" in names
    assert not any("input_layernorm" in n or "embed_tokens" in n or n.endswith("q_proj.weight") for n in names)
    assert sum(".lora_" in n for n in names) == 4
    params = model.trainable_params()

    def loss_fn():
        return ops.cross_entropy(model(ids)[0, :-1], ids[0, 1:])

    _, grads = ms.value_and_grad(loss_fn, None, params)()
    grad = dict(zip([p.name for p in params], grads))
    assert np.abs(grad["lm_head.weight"].asnumpy()).max() > 0
    model.lm_head.weight.set_data(ms.Tensor(head_before + 0.05))  # a "trained" head
    logits = model(ids).asnumpy()
    folder = str(tmp_path / "adapter")
    save_adapter(model, folder, base_model=LLAMA)
    cfg = json.load(open(os.path.join(folder, "adapter_config.json")))
    assert cfg["modules_to_save"] == ["lm_head", "model.norm"]
    from safetensors.numpy import load_file  # the reference reader

    tensors = load_file(os.path.join(folder, "adapter_model.safetensors"))
    assert np.array_equal(tensors["base_model.model.lm_head.weight"], head_before + 0.05)
    assert tensors["base_model.model.model.norm.weight"].shape == (64,)
    assert len(tensors) == 6
    loaded = AutoModelForCausalLM.from_pretrained(LLAMA, adapter=folder)
    np.testing.assert_array_equal(loaded(ids).asnumpy(), logits)


def test_modules_to_save_errors():
    model = AutoModelForCausalLM.from_pretrained(LLAMA)
    with pytest.raises(MftError, match="in both target_modules and modules_to_save"):
        apply_lora(model, LoraSettings(r=2, alpha=4, target_modules=["q_proj"], modules_to_save=["q_proj"]))
    with pytest.raises(MftError, match=r"modules_to_save \['nope'\] match no module"):
        apply_lora(AutoModelForCausalLM.from_pretrained(LLAMA), LoraSettings(r=2, target_modules=["q_proj"], modules_to_save=["nope"]))
    with pytest.raises(MftError, match="must be a list of module names"):
        LoraSettings(modules_to_save="lm_head")
    from mft.models.llama.config import LlamaConfig
    from mft.models.llama.model import LlamaForCausalLM

    tied = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                        num_attention_heads=2, num_key_value_heads=2, tie_word_embeddings=True))
    with pytest.raises(MftError, match="ties lm_head to model.embed_tokens"):
        apply_lora(tied, LoraSettings(r=2, target_modules=["q_proj"], modules_to_save=["lm_head"]))
