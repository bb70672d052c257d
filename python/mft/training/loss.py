"""Causal-LM loss: token-level cross-entropy in fp32, mean over non-ignored labels."""

from __future__ import annotations

import mindspore as ms

from mft.ops.cross_entropy import IGNORE_INDEX, cross_entropy


def causal_lm_loss(logits: ms.Tensor, labels: ms.Tensor, fused: bool = False) -> ms.Tensor:
    """logits (B, S, V), labels (B, S) already shifted; IGNORE_INDEX labels do not count.
    `fused`: the C++ kernel (mft.ops.cross_entropy; model.fused_cross_entropy), else composed ops."""
    vocab = logits.shape[-1]
    return cross_entropy(logits.reshape(-1, vocab), labels.reshape(-1), fused)


def fused_causal_lm_loss(logits: ms.Tensor, labels: ms.Tensor) -> ms.Tensor:
    """causal_lm_loss through the C++ kernel (a separate function: graphs take loss functions, not flags)."""
    return causal_lm_loss(logits, labels, True)
