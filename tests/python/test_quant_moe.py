"""Quantized MoE experts (mft.quant.grouped): `mft quantize` on the Qwen3-MoE and Mixtral fixtures quantizes
every expert in the folder's layout, routers stay float (listed in `ignore`), and the loaded model is close to
fp32, equals its dequantized twin, agrees with fp32 on greedy tokens and serves through the paged engine."""

import json
import os

import numpy as np
import pytest

import mindspore as ms

from mft.models import AutoModelForCausalLM
from mft.quant.loader import dequantized_state_dict
from mft.quant.schemes import QuantOptions
from mft.quant.writer import quantize_folder
from mft.weights.safetensors import load_file

ms.set_device("CPU")
ms.runtime.launch_blocking()
FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures", "hf")
PROMPT = [5, 17, 33, 2, 99, 140, 7, 61]


@pytest.fixture(scope="module")
def fp32():
    return {f: AutoModelForCausalLM.from_pretrained(os.path.join(FIXTURES, f)) for f in ("qwen3_moe", "mixtral")}


def _quantize(tmp_path, family, scheme, group=32):
    out = tmp_path / f"{family}-{scheme}"
    summary = quantize_folder(os.path.join(FIXTURES, family), str(out), QuantOptions(scheme=scheme, group_size=group),
                              log=lambda *_: None)
    return out, summary


def _twin(folder):
    raw, tensors = dequantized_state_dict(str(folder))
    model = AutoModelForCausalLM.from_config(raw)
    model.load_hf_state_dict(tensors, "twin")
    return model


@pytest.mark.parametrize("family,scheme,experts", [("qwen3_moe", "w8a16", 2 * 8 * 3), ("qwen3_moe", "w4a16", 2 * 8 * 3),
                                                   ("mixtral", "w8a8", 2 * 4 * 3)])
def test_moe_experts_are_quantized_and_the_model_stays_close(tmp_path, fp32, family, scheme, experts):
    out, summary = _quantize(tmp_path, family, scheme)
    assert summary["expert_linears"] == experts
    tensors = load_file(str(out / "model.safetensors"))
    cfg = json.loads((out / "config.json").read_text())["quantization_config"]
    if scheme == "w4a16":
        assert tensors["model.layers.0.mlp.experts.3.down_proj.qweight"].dtype == np.int32
        assert "model.layers.0.mlp.experts.3.down_proj.weight" not in tensors
    else:
        name = "model.layers.1.block_sparse_moe.experts.2.w2" if family == "mixtral" else "model.layers.1.mlp.experts.2.down_proj"
        assert tensors[f"{name}.weight"].dtype == np.int8 and tensors[f"{name}.weight_scale"].shape[1] == 1
        router = "model.layers.0.block_sparse_moe.gate" if family == "mixtral" else "model.layers.0.mlp.gate"
        assert router in cfg["ignore"] and tensors[f"{router}.weight"].dtype == np.float32
    model = AutoModelForCausalLM.from_pretrained(str(out))
    stacks = [c for _, c in model.cells_and_names() if type(c).__name__ == "QuantGroupedLinear"]
    assert len(stacks) == 6 and all(c.quant_w.dtype == ms.int8 for c in stacks)
    ids = ms.Tensor(np.asarray([PROMPT], np.int32))
    got = model(ids).asnumpy()
    ref = fp32[family](ids).asnumpy()
    # Close to fp32 (int4 on these random-weight fixtures moves logits more) and equal to the dequantized twin.
    bound = {"w8a16": 0.02, "w8a8": 0.05, "w4a16": 0.25}[scheme]
    assert np.abs(got - ref).max() < bound * np.abs(ref).max()
    if scheme != "w8a8":  # (the twin has float activations)
        np.testing.assert_allclose(got, _twin(out)(ids).asnumpy(), rtol=1e-4, atol=1e-4)


def test_quantized_moe_serves_the_fp32_greedy_tokens(tmp_path, fp32):
    """The w8a16 Qwen3-MoE through the paged engine (compiled decode) gives fp32's greedy continuation."""
    from mft.serving.engine import LLMEngine
    from mft.serving.sampling import SamplingOptions

    out, _ = _quantize(tmp_path, "qwen3_moe", "w8a16")
    model = AutoModelForCausalLM.from_pretrained(str(out))
    engine = LLMEngine(model, block_size=8, max_num_seqs=2, max_model_len=48)
    prompts = [PROMPT, [301, 45, 9]]
    requests = engine.generate(prompts, SamplingOptions(max_tokens=6, temperature=0.0, ignore_eos=True))
    for prompt, request in zip(prompts, requests):
        want = fp32["qwen3_moe"].generate([prompt], max_new_tokens=6, jit=False)[0, len(prompt):].tolist()
        assert request.seqs[0].output == want
