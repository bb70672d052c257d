"""Family configs: both config.json styles, unknown keys and unsupported values named, layer structure."""

import json
import os

import pytest

from mft.errors import MftError
from mft.models.auto import FAMILIES, _family

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures", "hf")


def fixture(family):
    with open(os.path.join(FIXTURES, family, "config.json")) as f:
        return json.load(f)


def config_class(family):
    return _family(family).CONFIG_CLASS


def test_every_fixture_family_is_registered():
    assert set(os.listdir(FIXTURES)) - {"README.md"} <= set(FAMILIES)


def test_qwen2_old_style_equals_transformers5_style():
    old = fixture("qwen2")  # rope_theta / rope_scaling / torch_dtype
    new = dict(old)
    new["rope_parameters"] = {"rope_type": "default", "rope_theta": new.pop("rope_theta")}
    new.pop("rope_scaling")
    new["dtype"] = new.pop("torch_dtype")
    cls = config_class("qwen2")
    assert cls.from_hf_dict(old) == cls.from_hf_dict(new)
    assert cls.from_hf_dict(old).rope_theta == 1e6


@pytest.mark.parametrize("family", ["llama", "qwen2", "qwen3", "mixtral", "qwen3_moe", "deepseek_v3"])
def test_round_trip_and_unknown_key_is_named(family):
    cls = config_class(family)
    cfg = cls.from_hf_dict(fixture(family))
    assert cls.from_hf_dict(json.loads(json.dumps(cfg.to_hf_dict()))) == cfg
    d = fixture(family)
    d["use_fancy_attention"] = True
    with pytest.raises(MftError, match=r"some/config.json: use_fancy_attention=True is not supported"):
        cls.from_hf_dict(d, source="some/config.json")


@pytest.mark.parametrize(
    "family, key, value, named",
    [
        ("qwen2", "layer_types", ["sliding_attention", "full_attention"], "layer_types[0]"),  # use_sliding_window: test_hf_variants.py
        ("qwen3", "layer_types", ["full_attention", "sliding_attention"], "layer_types[1]"),
        ("mixtral", "router_jitter_noise", 0.1, "router_jitter_noise"),
        ("mixtral", "sliding_window", 4096, "sliding_window"),
        ("qwen3_moe", "mlp_only_layers", [5], "mlp_only_layers"),
        ("qwen3_moe", "num_experts_per_tok", 9, "num_experts_per_tok"),
        ("deepseek_v3", "topk_method", "greedy", "topk_method"),
        ("deepseek_v3", "quantization_config", {"quant_method": "fp8"}, "quantization_config"),
        ("deepseek_v3", "n_group", 3, "n_group"),
        ("deepseek_v3", "qk_head_dim", 20, "qk_head_dim"),
        ("deepseek_v3", "rope_parameters", {"rope_type": "dynamic", "rope_theta": 1e4, "factor": 2.0}, "rope_parameters.rope_type"),
    ],
)
def test_unsupported_values_name_the_field(family, key, value, named):
    d = fixture(family)
    d[key] = value
    with pytest.raises(MftError) as e:
        config_class(family).from_hf_dict(d, source="x/config.json")
    assert named in str(e.value) and "x/config.json" in str(e.value)


def test_qwen3_moe_sparse_layers_follow_step_and_mlp_only_layers():
    d = fixture("qwen3_moe")
    d.update(num_hidden_layers=6, decoder_sparse_step=2, mlp_only_layers=[3], norm_topk_prob=False)
    cfg = config_class("qwen3_moe").from_hf_dict(d)
    assert [cfg.is_sparse(i) for i in range(6)] == [False, True, False, False, False, True]
    assert cfg.norm_topk_prob is False
    d.pop("num_local_experts")
    d["num_experts"] = 4  # the older spelling
    assert config_class("qwen3_moe").from_hf_dict(d).num_experts == 4


def test_deepseek_v3_derived_dims():
    cfg = config_class("deepseek_v3").from_hf_dict(fixture("deepseek_v3"))
    assert cfg.qk_head_dim == 24 and cfg.head_dim == cfg.rope_head_dim() == 8
    assert [cfg.is_sparse(i) for i in range(2)] == [False, True]
    assert cfg.softmax_scale() == pytest.approx(24**-0.5)
