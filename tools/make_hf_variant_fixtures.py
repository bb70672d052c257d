"""config.json variants real checkpoints ship, with transformers' own outputs (not a CI requirement: run in a
venv with torch and transformers, offline, e.g. /root/.cache/hf-venv).

    /root/.cache/hf-venv/bin/python tools/make_hf_variant_fixtures.py [--defaults-only]
        writes tests/fixtures/hf_variants/<variant>/: config.json spelled as the real checkpoints spell it
        (transformers 4 or 5 keys, remote-code keys, absent keys), model.safetensors of a tiny random model
        transformers built from that file (every parameter and buffer random, so biases and norms count),
        and reference.npz (input_ids (2, 20), transformers' fp32 eager logits, greedy (2, 26): 6 new tokens);
        defaults.json: per family, a config.json that leaves every optional key out, with the values
        transformers resolves for it (what mft must assume for an absent key); and published.json: the
        config.json files of published checkpoints in tools/hf_published_configs.py with the values
        transformers resolves for each (or the key mft's refusal names).

Each variant also names `plain`: the same config with the math-changing keys taken out. The script
checks that transformers' logits for the plain config differ (max |diff| > 1e-2), so a loader that
ignored the variant's keys would fail the parity test; the measured differences go in the README.
tests/python/test_hf_variants.py compares mft with these files.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile

import numpy as np
import torch
from transformers import AutoConfig, AutoModelForCausalLM

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(REPO, "tests", "fixtures", "hf_variants")
SEQ, NEW = 20, 6
SMALL = {"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2, "vocab_size": 96}

VARIANTS = {
    # Llama 2 / CodeLlama era file: transformers 4 keys, linear rope scaling spelled `type`, no
    # num_key_value_heads (MHA) and no rope_theta (10000), attention and MLP biases, pretraining_tp 2.
    "llama2_linear_bias": {
        "config": {
            "architectures": ["LlamaForCausalLM"], "model_type": "llama", **SMALL, "max_position_embeddings": 64,
            "rms_norm_eps": 1e-5, "hidden_act": "silu", "initializer_range": 0.02, "attention_bias": True, "mlp_bias": True,
            "pretraining_tp": 2, "rope_scaling": {"type": "linear", "factor": 4.0}, "torch_dtype": "float16",
            "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0, "tie_word_embeddings": False,
            "transformers_version": "4.31.0", "use_cache": True,
        },
        "plain": {"rope_scaling": None},
    },
    # Llama 3.2 1B/3B shape: llama3 rope in transformers 5's rope_parameters, explicit head_dim wider than
    # hidden / heads, GQA, tied embeddings (no lm_head tensor), eos as a list, bf16 dtype.
    "llama32_llama3_tied": {
        "config": {
            "architectures": ["LlamaForCausalLM"], "model_type": "llama", **SMALL, "intermediate_size": 32, "head_dim": 16,
            "num_key_value_heads": 2,
            "max_position_embeddings": 256, "rms_norm_eps": 1e-5, "hidden_act": "silu", "attention_bias": False,
            "mlp_bias": False, "attention_dropout": 0.0, "pretraining_tp": 1, "tie_word_embeddings": True,
            "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
                                "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
            "bos_token_id": 1, "eos_token_id": [2, 3, 4], "dtype": "bfloat16", "transformers_version": "5.0.0",
            "use_cache": True, "_attn_implementation_autoset": True,
        },
        "plain": {"rope_parameters": {"rope_type": "default", "rope_theta": 500000.0}},
    },
    # Qwen2.5 with the long-context recipe: yarn spelled `type` in rope_scaling, factor 4 while
    # original_max_position_embeddings == max_position_embeddings (transformers 5 scales by `factor`),
    # sliding_window set but use_sliding_window false, tied embeddings, no bos_token_id.
    "qwen25_yarn_tied": {
        "config": {
            "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", **SMALL, "num_key_value_heads": 2,
            "max_position_embeddings": 64, "rms_norm_eps": 1e-6, "hidden_act": "silu", "rope_theta": 10000.0,
            "rope_scaling": {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64},
            "sliding_window": 64, "use_sliding_window": False, "max_window_layers": 1, "tie_word_embeddings": True,
            "eos_token_id": 5, "attention_dropout": 0.0, "initializer_range": 0.02, "torch_dtype": "bfloat16",
            "transformers_version": "4.43.1", "use_cache": True,
        },
        "plain": {"rope_scaling": None},
    },
    # Qwen3 with yarn in rope_parameters (explicit beta_fast / beta_slow), attention bias on q/k/v/o.
    "qwen3_yarn_bias": {
        "config": {
            "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", **SMALL, "intermediate_size": 32, "head_dim": 16,
            "num_key_value_heads": 2,
            "max_position_embeddings": 128, "rms_norm_eps": 1e-6, "hidden_act": "silu", "attention_bias": True,
            "rope_parameters": {"rope_type": "yarn", "rope_theta": 1000000.0, "factor": 4.0,
                                "original_max_position_embeddings": 32, "beta_fast": 16.0, "beta_slow": 1.0},
            "layer_types": ["full_attention", "full_attention"], "sliding_window": None, "use_sliding_window": False,
            "max_window_layers": 2, "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2,
            "dtype": "bfloat16", "transformers_version": "5.0.0", "use_cache": True,
        },
        "plain": {"rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0}},
    },
    # Mistral v0.3 / Nemo shape: model_type mistral, sliding_window null, head_dim wider than hidden / heads.
    "mistral_nemo_style": {
        "config": {
            "architectures": ["MistralForCausalLM"], "model_type": "mistral", **SMALL, "num_hidden_layers": 1, "head_dim": 16,
            "num_key_value_heads": 2,
            "max_position_embeddings": 1024, "rms_norm_eps": 1e-5, "hidden_act": "silu", "rope_theta": 1000000.0,
            "sliding_window": None, "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2,
            "attention_dropout": 0.0, "initializer_range": 0.02, "torch_dtype": "bfloat16",
            "transformers_version": "4.42.0", "use_cache": True,
        },
        "plain": None,
    },
    # Mixtral file without rope_theta and rms_norm_eps: transformers' Mixtral defaults are 1e6 and 1e-5.
    "mixtral_absent_theta": {
        "config": {
            "architectures": ["MixtralForCausalLM"], "model_type": "mixtral", **SMALL, "intermediate_size": 32,
            "num_hidden_layers": 1, "num_key_value_heads": 2, "num_local_experts": 4, "num_experts_per_tok": 2,
            "max_position_embeddings": 256, "hidden_act": "silu", "sliding_window": None, "router_aux_loss_coef": 0.02,
            "output_router_logits": False, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
            "transformers_version": "4.36.0",
        },
        "plain": {"rope_theta": 10000.0, "rms_norm_eps": 1e-6},
    },
    # Qwen3-MoE with the older `num_experts` spelling, norm_topk_prob false, a dense first layer
    # (decoder_sparse_step 2) and head_dim left out (Qwen3-MoE derives it).
    "qwen3_moe_unnormed": {
        "config": {
            "architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe", **SMALL, "num_key_value_heads": 2,
            "num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 16, "norm_topk_prob": False,
            "decoder_sparse_step": 2, "mlp_only_layers": [], "max_position_embeddings": 256, "rms_norm_eps": 1e-6,
            "rope_theta": 1000000.0, "rope_scaling": None, "sliding_window": None, "use_sliding_window": False,
            "max_window_layers": 2, "attention_bias": False, "router_aux_loss_coef": 0.001, "output_router_logits": False,
            "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "bfloat16",
            "transformers_version": "4.51.0", "use_cache": True,
        },
        "plain": {"norm_topk_prob": True},
    },
    # DeepSeek-V3 remote-code file in the Moonlight / V2-Lite shape: no q LoRA (q_lora_rank null), one
    # expert group, yarn spelled `type` with mscale / mscale_all_dim (cos/sin and softmax both scaled),
    # the remote-code routing keys, no bos/eos keys (transformers: 0 / 1), no num_nextn_predict_layers.
    "deepseek_v3_noqlora_yarn": {
        "config": {
            "architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3", **SMALL,
            "num_key_value_heads": 4, "moe_intermediate_size": 16, "n_routed_experts": 4, "n_shared_experts": 1,
            "num_experts_per_tok": 2, "n_group": 1, "topk_group": 1, "first_k_dense_replace": 1, "moe_layer_freq": 1,
            "topk_method": "noaux_tc", "scoring_func": "sigmoid", "seq_aux": True, "aux_loss_alpha": 0.001, "ep_size": 1,
            "norm_topk_prob": True, "routed_scaling_factor": 2.446, "q_lora_rank": None, "kv_lora_rank": 16,
            "qk_nope_head_dim": 8, "qk_rope_head_dim": 8, "v_head_dim": 8, "max_position_embeddings": 128,
            "rope_theta": 50000.0, "rope_scaling": {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32,
                                                    "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 0.8},
            "rms_norm_eps": 1e-6, "hidden_act": "silu", "attention_bias": False, "attention_dropout": 0.0,
            "pretraining_tp": 1, "tie_word_embeddings": False, "initializer_range": 0.02, "torch_dtype": "bfloat16",
            "auto_map": {"AutoConfig": "configuration_deepseek.DeepseekV3Config",
                         "AutoModelForCausalLM": "modeling_deepseek.DeepseekV3ForCausalLM"},
            "transformers_version": "4.33.1", "use_cache": True,
        },
        "plain": {"rope_scaling": None},
    },
}

# Per family: a config.json with only the structural keys; every optional key is left to the family's defaults
# (32 heads: the families' num_key_value_heads defaults are 32, 8 and 4, and must divide it).
HEADS32 = {**SMALL, "hidden_size": 128, "num_attention_heads": 32}
MINIMAL = {
    "llama": {"model_type": "llama", **HEADS32},
    "mistral": {"model_type": "mistral", **HEADS32, "sliding_window": None},
    "qwen2": {"model_type": "qwen2", **HEADS32},
    "qwen3": {"model_type": "qwen3", **HEADS32},
    "mixtral": {"model_type": "mixtral", **HEADS32},
    "qwen3_moe": {"model_type": "qwen3_moe", **HEADS32},
    "deepseek_v3": {"model_type": "deepseek_v3", **HEADS32, "num_key_value_heads": 32},  # MLA: one per head
}
RESOLVED = ("rms_norm_eps", "max_position_embeddings", "num_key_value_heads", "tie_word_embeddings", "bos_token_id",
            "eos_token_id", "pad_token_id", "attention_bias", "mlp_bias", "hidden_act", "num_experts_per_tok",
            "num_local_experts", "router_jitter_noise", "moe_intermediate_size", "norm_topk_prob", "decoder_sparse_step",
            "mlp_only_layers", "n_routed_experts", "n_shared_experts", "routed_scaling_factor", "kv_lora_rank",
            "q_lora_rank", "qk_rope_head_dim", "qk_nope_head_dim", "v_head_dim", "n_group", "topk_group",
            "first_k_dense_replace", "rope_interleave", "num_nextn_predict_layers")


def build(config: dict):
    """transformers' model for a config.json dict, read from a file as from_pretrained would, every tensor random."""
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "config.json"), "w") as f:
            json.dump(config, f)
        hf_config = AutoConfig.from_pretrained(tmp)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(hf_config, attn_implementation="eager", dtype=torch.float32).eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, t in list(model.named_parameters()) + list(model.named_buffers()):
            if not t.is_floating_point() or "inv_freq" in name:
                continue
            noise = torch.randn(t.shape, generator=gen) * 0.15
            t.copy_(1.0 + noise if name.endswith("norm.weight") else noise)
    return model


