"""int8 KV cache (`mft quantize --scheme kv8`, mft.ops.kv_int8): the C++ paged-attention kernel over int8
pools against the composed reference and numpy; calibrated per-head scales in the compressed-tensors layout;
the loaded model against fp32 (close, not equal) and its own paths against each other (no cache == dense int8
cache == paged int8 pools, composed and fused); w8a16+kv8; bad input."""

import json
import os
import shutil

import numpy as np
import pytest

import mindspore as ms

from mft.errors import MftError
from mft.models import AutoModelForCausalLM
from mft.ops import kv_int8
from mft.quant.schemes import QuantOptions
from mft.quant.writer import quantize_folder

ms.set_device("CPU")
ms.runtime.launch_blocking()
HERE = os.path.dirname(__file__)
FIXTURES = os.path.join(HERE, "..", "fixtures", "hf")
KJV = os.path.join(HERE, "..", "..", "data", "kjv", "kjv.jsonl")
QUIET = {"log": lambda *_: None}


# ---- kernel ----------------------------------------------------------------------------------

def _numpy_paged_int8(q, k_new, v_new, k_pool, v_pool, ks, vs, tables, lens, bs):
    """Dequantize, gather each row's positions, causal inside the chunk; float64."""
    b, heads, sq, d = q.shape
    kvh = k_pool.shape[1]
    rep = heads // kvh
    out = np.zeros((b, sq, heads, d))
    kf = k_pool.astype(np.float64) * ks.reshape(1, -1, 1)
    vf = v_pool.astype(np.float64) * vs.reshape(1, -1, 1)
    for r in range(b):
        cached = lens[r] - sq
        slots = [tables[r, p // bs] * bs + p % bs for p in range(cached)]
        for h in range(heads):
            g = h // rep
            keys = np.concatenate([kf[slots, g], k_new[r, g]], 0)
            vals = np.concatenate([vf[slots, g], v_new[r, g]], 0)
            for i in range(sq):
                n = cached + i + 1
                s = keys[:n] @ q[r, h, i] / np.sqrt(d)
                p = np.exp(s - s.max())
                out[r, i, h] = (p / p.sum()) @ vals[:n]
    return out


@pytest.mark.parametrize("sq,d", [(1, 16), (3, 20)])
def test_int8_paged_kernel_matches_composed_and_numpy(sq, d):
    rng = np.random.default_rng(sq)
    b, heads, kvh, bs, blocks = 3, 4, 2, 4, 12
    k_pool = rng.integers(-127, 128, (blocks * bs, kvh, d)).astype(np.int8)
    v_pool = rng.integers(-127, 128, (blocks * bs, kvh, d)).astype(np.int8)
    ks = np.asarray([0.01, 0.03], np.float32)
    vs = np.asarray([0.02, 0.005], np.float32)
    q = rng.standard_normal((b, heads, sq, d)).astype(np.float32)
    k_new = rng.standard_normal((b, kvh, sq, d)).astype(np.float32)
    v_new = rng.standard_normal((b, kvh, sq, d)).astype(np.float32)
    tables = rng.permutation(np.arange(1, blocks))[:b * 3].reshape(b, 3).astype(np.int32)
    lens = np.asarray([11, sq, 7], np.int32)
    args = [ms.Tensor(x) for x in (q, k_new, v_new, k_pool, v_pool, ks, vs, tables, lens)]
    fused = kv_int8.paged_attention_int8(*args, block_size=bs, fused=True).asnumpy()
    composed = kv_int8.paged_attention_int8(*args, block_size=bs, fused=False).asnumpy()
    want = _numpy_paged_int8(q, k_new, v_new, k_pool, v_pool, ks, vs, tables, lens, bs)
    np.testing.assert_allclose(fused, want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(composed, want, rtol=1e-4, atol=1e-5)


def test_quantize_round_trip_is_within_half_a_step_and_clips():
    scale = ms.Tensor(np.asarray([0.1, 0.02], np.float32))
    x = np.random.default_rng(0).uniform(-4.0, 4.0, (1, 2, 5, 8)).astype(np.float32)
    q = kv_int8.quantize(ms.Tensor(x), scale).asnumpy()
    assert q.dtype == np.int8 and q.min() >= -127 and q.max() <= 127
    back = kv_int8.fake_quant(ms.Tensor(x), scale).asnumpy()
    s = np.broadcast_to(np.asarray([0.1, 0.02], np.float32).reshape(1, 2, 1, 1), x.shape)
    inside = np.abs(x) <= 127 * s
    assert inside.any() and (~inside).any()  # head 1 (scale 0.02) clips at 2.54
    assert np.all(np.abs(back - x)[inside] <= s[inside] / 2 + 1e-6)
    np.testing.assert_allclose(np.abs(back[~inside]), 127 * s[~inside], rtol=1e-6)


# ---- whole models ---------------------------------------------------------------------------

def _kjv_texts(n):
    with open(KJV, encoding="utf-8") as f:
        return [json.loads(next(f))["text"] for _ in range(n)]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """The llama fixture (h64, 2 layers, 2 kv heads) with a tokenizer, its kv8 copy and its w8a16+kv8 copy."""
    from mft.tokenizer import Tokenizer

    root = tmp_path_factory.mktemp("kv8")
    src = root / "llama"
    shutil.copytree(os.path.join(FIXTURES, "llama"), src)
    texts = _kjv_texts(3)
    Tokenizer.train(texts, vocab_size=400).save(str(src / "tokenizer.json"))
    calib = root / "calib.jsonl"
    calib.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts[:2]))
    kv8 = root / "kv8"
    summary = quantize_folder(str(src), str(kv8), QuantOptions(scheme="kv8", calib=str(calib), calib_tokens=512, calib_seq_len=64), **QUIET)
    both = root / "w8kv8"
    quantize_folder(str(src), str(both), QuantOptions(scheme="w8a16+kv8", calib=str(calib), calib_tokens=512, calib_seq_len=64), **QUIET)
    return {"src": src, "calib": calib, "kv8": kv8, "both": both, "summary": summary}


@pytest.fixture(scope="module")
def models(folders):
    return {name: AutoModelForCausalLM.from_pretrained(str(folders[name])) for name in ("src", "kv8", "both")}


def test_kv8_folder_layout(folders):
    cfg = json.loads((folders["kv8"] / "config.json").read_text())["quantization_config"]
    assert cfg["quant_method"] == "compressed-tensors" and cfg["format"] == "dense" and cfg["config_groups"] == {}
    assert cfg["kv_cache_scheme"] == {"num_bits": 8, "type": "int", "symmetric": True, "strategy": "attn_head",
                                      "dynamic": False, "group_size": None, "observer": "minmax"}
    from mft.weights.safetensors import load_file

    tensors = load_file(str(folders["kv8"] / "model.safetensors"))
    scales = {k: v for k, v in tensors.items() if k.endswith(("k_scale", "v_scale"))}
    assert sorted(scales) == [f"model.layers.{i}.self_attn.{w}" for i in range(2) for w in ("k_scale", "v_scale")]
    assert all(v.shape == (2, 1, 1) and v.dtype == np.float32 and np.all(v > 0) for v in scales.values())
    assert tensors["model.layers.0.self_attn.k_proj.weight"].dtype == np.float32  # weights untouched
    both = json.loads((folders["both"] / "config.json").read_text())["quantization_config"]
    assert both["format"] == "int-quantized" and both["kv_cache_scheme"] == cfg["kv_cache_scheme"]


def test_scales_cover_the_calibration_keys(folders, models):
    """Each scale is the head's calibration absmax / 127: the float model's keys on the calibration text
    stay inside the int8 range and the largest reaches it."""
    from mft.quant.calibration import load_calib_tokens
    from mft.weights.safetensors import load_file

    seqs = load_calib_tokens(str(folders["calib"]), str(folders["src"] / "tokenizer.json"), 512, 64)
    tensors = load_file(str(folders["kv8"] / "model.safetensors"))
    src = models["src"]
    k_max = np.zeros((2, 2))
    for seq in seqs:
        cache = src.new_kv_cache(1, len(seq))
        _, keys, _ = src.forward_step(ms.Tensor([seq], ms.int32), ms.Tensor(0, ms.int32), cache.keys, cache.values)
        k_max = np.maximum(k_max, [np.abs(k.asnumpy()[0]).max(axis=(1, 2)) for k in keys])
    got = np.stack([tensors[f"model.layers.{i}.self_attn.k_scale"].reshape(-1) for i in range(2)])
    np.testing.assert_allclose(got * 127, k_max, rtol=1e-5)


def test_kv8_model_is_close_to_fp32_and_its_paths_agree(models):
    src, kv8 = models["src"], models["kv8"]
    cache = kv8.new_kv_cache(1, 32)
    assert cache.keys[0].dtype == ms.int8
    ids = np.asarray([[5, 17, 33, 2, 99, 140, 7, 61, 88, 12, 301, 45]], np.int32)
    full = kv8(ms.Tensor(ids)).asnumpy()
    ref = src(ms.Tensor(ids)).asnumpy()
    err = np.abs(full - ref).max()
    assert 0 < err < 0.05 * np.abs(ref).max()  # int8 K/V changes the logits, a little
    # Prefill 5 tokens into the dense int8 cache, then one token at a time: the same logits as no cache.
    logits, keys, values = kv8.forward_step(ms.Tensor(ids[:, :5]), ms.Tensor(0, ms.int32), cache.keys, cache.values)
    cache.update(keys, values, 5)
    got = [logits.asnumpy()[0]]
    for t in range(5, ids.shape[1]):
        logits, keys, values = kv8.forward_step(ms.Tensor(ids[:, t:t + 1]), ms.Tensor(t, ms.int32), cache.keys,
                                                cache.values)
        cache.update(keys, values, 1)
        got.append(logits.asnumpy()[0])
    np.testing.assert_allclose(np.concatenate(got), full[0], rtol=1e-4, atol=1e-4)
    stored = keys[0].asnumpy()
    assert keys[0].dtype == ms.int8
    assert np.abs(stored[:, :, :ids.shape[1]]).max() > 30 and not stored[:, :, ids.shape[1]:].any()


@pytest.mark.parametrize("backend", ["composed", "fused"])
def test_engine_int8_pools_greedy_equals_generate(models, backend):
    from mft.serving.engine import LLMEngine
    from mft.serving.sampling import SamplingOptions

    kv8 = models["kv8"]
    engine = LLMEngine(kv8, block_size=8, max_num_seqs=2, max_model_len=32, attention_backend=backend)
    assert engine.runner.attention_backend == backend
    assert engine.runner.forward.k_pool.dtype == ms.int8
    assert engine.stats()["kv_cache_dtype"] == "int8" and engine.stats()["kv_cache_bytes_per_token"] == 2 * 2 * 2 * 16
    prompts = [[5, 17, 33, 2, 99, 140, 7, 61, 88, 12, 3, 4, 5, 6, 7, 8, 9, 10], [301, 45, 9]]  # 18 tokens: 3 blocks
    opts = SamplingOptions(max_tokens=6, temperature=0.0, ignore_eos=True)
    for prompt, request in zip(prompts, engine.generate(prompts, opts)):
        want = kv8.generate([prompt], max_new_tokens=6)[0, len(prompt):].tolist()
        assert request.seqs[0].output == want


def test_w8a16_plus_kv8_loads_both(models):
    both = models["both"]
    names = [p.name for p in both.get_parameters()]
    assert len(names) == len(set(names))  # the per-layer KV scales too (a compiled graph refuses duplicates)
    quantized = [c for _, c in both.cells_and_names() if getattr(c, "is_quantized", False)]
    assert len(quantized) == 14 and both.new_kv_cache(1, 4).keys[0].dtype == ms.int8
    ids = ms.Tensor(np.asarray([[5, 17, 33, 2, 99]], np.int32))
    ref = models["src"](ids).asnumpy()
    assert np.abs(both(ids).asnumpy() - ref).max() < 0.05 * np.abs(ref).max()


# ---- bad input -------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,message", [
    ({"scheme": "kv8"}, "--calib FILE is required with --scheme kv8"),
    ({"scheme": "kv8", "calib": "/nonexistent/c.txt"}, "--calib /nonexistent/c.txt: no such file"),
    ({"scheme": "w4a16+kv8", "calib": "CALIB"}, "--scheme w4a16\\+kv8: kv8 combines with w8a16 / w8a8 only"),
    ({"scheme": "kv8", "method": "gptq", "calib": "CALIB"}, "--method gptq: --scheme kv8 alone"),
    ({"scheme": "kv16", "calib": "CALIB"}, "--scheme 'kv16' is unknown"),
])
def test_bad_kv8_options_name_the_option_and_write_nothing(tmp_path, folders, kwargs, message):
    if kwargs.get("calib") == "CALIB":
        kwargs = {**kwargs, "calib": str(folders["calib"])}
    out = tmp_path / "out"
    with pytest.raises(MftError, match=message):
        quantize_folder(str(folders["src"]), str(out), QuantOptions(**kwargs), **QUIET)
    assert not out.exists()


def test_kv8_refuses_mla_before_writing(tmp_path, folders):
    out = tmp_path / "out"
    with pytest.raises(MftError, match="--scheme kv8: layer 0 uses MLAttention"):
        quantize_folder(os.path.join(FIXTURES, "deepseek_v3"), str(out),
                        QuantOptions(scheme="kv8", calib=str(folders["calib"])), **QUIET)
    assert not out.exists() and not [p for p in os.listdir(tmp_path) if p.startswith(".out")]


def test_loader_names_a_bad_kv_cache_scheme(folders, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(folders["kv8"], bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["quantization_config"]["kv_cache_scheme"]["type"] = "float"
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(MftError, match="config.json: quantization_config.kv_cache_scheme: mft runs an int8 KV cache"):
        AutoModelForCausalLM.from_pretrained(str(bad))
