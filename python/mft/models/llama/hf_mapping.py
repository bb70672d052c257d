"""Hugging Face state-dict names for Llama <-> our parameter names.

Our cells are laid out like transformers' (model.embed_tokens, model.layers.N.
self_attn.q_proj, ..., lm_head) and Linear weights are (out, in), so the
mapping is the identity on names and shapes; it is still spelled out here so
loading can check every tensor and other families can differ.
"""

from __future__ import annotations

from mft.models.llama.config import LlamaConfig

# Tensors some HF checkpoints carry that hold no learned weights.
IGNORED_SUFFIXES = (".rotary_emb.inv_freq",)


def expected_shapes(cfg: LlamaConfig) -> dict[str, tuple[int, ...]]:
    """HF tensor name -> shape, for every tensor a checkpoint of `cfg` must hold."""
    h, inter, hd = cfg.hidden_size, cfg.intermediate_size, cfg.head_dim
    q_out, kv_out = cfg.num_attention_heads * hd, cfg.num_key_value_heads * hd
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (cfg.vocab_size, h)}
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}."
        shapes[p + "input_layernorm.weight"] = (h,)
        shapes[p + "post_attention_layernorm.weight"] = (h,)
        for name, out in (("q_proj", q_out), ("k_proj", kv_out), ("v_proj", kv_out)):
            shapes[f"{p}self_attn.{name}.weight"] = (out, h)
            if cfg.attention_bias:
                shapes[f"{p}self_attn.{name}.bias"] = (out,)
        shapes[p + "self_attn.o_proj.weight"] = (h, q_out)
        if cfg.attention_bias:
            shapes[p + "self_attn.o_proj.bias"] = (h,)
        for name, shape in (("gate_proj", (inter, h)), ("up_proj", (inter, h)), ("down_proj", (h, inter))):
            shapes[f"{p}mlp.{name}.weight"] = shape
            if cfg.mlp_bias:
                shapes[f"{p}mlp.{name}.bias"] = (shape[0],)
    shapes["model.norm.weight"] = (h,)
    if not cfg.tie_word_embeddings:
        shapes["lm_head.weight"] = (cfg.vocab_size, h)
    return shapes


def hf_to_param_name(hf_name: str) -> str:
    """The mft parameter name of a Hugging Face tensor name (the same name)."""
    return hf_name


def param_to_hf_name(param_name: str) -> str:
    """The Hugging Face tensor name of an mft parameter (the same name)."""
    return param_name


def optional_tensors(cfg: LlamaConfig) -> set[str]:
    """Tensors a checkpoint may carry that we accept and do not load (tied head)."""
    return {"lm_head.weight"} if cfg.tie_word_embeddings else set()