def logits(model, ids: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(ids)).logits.float().numpy()


def greedy(model, ids: np.ndarray) -> np.ndarray:
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    with torch.no_grad():
        out = model.generate(torch.from_numpy(ids), max_new_tokens=NEW, min_new_tokens=NEW, do_sample=False)
    return out.numpy()


def plain_of(config: dict, patch: dict) -> dict:
    out = {k: v for k, v in config.items()}
    for key, value in patch.items():
        out[key] = value
    return out


def make_variant(name: str, spec: dict, rng: np.random.Generator) -> float | None:
    folder = os.path.join(OUT, name)
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    config = spec["config"]
    model = build(config)
    ids = rng.integers(6, config["vocab_size"], size=(2, SEQ)).astype(np.int64)
    ref = logits(model, ids)
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        shutil.copy(os.path.join(tmp, "model.safetensors"), os.path.join(folder, "model.safetensors"))
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    np.savez_compressed(os.path.join(folder, "reference.npz"), input_ids=ids, logits=ref, greedy=greedy(model, ids))
    if spec["plain"] is None:
        return None
    plain = build(plain_of(config, spec["plain"]))
    plain.load_state_dict(model.state_dict())
    diff = float(np.abs(logits(plain, ids) - ref).max())
    if diff <= 1e-2:
        sys.exit(f"{name}: the plain config's logits differ by only {diff:.2e}; the fixture would not catch a loader ignoring it")
    return diff


