"""W8A8 (mft quantize --scheme w8a8): the int8 x int8 kernel against the numpy
reference (exact), the aot op against the composed MindSpore reference,
SmoothQuant's folding (the float model's output is unchanged) and its effect on
an activation-outlier layer, a quantized tiny Llama (compressed-tensors layout,
logits and compiled greedy decode against the reference ops), and bad input."""

import json
import os
import shutil

import numpy as np
import pytest

import mindspore as ms

from mft.errors import MftError
from mft.models import AutoModelForCausalLM
from mft.quant import rtn
from mft.quant.loader import parse_config
from mft.quant.schemes import QuantOptions
from mft.quant.smoothquant import apply_smoothing, smoothing_factors
from mft.quant.w8a8 import quantize_per_token, w8a8_matmul_reference
from mft.quant.writer import quantize_folder

ms.set_device("CPU")
HERE = os.path.dirname(__file__)
FIXTURES = os.path.join(HERE, "..", "fixtures", "hf")
KJV = os.path.join(HERE, "..", "..", "data", "kjv", "kjv.jsonl")


# ---- kernel ---------------------------------------------------------------------------

@pytest.mark.parametrize("m,n,k", [(1, 13, 96), (2, 8, 64), (5, 13, 100), (9, 70, 300)])
def test_kernel_equals_the_numpy_reference(m, n, k):
    from mft import _kernels

    rng = np.random.default_rng(m * 100 + k)
    x = rng.standard_normal((m, k)).astype(np.float32)
    x[0] = 0.0  # an all-zero token
    w = rng.integers(-128, 128, size=(n, k)).astype(np.int8)  # the full int8 range (other quantizers use -128)
    s = (0.01 * rng.random(n) + 0.001).astype(np.float32)
    q, xs = _kernels.quantize_rows_int8(x)
    q_ref, xs_ref = quantize_per_token(x)
    assert np.array_equal(q, q_ref) and np.array_equal(xs, xs_ref)
    assert xs[0] == 1.0 and not q[0].any()
    assert np.array_equal(_kernels.int8_gemm_nt(q, w), q.astype(np.int64) @ w.astype(np.int64).T)
    assert np.array_equal(_kernels.w8a8_matmul(x, w, s), w8a8_matmul_reference(x, w, s))
    assert _kernels.w8a8_isa() in ("avx512vnni", "avx2", "scalar")


def test_aot_op_matches_the_mindspore_reference_and_numpy():
    from mft.ops.quant_matmul import quant_matmul_w8a8

    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 80)).astype(np.float32)
    w = rng.integers(-127, 128, size=(24, 80)).astype(np.int8)
    s = (0.01 * rng.random(24) + 0.001).astype(np.float32)
    args = (ms.Tensor(x), ms.Tensor(w), ms.Tensor(s))
    fused, ref = quant_matmul_w8a8(*args), quant_matmul_w8a8(*args, fused=False)
    assert fused.shape == (2, 3, 24)
    np.testing.assert_array_equal(fused.asnumpy().reshape(6, 24), w8a8_matmul_reference(x.reshape(6, 80), w, s))
    np.testing.assert_allclose(fused.asnumpy(), ref.asnumpy(), rtol=1e-5, atol=1e-5)


# ---- SmoothQuant ------------------------------------------------------------------------

def test_smoothing_factor_formula():
    a = np.array([8.0, 0.5, 0.0, 2.0], np.float32)
    w1 = np.array([[0.5, -2.0, 1.0, 0.0]], np.float32)
    w2 = np.array([[-1.0, 0.5, 0.0, 0.0]], np.float32)
    s = smoothing_factors(a, [w1, w2], alpha=0.5)
    # s_j = sqrt(max|x_j| / max|w_j|); a dead channel (no activation or no weight) keeps 1
    np.testing.assert_allclose(s, [np.sqrt(8.0 / 1.0), np.sqrt(0.5 / 2.0), 1.0, 1.0], rtol=1e-6)


def test_smoothing_beats_plain_w8a8_on_a_layer_with_outlier_channels():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((256, 128)).astype(np.float32)
    x[:, [5, 40, 99]] *= 60.0  # a few activation outlier channels, as in real LLMs
    w = (0.05 * rng.standard_normal((64, 128))).astype(np.float32)
    ref = x @ w.T

    def w8a8_error(w_, x_):
        q, sc = rtn.quantize_int8(w_)
        return np.mean((w8a8_matmul_reference(x_, q, sc) - ref) ** 2)

    plain = w8a8_error(w, x)
    s = smoothing_factors(np.abs(x).max(axis=0), [w], alpha=0.5)
    smoothed = w8a8_error(w * s[None, :], x / s[None, :])
    assert smoothed < 0.3 * plain, (smoothed, plain)


# ---- whole model ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    """The HF llama fixture (h64, 2 layers) plus a small BPE tokenizer and calibration text."""
    from mft.tokenizer import Tokenizer

    folder = tmp_path_factory.mktemp("w8a8") / "llama"
    shutil.copytree(os.path.join(FIXTURES, "llama"), folder)
    with open(KJV, encoding="utf-8") as f:
        texts = [json.loads(next(f))["text"] for _ in range(3)]
    Tokenizer.train(texts, vocab_size=400).save(str(folder / "tokenizer.json"))
    calib = folder.parent / "calib.jsonl"
    calib.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts[:2]))
    return folder, calib


