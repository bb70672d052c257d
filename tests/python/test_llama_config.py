"""LlamaConfig: both config.json styles, unsupported values named, round trip."""

import json
import os

import pytest

from mft.errors import MftError
from mft.models.llama import LlamaConfig

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "fixtures", "hf", "llama")


def fixture_dict():
    with open(os.path.join(FIXTURE, "config.json")) as f:
        return json.load(f)


def old_style(d):
    """The transformers-4 spelling of the same config (rope_theta/rope_scaling/torch_dtype)."""
    d = dict(d)
    rope = d.pop("rope_parameters")
    d["rope_theta"] = rope["rope_theta"]
    d["rope_scaling"] = None
    d["torch_dtype"] = d.pop("dtype")
    return d


def test_reads_transformers5_style():
    cfg = LlamaConfig.from_hf_dict(fixture_dict())
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.num_key_value_heads) == (64, 2, 4, 2)
    assert cfg.head_dim == 16 and cfg.vocab_size == 512 and cfg.rms_norm_eps == 1e-6
    assert cfg.rope_theta == 10000.0 and cfg.rope_type == "default" and cfg.dtype == "float32"
    assert cfg.eos_token_id == 2 and cfg.pad_token_id == 0 and cfg.tie_word_embeddings is False


def test_both_styles_give_the_same_config():
    new = fixture_dict()
    new["rope_parameters"]["rope_theta"] = 500000.0
    old = old_style(new)
    assert "rope_parameters" not in old and old["rope_theta"] == 500000.0
    assert LlamaConfig.from_hf_dict(new) == LlamaConfig.from_hf_dict(old)
    assert LlamaConfig.from_hf_dict(old).rope_theta == 500000.0


def test_defaults_when_optional_keys_absent():
    d = fixture_dict()
    for key in ("head_dim", "num_key_value_heads", "rope_parameters", "dtype", "attention_bias", "mlp_bias"):
        d.pop(key)
    cfg = LlamaConfig.from_hf_dict(d)
    assert cfg.head_dim == 64 // 4 and cfg.num_key_value_heads == 4 and cfg.rope_theta == 10000.0


@pytest.mark.parametrize(
    "key, value, named",
    [
        ("hidden_act", "gelu", "hidden_act"),
        ("pretraining_tp", 0, "pretraining_tp"),
        ("rope_parameters", {"rope_type": "longrope", "rope_theta": 10000.0, "factor": 4.0}, "rope_parameters.rope_type"),
        ("dtype", "float8", "dtype"),
        ("num_key_value_heads", 3, "num_key_value_heads"),
        ("attention_dropout", 0.1, "attention_dropout"),
    ],
)
def test_unsupported_values_name_the_field(key, value, named):
    d = fixture_dict()
    d[key] = value
    with pytest.raises(MftError) as e:
        LlamaConfig.from_hf_dict(d, source="some/config.json")
    assert named in str(e.value) and "some/config.json" in str(e.value)


def test_old_style_rope_scaling_type_is_checked():
    d = old_style(fixture_dict())
    d["rope_scaling"] = {"type": "dynamic", "factor": 2.0}
    with pytest.raises(MftError, match="rope_scaling.rope_type='dynamic'"):
        LlamaConfig.from_hf_dict(d)


def test_to_hf_dict_round_trips_and_writes_both_rope_spellings():
    cfg = LlamaConfig.from_hf_dict(fixture_dict())
    out = cfg.to_hf_dict()
    assert out["architectures"] == ["LlamaForCausalLM"] and out["model_type"] == "llama"
    assert out["rope_parameters"] == {"rope_type": "default", "rope_theta": 10000.0} and out["rope_theta"] == 10000.0
    assert "fused_rmsnorm" not in out
    assert LlamaConfig.from_hf_dict(json.loads(json.dumps(out))) == cfg
    for key, value in fixture_dict().items():
        if key in out and key != "transformers_version":
            assert out[key] == value, key
