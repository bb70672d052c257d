"""Llama forward and greedy generation against transformers' own outputs (fixture)."""

import os

import numpy as np
import pytest

import mindspore as ms

from mft.models import AutoModelForCausalLM
from mft.models.llama import LlamaForCausalLM

ms.set_device("CPU")
FIXTURE = os.path.join(os.path.dirname(__file__), "..", "fixtures", "hf", "llama")


@pytest.fixture(scope="module")
def reference():
    return np.load(os.path.join(FIXTURE, "reference.npz"))


@pytest.fixture(scope="module")
def model():
    return AutoModelForCausalLM.from_pretrained(FIXTURE)


def test_auto_model_picks_llama(model):
    assert isinstance(model, LlamaForCausalLM)
    assert model.config.num_key_value_heads == 2 and model.config.head_dim == 16


def test_logits_match_transformers(model, reference):
    logits = model(ms.Tensor(reference["input_ids"])).asnumpy()
    assert logits.dtype == np.float32
    assert logits.shape == reference["logits"].shape
    diff = np.abs(logits - reference["logits"]).max()
    assert diff < 1e-4, f"max |logits - reference| = {diff}"


def test_fused_rmsnorm_logits_match_transformers(reference):
    fused = AutoModelForCausalLM.from_pretrained(FIXTURE, fused_rmsnorm=True)
    assert fused.model.norm.fused
    logits = fused(ms.Tensor(reference["input_ids"])).asnumpy()
    diff = np.abs(logits - reference["logits"]).max()
    assert diff < 1e-4, f"max |logits - reference| = {diff}"


def test_greedy_with_cache_matches_transformers(model, reference):
    out = model.generate(reference["input_ids"], max_new_tokens=16)
    np.testing.assert_array_equal(out, reference["greedy"])


def test_cache_and_no_cache_generate_identical(model, reference):
    prompt = reference["input_ids"]
    jit_cache = model.generate(prompt, max_new_tokens=8)
    eager_cache = model.generate(prompt, max_new_tokens=8, jit=False)
    no_cache = model.generate(prompt, max_new_tokens=8, use_cache=False)
    np.testing.assert_array_equal(jit_cache, no_cache)
    np.testing.assert_array_equal(eager_cache, no_cache)


def test_cached_step_logits_equal_full_forward(model, reference):
    """Prefill 20 tokens, then feed 4 one at a time: every step's logits equal the full forward's."""
    ids = reference["input_ids"]
    full = model(ms.Tensor(ids)).asnumpy()
    cache = model.new_kv_cache(2, 32)
    logits, k, v = model.forward_step(ms.Tensor(ids[:, :20], ms.int32), ms.Tensor(0, ms.int32), cache.keys, cache.values)
    cache.update(k, v, 20)
    np.testing.assert_allclose(logits.asnumpy(), full[:, :20], atol=1e-5)
    for pos in range(20, 24):
        logits, k, v = model.forward_step(ms.Tensor(ids[:, pos : pos + 1], ms.int32), ms.Tensor(pos, ms.int32), cache.keys, cache.values, True)
        cache.update(k, v, 1)
        np.testing.assert_allclose(logits.asnumpy()[:, 0], full[:, pos], atol=1e-5)


def test_generate_accepts_tensor_and_returns_tensor(model, reference):
    out = model.generate(ms.Tensor(reference["input_ids"][:1]), max_new_tokens=4)
    assert isinstance(out, ms.Tensor)
    np.testing.assert_array_equal(out.asnumpy(), reference["greedy"][:1, :28])


def test_jitted_forward_matches_transformers(model, reference):
    """The forward compiles in graph mode (training wraps it in ms.jit) and keeps parity."""

    def forward(ids):
        return model(ids)

    logits = ms.jit(forward)(ms.Tensor(reference["input_ids"])).asnumpy()
    assert np.abs(logits - reference["logits"]).max() < 1e-4
