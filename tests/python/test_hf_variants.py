"""config.json variants of real checkpoints: the supported ones match transformers' logits and greedy
tokens (fixtures from tools/make_hf_variant_fixtures.py), absent keys take transformers' defaults, and
the unsupported ones are refused naming the file and the key."""

import copy
import dataclasses
import json
import os
import shutil

import numpy as np
import pytest

import mindspore as ms

from mft.errors import MftError
from mft.models import AutoModelForCausalLM
from mft.models.auto import _family

ms.set_device("CPU")
FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures", "hf_variants")
VARIANTS = sorted(n for n in os.listdir(FIXTURES) if os.path.isdir(os.path.join(FIXTURES, n)))


def raw_config(variant):
    with open(os.path.join(FIXTURES, variant, "config.json")) as f:
        return json.load(f)


# Cached decoding at scaled rope positions (llama3 + tied head; yarn with its cos/sin factor + tied head);
# the others' greedy tokens are in their reference.npz too, left out for test time.
GREEDY = ("llama32_llama3_tied", "qwen25_yarn_tied")


_LOADED = {}


def loaded(name):
    """(name, model, reference) of a fixture folder, loaded once per module."""
    if name not in _LOADED:
        folder = os.path.join(FIXTURES, name)
        _LOADED[name] = (name, AutoModelForCausalLM.from_pretrained(folder), np.load(os.path.join(folder, "reference.npz")))
    return _LOADED[name]


@pytest.fixture(scope="module", params=VARIANTS)
def variant(request):
    return loaded(request.param)


def test_logits_match_transformers(variant):
    name, model, reference = variant
    logits = model(ms.Tensor(reference["input_ids"])).asnumpy()
    assert logits.shape == reference["logits"].shape
    diff = np.abs(logits - reference["logits"]).max()
    assert diff < 1e-4, f"{name}: max |logits - reference| = {diff}"


@pytest.mark.parametrize("name", GREEDY)
def test_greedy_with_cache_matches_transformers(name):
    _, model, reference = loaded(name)
    new = reference["greedy"].shape[1] - reference["input_ids"].shape[1]
    np.testing.assert_array_equal(model.generate(reference["input_ids"], max_new_tokens=new, jit=False), reference["greedy"])


EXPECTED = {  # what each file says, read the way transformers reads it
    "llama2_linear_bias": dict(rope_type="linear", rope_theta=10000.0, num_key_value_heads=4, head_dim=8, attention_bias=True, mlp_bias=True),
    "llama32_llama3_tied": dict(rope_type="llama3", head_dim=16, tie_word_embeddings=True, eos_token_id=[2, 3, 4], dtype="bfloat16"),
    "qwen25_yarn_tied": dict(rope_type="yarn", tie_word_embeddings=True, bos_token_id=None, eos_token_id=5),
    "qwen3_yarn_bias": dict(rope_type="yarn", attention_bias=True, head_dim=16),
    "mistral_nemo_style": dict(model_type="mistral", head_dim=16, sliding_window=None, rope_theta=1e6),
    "mixtral_absent_theta": dict(rope_theta=1e6, rms_norm_eps=1e-5),
    "qwen3_moe_unnormed": dict(num_experts=4, norm_topk_prob=False, head_dim=8),
    "deepseek_v3_noqlora_yarn": dict(q_lora_rank=None, n_group=1, rope_type="yarn", bos_token_id=0, eos_token_id=1),
}


@pytest.mark.parametrize("name", VARIANTS)
def test_config_reads_the_variant_and_round_trips(name):
    cls = _family(raw_config(name)["model_type"]).CONFIG_CLASS
    cfg = cls.from_hf_dict(raw_config(name))
    for key, value in EXPECTED[name].items():
        assert getattr(cfg, key) == value, key
    assert cls.from_hf_dict(json.loads(json.dumps(cfg.to_hf_dict()))) == cfg


