"""Mixtral names its MoE block `block_sparse_moe` and expert linears w1 (gate), w3 (up), w2 (down)."""

from __future__ import annotations

from mft.models.common.hf_names import IGNORED_SUFFIXES, optional_tensors  # noqa: F401

_RENAMES = (
    (".mlp.experts.gate_proj.", ".block_sparse_moe.experts.w1."),
    (".mlp.experts.up_proj.", ".block_sparse_moe.experts.w3."),
    (".mlp.experts.down_proj.", ".block_sparse_moe.experts.w2."),
    (".mlp.gate.", ".block_sparse_moe.gate."),
)


def param_to_hf_name(param_name: str) -> str:
    """The Hugging Face tensor name of an mft parameter (mft's module names renamed to Mixtral's)."""
    for ours, theirs in _RENAMES:
        if ours in param_name:
            return param_name.replace(ours, theirs, 1)
    return param_name
