"""Qwen3-MoE checkpoints use transformers' names (experts.<e>.gate_proj ...), which our cells share."""

from mft.models.common.hf_names import IGNORED_SUFFIXES, optional_tensors, param_to_hf_name  # noqa: F401
