"""Weight-only quantization (mft.quant, mft quantize): quantizer error bounds,
GPTQ vs round-to-nearest, file layouts, the C++ dequantize-matmul kernels
against numpy, quantized tiny models against their dequantized fp32 twins,
bad input, and the CLI once."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import mindspore as ms

from mft.errors import MftError
from mft.models import AutoModelForCausalLM
from mft.quant import gptq, layout, rtn
from mft.quant.loader import dequantized_state_dict
from mft.quant.schemes import QuantOptions
from mft.quant.writer import quantize_folder

ms.set_device("CPU")
HERE = os.path.dirname(__file__)
FIXTURES = os.path.join(HERE, "..", "fixtures", "hf")
KJV = os.path.join(HERE, "..", "..", "data", "kjv", "kjv.jsonl")


def _kjv_texts(n):
    with open(KJV, encoding="utf-8") as f:
        return [json.loads(next(f))["text"] for _ in range(n)]


def _correlated_layer(seed=0, n=64, k=128, t=1024):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((t, 16)) @ rng.standard_normal((16, k)) + 0.1 * rng.standard_normal((t, k))).astype(np.float32)
    w = (0.05 * rng.standard_normal((n, k))).astype(np.float32)
    return x, w


# ---- quantizers ------------------------------------------------------------------

def test_int8_round_trip_within_half_a_step():
    w = np.random.default_rng(1).standard_normal((24, 40)).astype(np.float32)
    w[3] = 0.0  # an all-zero row
    q, scale = rtn.quantize_int8(w)
    assert q.dtype == np.int8 and scale.shape == (24,)
    err = np.abs(rtn.dequantize_int8(q, scale) - w)
    assert np.all(err <= scale[:, None] / 2 + 1e-7)
    assert np.abs(q).max() == 127 and np.all(q[3] == 0)


def test_int4_round_trip_within_half_a_step_and_gptq_layout_is_lossless():
    w = np.random.default_rng(2).standard_normal((16, 64)).astype(np.float32)
    w[0, :32] = np.abs(w[0, :32])  # a group without negative values (zero point would be 0)
    q, scales, zeros = rtn.quantize_int4(w, 32)
    assert q.max() <= 15 and zeros.min() >= 1 and zeros.max() <= 15
    err = np.abs(rtn.dequantize_int4(q, scales, zeros) - w)
    assert np.all(err <= np.repeat(scales, 32, axis=1) / 2 + 1e-6)
    tensors = layout.gptq_tensors("p", q, scales, zeros, 32)
    assert tensors["p.qweight"].shape == (8, 16) and tensors["p.qweight"].dtype == np.int32
    assert tensors["p.qzeros"].shape == (2, 2) and tensors["p.scales"].shape == (2, 16)
    assert tensors["p.g_idx"].tolist() == [i // 32 for i in range(64)]
    # GPTQ v1: qweight packs 8 input rows per int32 low nibble first; qzeros store zero - 1.
    assert (tensors["p.qweight"][0, 5].view(np.uint32) & 15) == q[5, 0]
    assert ((tensors["p.qzeros"][1, 0].view(np.uint32) >> 4) & 15) == zeros[1, 1] - 1
    q2, s2, z2 = layout.read_gptq("p", tensors, "t")
    assert np.array_equal(q2, q) and np.array_equal(z2, zeros) and np.allclose(s2, scales)
    assert np.array_equal(layout.unkernel_int4(layout.kernel_int4(q)), q)


@pytest.mark.parametrize("bits,group", [(4, 32), (8, -1)])
def test_gptq_beats_round_to_nearest_on_correlated_inputs(bits, group):
    x, w = _correlated_layer()
    h = x.T.astype(np.float64) @ x
    if bits == 4:
        w_rtn = rtn.dequantize_int4(*rtn.quantize_int4(w, group))
        w_gptq = rtn.dequantize_int4(*gptq.gptq_quantize(w, h, 4, group))
    else:
        w_rtn = rtn.dequantize_int8(*rtn.quantize_int8(w))
        q, s, _ = gptq.gptq_quantize(w, h, 8)
        w_gptq = rtn.dequantize_int8(q, s)
    ref = x @ w.T
    err_rtn = np.mean((x @ w_rtn.T - ref) ** 2)
    err_gptq = np.mean((x @ w_gptq.T - ref) ** 2)
    assert err_gptq < 0.5 * err_rtn, (err_gptq, err_rtn)


# ---- kernels -----------------------------------------------------------------------

def _int4_case(rng, n, k, group):
    q = rng.integers(0, 16, size=(n, k)).astype(np.uint8)
    scales = (0.01 + 0.01 * rng.random((n, k // group))).astype(np.float32)
    zeros = rng.integers(1, 16, size=(n, k // group)).astype(np.float32)
    return q, scales, zeros


@pytest.mark.parametrize("m", [1, 2, 5])
def test_kernels_match_numpy_dequantize_then_matmul(m):
    from mft import _kernels

    rng = np.random.default_rng(m)
    x = rng.standard_normal((m, 96)).astype(np.float32)
    w8 = rng.integers(-127, 128, size=(13, 96)).astype(np.int8)
    s8 = (0.01 * rng.random(13) + 0.001).astype(np.float32)
    ref8 = x.astype(np.float64) @ rtn.dequantize_int8(w8, s8).T.astype(np.float64)
    np.testing.assert_allclose(_kernels.quant_matmul_int8(x, w8, s8), ref8, rtol=1e-4, atol=1e-4)
    q, scales, zeros = _int4_case(rng, 13, 96, 32)
    ref4 = x.astype(np.float64) @ rtn.dequantize_int4(q, scales, zeros).T.astype(np.float64)
    got4 = _kernels.quant_matmul_int4(x, layout.kernel_int4(q), scales, zeros)
    np.testing.assert_allclose(got4, ref4, rtol=1e-4, atol=1e-4)


def test_aot_ops_match_the_mindspore_reference():
    from mft.ops.quant_matmul import quant_matmul_int4, quant_matmul_int8

    rng = np.random.default_rng(9)
    x = ms.Tensor(rng.standard_normal((2, 3, 64)).astype(np.float32))
    w8 = ms.Tensor(rng.integers(-127, 128, size=(24, 64)).astype(np.int8))
    s8 = ms.Tensor((0.01 * rng.random(24) + 0.001).astype(np.float32))
    fused, ref = quant_matmul_int8(x, w8, s8), quant_matmul_int8(x, w8, s8, fused=False)
    assert fused.shape == (2, 3, 24)
    np.testing.assert_allclose(fused.asnumpy(), ref.asnumpy(), rtol=1e-4, atol=1e-4)
    q, scales, zeros = _int4_case(rng, 24, 64, 16)
    args = (ms.Tensor(layout.kernel_int4(q)), ms.Tensor(scales), ms.Tensor(zeros))
    fused, ref = quant_matmul_int4(x, *args), quant_matmul_int4(x, *args, fused=False)
    np.testing.assert_allclose(fused.asnumpy(), ref.asnumpy(), rtol=1e-4, atol=1e-4)


# ---- whole models --------------------------------------------------------------------

@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    """The HF llama fixture (h64, 2 layers, vocab 512) plus a small BPE tokenizer and calibration text."""
    from mft.tokenizer import Tokenizer

    folder = tmp_path_factory.mktemp("q") / "llama"
    shutil.copytree(os.path.join(FIXTURES, "llama"), folder)
    texts = _kjv_texts(3)
    Tokenizer.train(texts, vocab_size=400).save(str(folder / "tokenizer.json"))
    calib = folder.parent / "calib.jsonl"
    calib.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts[:2]))
    return folder, calib


def _greedy(model, prompt, n=8, jit=True):
    return model.generate(ms.Tensor(np.asarray([prompt], np.int32)), max_new_tokens=n, jit=jit).asnumpy()[0].tolist()


def _twin(folder):
    raw, tensors = dequantized_state_dict(str(folder))
    model = AutoModelForCausalLM.from_config(raw)
    model.load_hf_state_dict(tensors, "twin")
    return model


@pytest.mark.parametrize("scheme,method,family", [("w8a16", "rtn", "llama"), ("w4a16", "gptq", "llama"), ("w4a16", "rtn", "qwen2")])
def test_quantized_model_generates_like_its_dequantized_twin(tmp_path, llama_dir, scheme, method, family):
    src, calib = llama_dir
    if family != "llama":
        src = os.path.join(FIXTURES, family)
    out = tmp_path / "out"
    opts = QuantOptions(scheme=scheme, method=method, group_size=32, calib=str(calib) if method == "gptq" else None,
                        calib_tokens=512, calib_seq_len=64)
    summary = quantize_folder(str(src), str(out), opts, log=lambda *_: None)
    assert summary["layers"] == 14
    cfg = json.loads((out / "config.json").read_text())["quantization_config"]
    assert cfg["quant_method"] == ("gptq" if scheme == "w4a16" else "compressed-tensors")
    quantized = AutoModelForCausalLM.from_pretrained(str(out))
    cells = [c for _, c in quantized.cells_and_names() if getattr(c, "is_quantized", False)]
    assert len(cells) == 14 and all(c.quant_bits == (4 if scheme == "w4a16" else 8) for c in cells)
    twin = _twin(out)
    for length in (2, 12):  # the kernel's decode path (<= 2 rows) and its tiled prefill path
        ids = ms.Tensor(np.arange(5, 5 + 7 * length, 7, dtype=np.int32).reshape(1, length))
        np.testing.assert_allclose(quantized(ids).asnumpy(), twin(ids).asnumpy(), rtol=1e-4, atol=1e-4)
    if method == "gptq":  # one compiled (ms.jit) decode run: the path mft generate / serve take
        assert _greedy(quantized, [5, 17, 33]) == _greedy(twin, [5, 17, 33], jit=False)


# ---- bad input ---------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,option", [
    ({"scheme": "w3a16"}, "--scheme"),
    ({"scheme": "kv8"}, "--calib FILE is required with --scheme kv8"),
    ({"scheme": "w4a16", "method": "awq"}, "--method"),
    ({"scheme": "w4a16", "group_size": 48}, "--group-size 48 does not divide"),
    ({"scheme": "w4a16", "group_size": 20}, "--group-size 20"),
    ({"scheme": "w4a16", "group_size": 32, "method": "gptq"}, "--calib FILE is required"),
    ({"scheme": "w4a16", "group_size": 32, "method": "gptq", "calib": "/nonexistent/calib.txt"}, "--calib /nonexistent/calib.txt"),
    ({"scheme": "w4a16", "group_size": 32, "method": "gptq", "calib": "TINY"}, "--calib .*tiny.txt: only \\d+ tokens .* need at least 128"),
])
def test_bad_options_name_the_option_and_write_nothing(tmp_path, llama_dir, kwargs, option):
    src, _ = llama_dir
    if kwargs.get("calib") == "TINY":
        tiny = tmp_path / "tiny.txt"
        tiny.write_text("In the beginning")
        kwargs = {**kwargs, "calib": str(tiny)}
    out = tmp_path / "out"
    with pytest.raises(MftError, match=option.replace("(", r"\(")):
        quantize_folder(str(src), str(out), QuantOptions(**kwargs), log=lambda *_: None)
    assert not out.exists()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".out")]


def test_non_empty_output_dir_is_refused(tmp_path, llama_dir):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(MftError, match="--out .* not an empty directory"):
        quantize_folder(str(llama_dir[0]), str(out), QuantOptions(scheme="w8a16"), log=lambda *_: None)
    assert os.listdir(out) == ["keep.txt"]


# ---- CLI ----------------------------------------------------------------------------------

def test_cli_quantize_writes_a_folder_generate_loads(tmp_path, llama_dir):
    out = tmp_path / "q4"
    run = subprocess.run([sys.executable, "-m", "mft.cli.main", "quantize", "--model", str(llama_dir[0]), "--out", str(out),
                          "--scheme", "w4a16", "--group-size", "64"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "14 linears quantized" in run.stdout
    assert sorted(os.listdir(out)) == ["config.json", "generation_config.json", "model.safetensors", "tokenizer.json"]
    model = AutoModelForCausalLM.from_pretrained(str(out))
    assert model(ms.Tensor(np.asarray([[1, 2, 3]], np.int32))).shape == (1, 3, 512)