@pytest.fixture(scope="module")
def smoothquant_dir(llama_dir, tmp_path_factory):
    src, calib = llama_dir
    out = tmp_path_factory.mktemp("w8a8out") / "sq"
    opts = QuantOptions(scheme="w8a8", method="smoothquant", calib=str(calib), calib_tokens=128, calib_seq_len=64)
    summary = quantize_folder(str(src), str(out), opts, log=lambda *_: None)
    return out, summary


def test_smoothing_keeps_the_float_model_output(llama_dir):
    src, _ = llama_dir
    model = AutoModelForCausalLM.from_pretrained(str(src))
    from mft.quant.targets import quantizable_linears

    names = list(quantizable_linears(model))
    tensors = model.hf_state_dict()
    rng = np.random.default_rng(1)
    act_max = {n: (0.1 + 10 * rng.random(tensors[f"{n}.weight"].shape[1])).astype(np.float32) for n in names}
    factors = apply_smoothing(tensors, names, act_max, alpha=0.8)
    # q/k/v and gate/up (via the norms) and down (via up_proj's rows): 6 of 7 linears per layer; o_proj is not smoothed
    assert sorted(factors) == sorted(n for n in names if not n.endswith("o_proj")) and len(factors) == 12
    assert not np.allclose(tensors["model.layers.0.input_layernorm.weight"], model.hf_state_dict()["model.layers.0.input_layernorm.weight"])
    ids = ms.Tensor(np.arange(3, 60, 5, dtype=np.int32).reshape(1, -1))
    before = model(ids).asnumpy()
    model.load_hf_state_dict(tensors, "smoothed")
    np.testing.assert_allclose(model(ids).asnumpy(), before, rtol=1e-4, atol=1e-4)


def test_w8a8_folder_layout_and_logits(llama_dir, smoothquant_dir):
    out, summary = smoothquant_dir
    assert summary["layers"] == 14 and summary["smoothed_linears"] == 12
    cfg = json.loads((out / "config.json").read_text())["quantization_config"]
    group = cfg["config_groups"]["group_0"]
    assert cfg["quant_method"] == "compressed-tensors" and cfg["format"] == "int-quantized"
    assert group["input_activations"] == {"num_bits": 8, "type": "int", "symmetric": True, "strategy": "token",
                                          "dynamic": True, "group_size": None, "observer": None}
    assert group["weights"]["strategy"] == "channel" and cfg["ignore"] == ["lm_head"]
    assert parse_config(cfg, "t")["act_bits"] == 8
    from mft.models import checkpoint_io

    tensors, _ = checkpoint_io.read_weights(str(out))
    assert tensors["model.layers.0.self_attn.q_proj.weight"].dtype == np.int8
    assert tensors["model.layers.0.self_attn.q_proj.weight_scale"].shape == (64, 1)

    quantized = AutoModelForCausalLM.from_pretrained(str(out))
    cells = [c for _, c in quantized.cells_and_names() if getattr(c, "is_quantized", False)]
    assert len(cells) == 14 and all(c.quant_act_bits == 8 for c in cells)

    def run(ids, fused):
        for c in cells:
            c.quant_fused = fused  # False: the composed MindSpore W8A8 reference
        return quantized(ids).asnumpy()

    float_model = AutoModelForCausalLM.from_pretrained(str(llama_dir[0]))
    for length in (1, 12):
        ids = ms.Tensor(np.arange(5, 5 + 7 * length, 7, dtype=np.int32).reshape(1, length))
        got = run(ids, True)
        np.testing.assert_allclose(got, run(ids, False), rtol=1e-4, atol=1e-4)
        want = float_model(ids).asnumpy()
        # int8 activations + weights stay close to fp32 on this model
        assert np.abs(got - want).max() < 0.05 * np.abs(want).max()
    for c in cells:
        c.quant_fused = True
    prompt = ms.Tensor(np.asarray([[5, 17, 33]], np.int32))
    compiled = quantized.generate(prompt, max_new_tokens=4, jit=True).asnumpy()  # the path generate / serve take
    # the cached, compiled decode picks what the full-sequence forward (no cache) ranks first
    full = quantized(ms.Tensor(compiled[:, :-1])).asnumpy().argmax(-1)
    assert compiled[0, 3:].tolist() == full[0, 2:].tolist()


# ---- bad input ----------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,message", [
    ({"scheme": "w8a8", "method": "smoothquant"}, "--calib FILE is required with --method smoothquant"),
    ({"scheme": "w4a16", "method": "smoothquant", "calib": "CALIB"}, "--method smoothquant is for --scheme w8a8"),
    ({"scheme": "w8a8", "method": "smoothquant", "calib": "CALIB", "smooth_alpha": 1.5}, "--smooth-alpha 1.5"),
    ({"scheme": "w8a8", "calib": "CALIB"}, "--calib is only used by"),
])
def test_bad_w8a8_options_name_the_option(tmp_path, llama_dir, kwargs, message):
    if kwargs.get("calib") == "CALIB":
        kwargs = {**kwargs, "calib": str(llama_dir[1])}
    out = tmp_path / "out"
    with pytest.raises(MftError, match=message):
        quantize_folder(str(llama_dir[0]), str(out), QuantOptions(**kwargs), log=lambda *_: None)
    assert not out.exists()