def test_yarn_scales_by_factor_not_by_context_ratio():
    # Qwen2.5's recipe: factor 4 with original_max_position_embeddings == max_position_embeddings
    from mft.models.common.rope import ROPE_INIT

    cfg = _family("qwen2").CONFIG_CLASS.from_hf_dict(raw_config("qwen25_yarn_tied"))
    inv, attention = ROPE_INIT["yarn"](cfg.head_dim, cfg.rope_theta, {**cfg.rope_scaling, "max_position_embeddings": cfg.max_position_embeddings})
    default, _ = ROPE_INIT["default"](cfg.head_dim, cfg.rope_theta, {})
    np.testing.assert_allclose(inv[-1], default[-1] / 4, rtol=1e-6)
    assert attention == pytest.approx(0.1 * np.log(4) + 1)


def assert_reads_like_transformers(cfg, resolved: dict, label: str) -> None:
    """Every value transformers resolved (tools/make_hf_variant_fixtures.py: resolve) equals mft's field."""
    renamed = {"num_local_experts": {"qwen3_moe": "num_experts", "deepseek_v3": "n_routed_experts"}.get(cfg.model_type, "num_local_experts")}
    for key, want in resolved.items():
        if key.startswith("rope."):
            key = key[5:]
            got = {"rope_theta": cfg.rope_theta, "rope_type": cfg.rope_type}.get(key, cfg.rope_scaling.get(key))
        elif not hasattr(cfg, renamed.get(key, key)):
            assert want in (False, None), f"{label}: transformers resolves {key}={want!r}, mft has no such field"
            continue
        else:
            got = getattr(cfg, renamed.get(key, key))
        assert got == want, f"{label}: {key} is {got!r}, transformers says {want!r}"


def test_absent_keys_take_transformers_defaults():
    with open(os.path.join(FIXTURES, "defaults.json")) as f:
        families = json.load(f)["families"]
    assert set(families) == {"llama", "mistral", "qwen2", "qwen3", "mixtral", "qwen3_moe", "deepseek_v3"}
    for family, entry in families.items():
        cfg = _family(family).CONFIG_CLASS.from_hf_dict(dict(entry["config"]), source=f"{family}/config.json")
        assert_reads_like_transformers(cfg, entry["resolved"], family)


def _published():
    with open(os.path.join(FIXTURES, "published.json")) as f:
        return json.load(f)


def _config_class(config):
    from mft.models.auto import family_for_config

    return family_for_config(config, "config.json").CONFIG_CLASS


@pytest.mark.parametrize("name", sorted(_published()["loads"]))
def test_published_configs_read_as_transformers_reads_them(name):
    entry = _published()["loads"][name]
    cfg = _config_class(entry["config"]).from_hf_dict(dict(entry["config"]), source=f"{name}/config.json")
    assert_reads_like_transformers(cfg, {**entry["resolved"], **entry["expect"]}, name)


@pytest.mark.parametrize("name", sorted(_published()["vlm"]))
def test_published_vlm_configs_read_their_language_model_as_transformers_does(name):
    entry = _published()["vlm"][name]
    cfg = _config_class(entry["config"]).from_hf_dict(json.loads(json.dumps(entry["config"])), source=f"{name}/config.json")
    resolved = dict(entry["resolved"])
    assert cfg.tie_word_embeddings == resolved.pop("vlm.tie_word_embeddings")
    assert_reads_like_transformers(cfg.text_config, resolved, name)
    assert type(cfg).from_hf_dict(json.loads(json.dumps(cfg.to_hf_dict()))) == cfg


@pytest.mark.parametrize("name", sorted(_published()["sliding"]))
def test_sliding_window_keys_load_exactly_when_transformers_windows_no_layer(name):
    entry = _published()["sliding"][name]
    cls = _config_class(entry["config"])
    if all(w is None for w in entry["windows"]):
        cfg = cls.from_hf_dict(dict(entry["config"]), source=f"{name}/config.json")
        assert cfg.to_hf_dict()["model_type"] == entry["config"]["model_type"]
    else:
        with pytest.raises(MftError) as e:
            cls.from_hf_dict(dict(entry["config"]), source="x/config.json")
        assert "x/config.json: use_sliding_window=True" in str(e.value) or "x/config.json: sliding_window=" in str(e.value), str(e.value)


