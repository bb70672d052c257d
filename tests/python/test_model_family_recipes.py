"""Every configs/<family>/ recipe parses and maps to a valid config of its family with the published sizes."""

import glob
import os
from types import SimpleNamespace

import pytest

from mft.config import load_config
from mft.models.auto import _family
from mft.training.model_factory import hf_config_from_recipe, runtime_overrides

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FAMILIES = ("llama", "qwen2", "qwen3", "mixtral", "qwen3_moe", "deepseek_v3")
# A tokenizer description is all the mapping reads (vocab size, special ids).
TOKENIZER = SimpleNamespace(vocab_size=4096, bos_id=1, eos_id=2)


def family_config(path):
    cfg = load_config(path)
    hf = hf_config_from_recipe(cfg, TOKENIZER)
    family = _family(cfg.model.arch)
    return cfg, family.CONFIG_CLASS.from_hf_dict(hf, source=path)


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_has_a_tiny_recipe_that_maps(family):
    path = os.path.join(REPO, "configs", family, "tiny_pretrain.yaml")
    cfg, config = family_config(path)
    assert cfg.model.arch == family == config.model_type
    assert cfg.tokenizer.path == "runs/demo/tokenizer.json" and cfg.data.prefix == "runs/demo/data/kjv"
    import dataclasses

    dataclasses.replace(config, **runtime_overrides(cfg))  # the mft-only switches are fields of the family config


def test_real_size_recipes_have_published_sizes():
    found = {os.path.basename(p): family_config(p)[1] for p in glob.glob(os.path.join(REPO, "configs", "*", "*_pretrain.yaml")) if "tiny" not in p}
    llama = found["llama3_8b_pretrain.yaml"]
    assert (llama.hidden_size, llama.intermediate_size, llama.num_hidden_layers, llama.num_key_value_heads, llama.vocab_size) == (4096, 14336, 32, 8, 128256)
    q3 = found["qwen3_32b_pretrain.yaml"]
    assert (q3.hidden_size, q3.num_hidden_layers, q3.num_attention_heads, q3.head_dim) == (5120, 64, 64, 128)
    a3b = found["qwen3_30b_a3b_pretrain.yaml"]
    assert (a3b.num_experts, a3b.num_experts_per_tok, a3b.moe_intermediate_size, a3b.num_hidden_layers) == (128, 8, 768, 48)
    mix = found["mixtral_8x7b_pretrain.yaml"]
    assert (mix.num_local_experts, mix.num_experts_per_tok, mix.intermediate_size) == (8, 2, 14336)
    ds = found["deepseek_v3_671b_pretrain.yaml"]
    assert (ds.n_routed_experts, ds.n_shared_experts, ds.n_group, ds.topk_group, ds.first_k_dense_replace) == (256, 1, 8, 4, 3)
    assert (ds.q_lora_rank, ds.kv_lora_rank, ds.qk_head_dim, ds.v_head_dim, ds.num_hidden_layers) == (1536, 512, 192, 128, 61)
    assert {"qwen2_7b_pretrain.yaml", "qwen3_8b_pretrain.yaml"} <= set(found)