ABSENT = "<absent>"
# Sliding-window keys on the variants above: transformers' window per layer tells whether mft may load them.
SLIDING = {
    "qwen2: use_sliding_window, max_window_layers >= layers": ("qwen25_yarn_tied", {"use_sliding_window": True, "max_window_layers": 2, "sliding_window": 16}),
    "qwen2: use_sliding_window, windowed from layer 1": ("qwen25_yarn_tied", {"use_sliding_window": True, "max_window_layers": 1, "sliding_window": 16}),
    "qwen2: use_sliding_window, null window": ("qwen25_yarn_tied", {"use_sliding_window": True, "max_window_layers": 0, "sliding_window": None}),
    "qwen2: use_sliding_window, window keys absent": ("qwen25_yarn_tied", {"use_sliding_window": True, "max_window_layers": ABSENT, "sliding_window": ABSENT}),
    "qwen3: use_sliding_window, windowed from layer 0": ("qwen3_yarn_bias", {"use_sliding_window": True, "max_window_layers": 0, "sliding_window": 16, "layer_types": ABSENT}),
    "qwen3: use_sliding_window, max_window_layers >= layers": ("qwen3_yarn_bias", {"use_sliding_window": True, "sliding_window": 16, "layer_types": ABSENT}),
    "qwen3_moe: use_sliding_window": ("qwen3_moe_unnormed", {"use_sliding_window": True, "sliding_window": 16}),
    "qwen3_moe: use_sliding_window, null window": ("qwen3_moe_unnormed", {"use_sliding_window": True, "sliding_window": None}),
    "qwen3_moe: window without use_sliding_window": ("qwen3_moe_unnormed", {"sliding_window": 16}),
    "mixtral: window": ("mixtral_absent_theta", {"sliding_window": 16}),
    "mistral: null window": ("mistral_nemo_style", {}),
}