@pytest.mark.parametrize("name", sorted(_published()["refused"]))
def test_published_configs_mft_refuses_name_the_key(name):
    entry = _published()["refused"][name]
    with pytest.raises(MftError) as e:
        _config_class(entry["config"]).from_hf_dict(dict(entry["config"]), source=f"{name}/config.json")
    assert f"{name}/config.json: {entry['named']}" in str(e.value)


def refused(variant, change, named, source="some/config.json"):
    d = raw_config(variant)
    change(d)
    with pytest.raises(MftError) as e:
        _family(d["model_type"]).CONFIG_CLASS.from_hf_dict(d, source=source)
    assert source in str(e.value) and named in str(e.value), str(e.value)
    return str(e.value)


def _set(**kv):
    return lambda d: d.update(copy.deepcopy(kv))


@pytest.mark.parametrize("variant_name, change, named", [
    ("llama2_linear_bias", _set(rope_scaling={"type": "dynamic", "factor": 2.0}), "rope_scaling.rope_type='dynamic'"),
    ("llama32_llama3_tied", _set(rope_parameters={"rope_type": "longrope", "rope_theta": 1e4, "short_factor": [1.0] * 8,
                                                  "long_factor": [2.0] * 8}), "rope_parameters.rope_type='longrope'"),
    ("qwen25_yarn_tied", _set(rope_scaling={"type": "su", "short_factor": [1.0] * 4, "long_factor": [2.0] * 4}), "rope_scaling.rope_type='su'"),
    ("llama32_llama3_tied", _set(rope_parameters={"rope_type": "default", "rope_theta": 1e4, "partial_rotary_factor": 0.5}),
     "rope_parameters.partial_rotary_factor"),
    ("llama2_linear_bias", _set(partial_rotary_factor=0.5), "partial_rotary_factor"),
    ("llama32_llama3_tied", _set(rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": 1e4},
                                                  "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}}),
     "rope_parameters.full_attention"),
    ("llama2_linear_bias", _set(rope_scaling={"type": "llama3", "factor": 8.0, "high_freq_factor": 4.0}), "rope_parameters.low_freq_factor"),
    ("llama2_linear_bias", _set(rope_theta=-1.0), "rope_theta"),
    ("llama2_linear_bias", _set(hidden_act="gelu"), "hidden_act"),
    ("llama2_linear_bias", _set(attn_logit_softcapping=50.0), "attn_logit_softcapping"),
    ("llama2_linear_bias", _set(pretraining_tp=0), "pretraining_tp"),
    ("llama2_linear_bias", _set(torch_dtype="float8_e4m3fn"), "torch_dtype"),
    ("mistral_nemo_style", _set(sliding_window=4096), "sliding_window=4096"),
    ("mistral_nemo_style", lambda d: d.pop("sliding_window"), "sliding_window"),
    ("qwen25_yarn_tied", _set(use_sliding_window=True), "use_sliding_window"),
    ("qwen3_yarn_bias", _set(layer_types=["full_attention", "sliding_attention"]), "layer_types[1]"),
    ("mixtral_absent_theta", _set(sliding_window=4096), "sliding_window"),
    ("deepseek_v3_noqlora_yarn", _set(rope_scaling={"type": "dynamic", "factor": 2.0}), "rope_scaling.rope_type='dynamic'"),
    ("deepseek_v3_noqlora_yarn", _set(scoring_func="softmax"), "scoring_func"),
])
def test_unsupported_variants_are_refused_by_name(variant_name, change, named):
    refused(variant_name, change, named)


def test_refusals_say_why():
    assert "running sequence length" in refused("llama2_linear_bias", _set(rope_scaling={"type": "dynamic", "factor": 2.0}), "dynamic")
    assert "absent" in refused("mistral_nemo_style", lambda d: d.pop("sliding_window"), "sliding_window")


def test_harmless_keys_real_files_ship_are_accepted():
    d = raw_config("qwen25_yarn_tied")  # sliding_window 64 with use_sliding_window false: full attention
    d.update(pretraining_tp=4, _attn_implementation_autoset=True, transformers_version="4.37.0", use_cache=False,
             initializer_range=0.006, _name_or_path="Qwen/Qwen2.5-0.5B", auto_map={"AutoConfig": "x.Y"})
    cfg = _family("qwen2").CONFIG_CLASS.from_hf_dict(d)
    assert cfg.rope_type == "yarn" and cfg.tie_word_embeddings


def test_from_pretrained_names_the_folder(tmp_path):
    folder = tmp_path / "mistral_v01"
    shutil.copytree(os.path.join(FIXTURES, "mistral_nemo_style"), folder)
    d = raw_config("mistral_nemo_style")
    d["sliding_window"] = 4096
    (folder / "config.json").write_text(json.dumps(d))
    with pytest.raises(MftError, match=r"mistral_v01/config.json: sliding_window=4096"):
        AutoModelForCausalLM.from_pretrained(str(folder))
    d.pop("sliding_window")
    d["quantization_config"] = {"quant_method": "fp8", "fmt": "e4m3", "weight_block_size": [128, 128]}
    d["sliding_window"] = None
    (folder / "config.json").write_text(json.dumps(d))
    with pytest.raises(MftError, match=r"mistral_v01/config.json: quantization_config.quant_method='fp8'"):
        AutoModelForCausalLM.from_pretrained(str(folder))


def test_mistral_saves_as_mistral(tmp_path):
    model = AutoModelForCausalLM.from_pretrained(os.path.join(FIXTURES, "mistral_nemo_style"))
    model.save_pretrained(str(tmp_path))
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "mistral" and saved["architectures"] == ["MistralForCausalLM"] and saved["sliding_window"] is None
    assert type(model).config_class.from_hf_dict(saved) == dataclasses.replace(model.config, dtype="float32")  # the weights' dtype


def test_qwen2_5_vl_refuses_yarn_its_mrope_does_not_apply():
    from mft.models.qwen2_5_vl.config import Qwen2_5_VLConfig

    with open(os.path.join(FIXTURES, "..", "vlm", "qwen2_5_vl", "config.json")) as f:
        raw = json.load(f)
    rope = raw["text_config"]["rope_parameters"]
    rope.update(rope_type="yarn", factor=4.0, original_max_position_embeddings=64)
    with pytest.raises(MftError, match=r"x/config.json: text_config: rope_parameters.rope_type='yarn'"):
        Qwen2_5_VLConfig.from_hf_dict(raw, source="x/config.json")


def test_non_null_rope_scaling_wins_over_rope_parameters_as_in_transformers():
    d = raw_config("llama32_llama3_tied")
    d["rope_scaling"] = {"type": "linear", "factor": 2.0}
    cfg = _family("llama").CONFIG_CLASS.from_hf_dict(d)
    # the whole rope_parameters dict is replaced, its theta too: transformers 5.24 reads 10000 here
    assert (cfg.rope_type, cfg.rope_scaling, cfg.rope_theta) == ("linear", {"factor": 2.0}, 10000.0)
    d["rope_scaling"] = None
    assert _family("llama").CONFIG_CLASS.from_hf_dict(d).rope_type == "llama3"


def test_a_recipe_fine_tunes_from_a_mistral_folder():
    from types import SimpleNamespace

    from mft.config import load_config
    from mft.models.mistral import MistralForCausalLM
    from mft.training.model_factory import build_model

    repo = os.path.join(os.path.dirname(__file__), "..", "..")
    folder = os.path.join(FIXTURES, "mistral_nemo_style")
    cfg = load_config(os.path.join(repo, "configs", "llama", "tiny_pretrain.yaml"), ["model.arch=mistral", f"model.pretrained={folder}"])
    model, hf = build_model(cfg, SimpleNamespace(vocab_size=96, bos_id=1, eos_id=2))
    assert isinstance(model, MistralForCausalLM) and hf["model_type"] == "mistral" and hf["sliding_window"] is None
    reference = np.load(os.path.join(folder, "reference.npz"))
    assert np.abs(model(ms.Tensor(reference["input_ids"])).asnumpy() - reference["logits"]).max() < 1e-4
