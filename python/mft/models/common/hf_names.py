"""Default Hugging Face state-dict mapping: our cells are named like transformers'.

Expected tensors and shapes come from the model itself (CausalLM.hf_layout):
one tensor per parameter, and one per expert for stacked expert weights.
A family whose names differ wraps `param_to_hf_name`.
"""

from __future__ import annotations

# Tensors some HF checkpoints carry that hold no learned weights.
IGNORED_SUFFIXES = (".rotary_emb.inv_freq",)


def param_to_hf_name(param_name: str) -> str:
    """The Hugging Face tensor name of an mft parameter (the same name for these families)."""
    return param_name


def optional_tensors(cfg) -> set[str]:
    """Tensors a checkpoint may carry that we accept and do not load (tied head)."""
    return {"lm_head.weight"} if cfg.tie_word_embeddings else set()