def sliding_windows() -> dict:
    """Per SLIDING case: the config.json dict and the window transformers applies in each layer (None: full attention)."""
    out = {}
    for name, (variant, change) in SLIDING.items():
        config = {k: v for k, v in VARIANTS[variant]["config"].items() if change.get(k) != ABSENT}
        config.update({k: v for k, v in change.items() if v != ABSENT})
        c = AutoConfig.for_model(**config)
        if config["model_type"] in ("qwen2", "qwen3"):
            windows = [c.sliding_window if kind == "sliding_attention" else None for kind in c.layer_types]
        else:  # the model builds a sliding mask for every layer whenever config.sliding_window is set
            windows = [c.sliding_window] * c.num_hidden_layers
        out[name] = {"config": config, "windows": windows}
    return out


def resolve(config: dict, text_of_vlm: bool = False) -> dict:
    """The values transformers reads from a config.json dict (RESOLVED, head_dim as the models compute it, rope);
    `text_of_vlm`: those of a vision-language config's language model, plus the top-level tie_word_embeddings."""
    from transformers import DeepseekV3Config

    if config["model_type"] == "kimi_k2":  # remote code; its architectures say DeepSeek-V3
        c = DeepseekV3Config(**{k: v for k, v in config.items() if k != "model_type"})
    else:
        c = AutoConfig.for_model(**config)
    if text_of_vlm:  # the model ties by the top-level flag (a text config may leave its own None)
        text = {k: v for k, v in resolve_config(c.text_config, config["model_type"]).items() if k != "tie_word_embeddings"}
        return {**text, "vlm.tie_word_embeddings": c.tie_word_embeddings}
    return resolve_config(c, config["model_type"])


def resolve_config(c, model_type: str) -> dict:
    """RESOLVED values, head_dim and rope parameters of a transformers config object."""
    values = {k: getattr(c, k) for k in RESOLVED if hasattr(c, k)}
    values["head_dim"] = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    if model_type in ("deepseek_v3", "kimi_k2"):
        values.pop("head_dim")  # transformers' DeepSeek head_dim is qk_rope_head_dim; mft checks it the same way
    for key in ("rope_theta", "rope_type", "factor", "original_max_position_embeddings", "low_freq_factor", "high_freq_factor",
                "beta_fast", "beta_slow", "mscale", "mscale_all_dim"):
        if key in c.rope_parameters:
            values[f"rope.{key}"] = c.rope_parameters[key]
    return values


def resolved_defaults() -> dict:
    return {family: {"config": config, "resolved": resolve(config)} for family, config in MINIMAL.items()}


def published() -> dict:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from hf_published_configs import LOADS, REFUSED, VLM

    return {"loads": {name: {"config": c, "resolved": resolve(c), "expect": e} for name, (c, e) in LOADS.items()},
            "refused": {name: {"config": c, "named": named} for name, (c, named) in REFUSED.items()},
            "vlm": {name: {"config": c, "resolved": resolve(c, text_of_vlm=True)} for name, c in VLM.items()},
            "sliding": sliding_windows()}


def write_json(name: str, value: dict) -> None:
    with open(os.path.join(OUT, name), "w") as f:
        json.dump(value, f, separators=(",", ":"))
        f.write("\n")


def main() -> None:
    import transformers

    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(0)
    for name, spec in VARIANTS.items() if "--defaults-only" not in sys.argv else ():
        diff = make_variant(name, spec, rng)
        print(f"{name}: plain-config logits differ by {diff:.3g}" if diff is not None else f"{name}: written")
    write_json("defaults.json", {"transformers_version": transformers.__version__, "families": resolved_defaults()})
    write_json("published.json", {"transformers_version": transformers.__version__, **published()})


if __name__ == "__main__":
    main()