def test_loader_refuses_activation_schemes_it_cannot_run():
    cfg = {"quant_method": "compressed-tensors", "format": "int-quantized", "config_groups": {"group_0": {
        "targets": ["Linear"], "weights": {"num_bits": 8, "type": "int", "symmetric": True, "strategy": "channel"},
        "input_activations": {"num_bits": 8, "type": "int", "symmetric": True, "strategy": "tensor", "dynamic": False}}}}
    with pytest.raises(MftError, match="config.json: quantization_config.config_groups.group_0.input_activations: .*per-token"):
        parse_config(cfg, "m/config.json")


# ---- AWQ (w4a16 --method awq) --------------------------------------------------------------

def test_awq_layout_round_trip():
    from mft.quant import layout

    rng = np.random.default_rng(4)
    q = rng.integers(0, 16, size=(16, 64)).astype(np.uint8)
    scales = (0.01 + 0.01 * rng.random((16, 2))).astype(np.float16).astype(np.float32)
    zeros = rng.integers(0, 16, size=(16, 2)).astype(np.float32)
    t = layout.awq_tensors("p", q, scales, zeros)
    assert t["p.qweight"].shape == (64, 2) and t["p.qzeros"].shape == (2, 2) and t["p.scales"].shape == (2, 16)
    # AutoAWQ GEMM packing: nibble i of word j holds output channel 8j + (0, 2, 4, 6, 1, 3, 5, 7)[i]
    assert (t["p.qweight"][5, 1].view(np.uint32) >> 4) & 15 == q[8 + 2, 5]
    assert (t["p.qzeros"][1, 0].view(np.uint32) >> 16) & 15 == zeros[1, 1]
    q2, s2, z2 = layout.read_awq("p", t, "t")
    assert np.array_equal(q2, q) and np.array_equal(z2, zeros) and np.array_equal(s2, scales)


def test_awq_scale_search_beats_rtn_on_salient_channels():
    from mft.quant.awq import search_scale

    rng = np.random.default_rng(5)
    x = rng.standard_normal((512, 128)).astype(np.float32)
    x[:, :4] *= 20.0  # salient input channels
    w = (0.05 * rng.standard_normal((64, 128))).astype(np.float32)
    h = x.T.astype(np.float64) @ x / len(x)
    s, r, errors = search_scale([w], [h], np.abs(x).mean(axis=0), 32)
    assert r > 0 and errors[r] < 0.8 * errors[0.0], (r, errors[r], errors[0.0])  # errors[0.0] is plain RTN


def test_awq_folder_loads_and_matches_its_dequantized_twin(llama_dir, tmp_path):
    from mft.quant.loader import dequantized_state_dict

    src, calib = llama_dir
    out = tmp_path / "awq"
    opts = QuantOptions(scheme="w4a16", method="awq", group_size=32, calib=str(calib), calib_tokens=128, calib_seq_len=64)
    summary = quantize_folder(str(src), str(out), opts, log=lambda *_: None)
    assert summary["layers"] == 14 and summary["awq_scaled_linears"] == 12
    cfg = json.loads((out / "config.json").read_text())["quantization_config"]
    assert (cfg["quant_method"], cfg["version"], cfg["bits"], cfg["group_size"], cfg["zero_point"]) == ("awq", "gemm", 4, 32, True)
    quantized = AutoModelForCausalLM.from_pretrained(str(out))
    raw, tensors = dequantized_state_dict(str(out))
    twin = AutoModelForCausalLM.from_config(raw)
    twin.load_hf_state_dict(tensors, "twin")
    float_model = AutoModelForCausalLM.from_pretrained(str(src))
    ids = ms.Tensor(np.arange(5, 89, 7, dtype=np.int32).reshape(1, 12))
    got = quantized(ids).asnumpy()
    np.testing.assert_allclose(got, twin(ids).asnumpy(), rtol=1e-4, atol=1e-4)
    want = float_model(ids).asnumpy()
    # int4 on this random-weight fixture moves logits a lot (RTN and GPTQ alike); only a sanity bound here
    assert np.linalg.norm(got - want) < 0.5 * np.linalg.norm(want)


def test_awq_needs_a_group_size_and_w4a16(llama_dir, tmp_path):
    calib = str(llama_dir[1])
    for kwargs, message in (({"scheme": "w8a16"}, "--method awq is for --scheme w4a16"),
                            ({"scheme": "w4a16", "group_size": -1}, "AWQ layout needs a positive group size")):
        with pytest.raises(MftError, match=message):
            quantize_folder(str(llama_dir[0]), str(tmp_path / "o"), QuantOptions(method="awq", calib=calib, **kwargs),
                            log=lambda *_: None)
