"""DeepSeek-V3 YaRN rope: limits of the ramp and the softmax mscale, by hand."""

import math

import numpy as np
import pytest

from mft.models.common.rope import ROPE_INIT
from mft.models.deepseek_v3 import DeepseekV3Config

# deepseek-ai/DeepSeek-V3 config.json rope_scaling
YARN = {"factor": 40, "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0, "original_max_position_embeddings": 4096}


def test_yarn_keeps_fast_dims_divides_slow_dims_and_ramps_between():
    base, _ = ROPE_INIT["default"](64, 10000.0, {})
    inv, attn = ROPE_INIT["yarn"](64, 10000.0, {**YARN, "max_position_embeddings": 163840})
    # correction range for dim 64, theta 1e4, 4096 positions: floor(10.2)=10 .. ceil(22.9)=23
    low = 64 * math.log(4096 / (32 * 2 * math.pi)) / (2 * math.log(10000.0))
    high = 64 * math.log(4096 / (1 * 2 * math.pi)) / (2 * math.log(10000.0))
    assert (math.floor(low), math.ceil(high)) == (10, 23)
    np.testing.assert_allclose(inv[:11], base[:11], rtol=1e-6)  # ramp 0: extrapolated (unchanged)
    np.testing.assert_allclose(inv[23:], base[23:] / 40, rtol=1e-6)  # ramp 1: interpolated
    mid = 16  # ramp (16 - 10) / 13
    r = 6 / 13
    assert inv[mid] == pytest.approx(base[mid] / 40 * r + base[mid] * (1 - r), rel=1e-6)
    assert attn == 1.0  # mscale == mscale_all_dim


def test_yarn_softmax_scale_uses_mscale_all_dim():
    cfg = DeepseekV3Config(
        vocab_size=64, hidden_size=32, intermediate_size=64, moe_intermediate_size=16, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, n_routed_experts=4, n_group=2, topk_group=1, num_experts_per_tok=2, kv_lora_rank=8, q_lora_rank=None,
        qk_rope_head_dim=8, qk_nope_head_dim=8, v_head_dim=8, rope_type="yarn", rope_scaling=dict(YARN), max_position_embeddings=163840,
    )
    mscale = 0.1 * 1.0 * math.log(40) + 1.0
    assert cfg.softmax_scale() == pytest.approx(16**-0.5 * mscale * mscale)
    with pytest.raises(Exception, match="rope_type"):
        DeepseekV3Config.from_hf_dict({**cfg.to_hf_dict(), "rope_parameters": {"rope_type": "longrope", "rope_theta": 1e4}, "rope_scaling": None})
