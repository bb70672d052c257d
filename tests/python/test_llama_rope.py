"""RoPE inverse frequencies: default, linear and llama3 scaling against float64 formulas."""

import math

import numpy as np
import pytest

from mft.errors import MftError
from mft.models.common.rope import ROPE_INIT
from mft.models.llama import LlamaConfig

LLAMA31 = dict(factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0, original_max_position_embeddings=8192)


def default64(dim, theta):
    return np.array([1.0 / theta ** (i / dim) for i in range(0, dim, 2)])


def llama3_64(dim, theta, p):
    out = []
    low_wl = p["original_max_position_embeddings"] / p["low_freq_factor"]
    high_wl = p["original_max_position_embeddings"] / p["high_freq_factor"]
    for f in default64(dim, theta):
        wl = 2 * math.pi / f
        if wl < high_wl:
            out.append(f)
        elif wl > low_wl:
            out.append(f / p["factor"])
        else:
            s = (p["original_max_position_embeddings"] / wl - p["low_freq_factor"]) / (p["high_freq_factor"] - p["low_freq_factor"])
            out.append((1 - s) * f / p["factor"] + s * f)
    return np.array(out)


def test_default_inv_freq():
    inv, scale = ROPE_INIT["default"](16, 10000.0, {})
    assert inv.dtype == np.float32 and inv.shape == (8,) and scale == 1.0
    np.testing.assert_allclose(inv, default64(16, 10000.0), rtol=1e-6)


def test_linear_inv_freq():
    inv, _ = ROPE_INIT["linear"](64, 10000.0, {"factor": 4.0})
    np.testing.assert_allclose(inv, default64(64, 10000.0) / 4.0, rtol=1e-6)


def test_llama3_inv_freq_has_all_three_bands():
    inv, _ = ROPE_INIT["llama3"](128, 500000.0, LLAMA31)
    ref = llama3_64(128, 500000.0, LLAMA31)
    np.testing.assert_allclose(inv, ref, rtol=1e-5)
    ratio = default64(128, 500000.0) / ref
    assert np.isclose(ratio[0], 1.0) and np.isclose(ratio[-1], 8.0) and ((ratio > 1.01) & (ratio < 7.99)).any()


def test_config_reads_llama3_rope_and_names_missing_keys():
    base = LlamaConfig().to_hf_dict()
    base["rope_parameters"] = {"rope_type": "llama3", "rope_theta": 500000.0, **LLAMA31}
    cfg = LlamaConfig.from_hf_dict(base)
    assert cfg.rope_type == "llama3" and cfg.rope_scaling == LLAMA31
    assert LlamaConfig.from_hf_dict(cfg.to_hf_dict()) == cfg
    del base["rope_parameters"]["low_freq_factor"]
    with pytest.raises(MftError, match="rope_parameters.low_freq_factor"):
        LlamaConfig.from_hf_dict(base)
