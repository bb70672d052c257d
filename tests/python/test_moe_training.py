"""MoE training in the jitted train step: aux losses, expert-bias update, MTP, checked loading."""

import os

import numpy as np
import pytest

import mindspore as ms

from mft.errors import MftError
from mft.models import AutoModelForCausalLM
from mft.models.deepseek_v3 import DeepseekV3ForCausalLM
from mft.training.optimizer import AdamW
from mft.training.train_step import TrainStep
from mft.weights.safetensors import load_file

ms.set_device("CPU")
FIXTURE = os.path.join(os.path.dirname(__file__), "..", "fixtures", "hf", "deepseek_v3")
RATE = 0.01


@pytest.fixture(scope="module")
def trained():
    """The DeepSeek-V3 fixture with one MTP module, trained two jitted steps."""
    model = AutoModelForCausalLM.from_pretrained(
        FIXTURE, mtp_layers=1, mtp_loss_coef=0.3, moe_aux_loss_coef=0.01, moe_z_loss_coef=0.001,
        moe_bias_update_rate=RATE, moe_capacity_factor=1.5, moe_aux_loss_type="sequence",
    )
    before = {p.name: p.asnumpy().copy() for p in model.get_parameters()}
    step = TrainStep(model, AdamW(model.trainable_params(), weight_decay=0.0), clip_grad_norm=1.0, accum_steps=1)
    ids = np.load(os.path.join(FIXTURE, "reference.npz"))["input_ids"].astype(np.int32)
    inputs, labels = ids[None, :, :-1], ids[None, :, 1:]
    first = step.step(inputs, labels, 1e-3)
    bias_after_first = model.model.layers[1].mlp.gate.e_score_correction_bias.asnumpy().copy()
    stats_first = dict(step.moe_stats)
    second = step.step(inputs, labels, 1e-3)
    return model, before, first, second, stats_first, bias_after_first, step


def test_moe_step_reports_lm_loss_aux_loss_and_loads(trained):
    model, _, first, second, stats, _, step = trained
    assert np.isfinite(first[0]) and second[0] < first[0]
    assert stats["aux_loss"] > 0
    load = stats["expert_load"]
    assert load.shape == (1, 8)  # one MoE layer (first_k_dense_replace=1) in the main model, 8 experts
    assert load.sum() == 2 * 23 * 2  # every token routed to num_experts_per_tok experts


def test_expert_bias_moves_by_rate_towards_balance(trained):
    _, before, _, _, stats, bias, _ = trained
    name = "model.layers.1.mlp.gate.e_score_correction_bias"
    load = stats["expert_load"][0]
    want = before[name] + RATE * np.sign(load.mean() - load)
    np.testing.assert_allclose(bias, want, atol=1e-7)


def test_mtp_module_is_trained_and_not_loaded_from_a_checkpoint_without_it(trained):
    model, before, *_ = trained
    assert len(model.mtp) == 1
    after = {p.name: p.asnumpy() for p in model.get_parameters()}
    assert not np.allclose(after["mtp.0.eh_proj.weight"], before["mtp.0.eh_proj.weight"])
    assert not np.allclose(after["mtp.0.layer.mlp.experts.gate_proj.weight"], before["mtp.0.layer.mlp.experts.gate_proj.weight"])
    names = model.hf_layout()
    assert "model.layers.2.eh_proj.weight" in names and "model.layers.2.shared_head.norm.weight" in names
    assert "model.layers.2.mlp.experts.7.down_proj.weight" in names


def test_mtp_tensors_round_trip_and_plain_inference_skips_them(trained, tmp_path):
    model = trained[0]
    model.save_pretrained(str(tmp_path))
    assert "model.layers.2.enorm.weight" in load_file(str(tmp_path / "model.safetensors"))
    again = AutoModelForCausalLM.from_pretrained(str(tmp_path), mtp_layers=1)
    np.testing.assert_array_equal(again.mtp[0].eh_proj.weight.asnumpy(), model.mtp[0].eh_proj.weight.asnumpy())
    plain = AutoModelForCausalLM.from_pretrained(str(tmp_path))  # MTP tensors skipped
    assert isinstance(plain, DeepseekV3ForCausalLM) and len(plain.mtp) == 0


def test_partial_mtp_and_wrong_expert_shape_name_tensor_and_shapes(tmp_path):
    tensors = load_file(os.path.join(FIXTURE, "model.safetensors"))
    model = AutoModelForCausalLM.from_config(AutoModelForCausalLM.from_pretrained(FIXTURE).config, mtp_layers=1)
    with pytest.raises(MftError, match=r"missing tensor model\.layers\.2\.hnorm\.weight \(expected shape \(64,\)\)"):
        model.load_hf_state_dict({**tensors, "model.layers.2.enorm.weight": np.ones(64, np.float32)}, "ckpt")
    bad = dict(tensors)
    bad["model.layers.1.mlp.experts.3.up_proj.weight"] = np.zeros((16, 64), np.float32)
    with pytest.raises(MftError, match=r"model\.layers\.1\.mlp\.experts\.3\.up_proj\.weight has shape \(16, 64\) but the model expects \(32, 64\)"):
        model.load_hf_state_dict(bad, "ckpt")



def test_sorted_dispatch_in_a_jitted_step_starts_at_transformers_loss_and_learns():
    """fused_moe (permute + grouped-matmul aot kernels, only routed rows) inside the compiled train step:
    the first loss is transformers' cross-entropy on the fixture (its reference logits), and it falls.
    (Gradients equal the capacity path's: test_moe.py.)"""
    folder = os.path.join(os.path.dirname(FIXTURE), "qwen3_moe")
    ref = np.load(os.path.join(folder, "reference.npz"))
    ids = ref["input_ids"].astype(np.int32)
    logits = ref["logits"][:, :-1].astype(np.float64)
    logp = logits - logits.max(-1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
    want = -np.take_along_axis(logp, ids[:, 1:, None], -1).mean()
    model = AutoModelForCausalLM.from_pretrained(folder, fused_moe=True)
    assert model.model.layers[0].mlp.fused
    step = TrainStep(model, AdamW(model.trainable_params(), weight_decay=0.0), clip_grad_norm=1.0, accum_steps=1)
    losses = [step.step(ids[None, :, :-1], ids[None, :, 1:], 1e-2)[0] for _ in range(3)]
    np.testing.assert_allclose(losses[0], want, rtol=1e-5)
    assert losses[2] < losses[0] - 0.5
