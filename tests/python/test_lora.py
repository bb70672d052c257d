"""LoRA (mft.finetune.lora): forward vs numpy, PEFT file layout, round trip, merge."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import mindspore as ms
from mindspore import nn

ms.set_device("CPU")  # before any kernel runs (a later in-process `mft train` sets it again)

from mft.errors import MftError
from mft.finetune.lora import (LoraSettings, adapter_state_dict, apply_lora, lora_layers, matches, merge_lora, read_adapter,
                               save_adapter)
from mft.models import AutoModelForCausalLM
from mft.parallel.layers import ColumnParallelLinear, RowParallelLinear

LLAMA = os.path.join(os.path.dirname(__file__), "..", "fixtures", "hf", "llama")
IDS = ms.Tensor(np.array([[1, 5, 9, 33, 2, 100, 7]], np.int32))


class Block(nn.Cell):
    def __init__(self):
        super().__init__()
        self.q_proj = ColumnParallelLinear(6, 10, bias=True)
        self.o_proj = RowParallelLinear(10, 6)

    def construct(self, x):
        return self.o_proj(self.q_proj(x))


def _randomize_b(model, seed=1, scale=0.2):
    rng = np.random.default_rng(seed)
    for cell in lora_layers(model).values():
        shape = cell.lora_B.weight.shape
        cell.lora_B.weight.set_data(ms.Tensor((rng.standard_normal(shape) * scale).astype(np.float32)))


def test_forward_matches_numpy_and_init():
    block = Block()
    rng = np.random.default_rng(0)
    block.q_proj.bias.set_data(ms.Tensor(rng.standard_normal(10).astype(np.float32)))
    paths = apply_lora(block, LoraSettings(r=3, alpha=12, target_modules=["q_proj"]), hf_paths=False)
    assert paths == ["q_proj"]
    q = block.q_proj
    assert isinstance(q, ColumnParallelLinear) and not hasattr(block.o_proj, "lora_A")
    a = q.lora_A.weight.asnumpy()
    assert a.shape == (3, 6) and np.abs(a).max() <= 1 / np.sqrt(6) and np.abs(a).max() > 0.5 / np.sqrt(6)
    assert not q.lora_B.weight.asnumpy().any()
    assert sorted(p.name for p in block.trainable_params()) == ["q_proj.lora_A.weight", "q_proj.lora_B.weight"]
    _randomize_b(block)
    x = rng.standard_normal((2, 4, 6)).astype(np.float32)
    w, bias, b = q.weight.asnumpy(), q.bias.asnumpy(), q.lora_B.weight.asnumpy()
    expect_q = x @ w.T + bias + (12 / 3) * (x @ a.T) @ b.T
    np.testing.assert_allclose(q(ms.Tensor(x)).asnumpy(), expect_q, rtol=1e-5, atol=1e-5)
    expect = expect_q @ block.o_proj.weight.asnumpy().T
    np.testing.assert_allclose(block(ms.Tensor(x)).asnumpy(), expect, rtol=1e-5, atol=1e-5)
    # mixed precision: the low-rank path computes in compute_dtype too
    q.compute_dtype = ms.float16
    y16 = q(ms.Tensor(x))
    assert y16.dtype == ms.float16
    np.testing.assert_allclose(y16.asnumpy().astype(np.float32), expect_q, rtol=2e-2, atol=2e-2)


def test_grads_only_for_adapters_under_jit():
    block = Block()
    apply_lora(block, LoraSettings(r=2, alpha=2, target_modules="q_proj|o_proj"), hf_paths=False)
    _randomize_b(block)
    params = block.trainable_params()
    assert len(params) == 4
    class Loss(nn.Cell):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def construct(self, x):
            return self.net(x).sum()

    grad_fn = ms.value_and_grad(Loss(block), None, params)

    @ms.jit
    def step(x):
        return grad_fn(x)

    x = ms.Tensor(np.ones((3, 6), np.float32))
    loss, grads = step(x)
    assert all(g.shape == p.shape for g, p in zip(grads, params))
    assert all(np.abs(g.asnumpy()).sum() > 0 for g in grads)


def test_target_matching_rules():
    assert matches("model.layers.0.self_attn.q_proj", ["q_proj"])
    assert not matches("model.layers.0.self_attn.qq_proj", ["q_proj"])
    assert matches("model.layers.0.mlp.up_proj", r".*\.(up|down)_proj")
    assert not matches("model.layers.0.mlp.up_proj", r"up_proj")  # a regex must match the whole path
    with pytest.raises(MftError, match="match no linear layer"):
        apply_lora(Block(), LoraSettings(target_modules=["k_proj"]), hf_paths=False)
    with pytest.raises(MftError, match="r must be a positive integer"):
        LoraSettings(r=0)
    with pytest.raises(MftError, match="does not compile"):
        LoraSettings(target_modules="(")


@pytest.fixture(scope="module")
def adapted(tmp_path_factory):
    """(base logits, adapter logits, adapter folder)."""
    base = AutoModelForCausalLM.from_pretrained(LLAMA)
    base_logits = base(IDS).asnumpy()
    paths = apply_lora(base, LoraSettings(r=4, alpha=8, target_modules=["q_proj", "v_proj", "down_proj"]), seed=3)
    assert len(paths) == 6 and "model.layers.1.mlp.down_proj" in paths
    np.testing.assert_array_equal(base(IDS).asnumpy(), base_logits)  # B = 0: no change
    _randomize_b(base)
    logits = base(IDS).asnumpy()
    assert np.abs(logits - base_logits).max() > 1e-3
    folder = str(tmp_path_factory.mktemp("adapter"))
    save_adapter(base, folder, base_model=LLAMA)
    return base_logits, logits, folder, base


def test_peft_layout(adapted):
    _, _, folder, model = adapted
    assert sorted(os.listdir(folder)) == ["adapter_config.json", "adapter_model.safetensors"]
    cfg = json.load(open(os.path.join(folder, "adapter_config.json")))
    assert cfg["peft_type"] == "LORA" and cfg["r"] == 4 and cfg["lora_alpha"] == 8 and cfg["task_type"] == "CAUSAL_LM"
    assert cfg["target_modules"] == ["q_proj", "v_proj", "down_proj"] and cfg["base_model_name_or_path"] == LLAMA
    from safetensors.numpy import load_file  # the reference reader

    tensors = load_file(os.path.join(folder, "adapter_model.safetensors"))
    assert len(tensors) == 12
    assert tensors["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"].shape == (4, 64)
    assert tensors["base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight"].shape == (32, 4)
    assert tensors["base_model.model.model.layers.1.mlp.down_proj.lora_A.weight"].shape == (4, 128)
    # the base model's own HF state dict carries no adapter tensors
    assert not any("lora" in k for k in model.hf_state_dict())


def test_round_trip_from_pretrained(adapted):
    _, logits, folder, model = adapted
    loaded = AutoModelForCausalLM.from_pretrained(LLAMA, adapter=folder)
    np.testing.assert_array_equal(loaded(IDS).asnumpy(), logits)
    saved = adapter_state_dict(model)
    again = adapter_state_dict(loaded)
    assert saved.keys() == again.keys() and all(np.array_equal(saved[k], again[k]) for k in saved)


def test_merge_cli_equals_adapter(adapted, tmp_path):
    base_logits, logits, folder, _ = adapted
    out = str(tmp_path / "merged")
    r = subprocess.run([sys.executable, "-m", "mft", "weights", "merge-lora", LLAMA, folder, out], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "merged 6 LoRA modules" in r.stdout
    merged = AutoModelForCausalLM.from_pretrained(out)
    np.testing.assert_allclose(merged(IDS).asnumpy(), logits, atol=1e-5, rtol=0)
    # in-memory merge: same outputs, B zeroed
    m2 = AutoModelForCausalLM.from_pretrained(LLAMA, adapter=folder)
    merge_lora(m2)
    np.testing.assert_allclose(m2(IDS).asnumpy(), logits, atol=1e-5, rtol=0)
    assert all(not c.lora_B.weight.asnumpy().any() for c in lora_layers(m2).values())


def test_zero_b_merge_keeps_base_bytes(tmp_path):
    model = AutoModelForCausalLM.from_pretrained(LLAMA)
    apply_lora(model, LoraSettings(r=2, alpha=4, target_modules=["q_proj"]))
    save_adapter(model, str(tmp_path / "a"))
    from mft.cli.merge_lora_cmd import merge_lora_folder
    from mft.weights.safetensors import load_file

    merge_lora_folder(LLAMA, str(tmp_path / "a"), str(tmp_path / "m"))
    before = load_file(os.path.join(LLAMA, "model.safetensors"))
    after = load_file(str(tmp_path / "m" / "model.safetensors"))
    assert before.keys() == after.keys() and all(before[k].tobytes() == after[k].tobytes() for k in before)


def test_bad_adapters(adapted, tmp_path):
    _, _, folder, _ = adapted
    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    cfg = json.load(open(bad / "adapter_config.json"))
    json.dump({**cfg, "use_dora": True}, open(bad / "adapter_config.json", "w"))
    with pytest.raises(MftError, match="use_dora=True"):
        read_adapter(str(bad))
    json.dump({**cfg, "r": 8}, open(bad / "adapter_config.json", "w"))
    with pytest.raises(MftError, match=r"lora_A.weight has shape \(4, 64\), expected \(8, 64\)"):
        AutoModelForCausalLM.from_pretrained(LLAMA, adapter=str(bad))
    json.dump({**cfg, "target_modules": ["q_proj"]}, open(bad / "adapter_config.json", "w"))
    with pytest.raises(MftError, match="unexpected base_model.model.model.layers.0.self_attn.v_proj"):
        AutoModelForCausalLM.from_pretrained(LLAMA, adapter=str(bad))
    with pytest.raises(MftError, match="no adapter_config.json"):
        read_adapter(str(tmp_path))
