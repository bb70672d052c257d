"""Qwen2.5-VL tensor names: transformers 5 writes `visual.*`, `model.*` (the language
model) and `lm_head.weight`, which are our parameter names."""

from __future__ import annotations

IGNORED_SUFFIXES = (".rotary_emb.inv_freq", ".inv_freq")


def param_to_hf_name(param_name: str) -> str:
    """The Hugging Face tensor name of an mft parameter (the same name)."""
    return param_name


def optional_tensors(cfg) -> dict:
    """A tied head may still be stored."""
    t = cfg.text_config
    return {"lm_head.weight": (t.vocab_size, t.hidden_size)} if cfg.tie_word_embeddings else {}
