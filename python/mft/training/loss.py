"""Causal-LM loss: token-level cross-entropy in fp32, mean over non-ignored labels."""

from __future__ import annotations

import mindspore as ms
from mindspore import ops

IGNORE_INDEX = -100


def causal_lm_loss(logits: ms.Tensor, labels: ms.Tensor) -> ms.Tensor:
    """logits (B, S, V), labels (B, S) already shifted; IGNORE_INDEX labels do not count."""
    vocab = logits.shape[-1]
    flat_logits = logits.reshape(-1, vocab).astype(ms.float32)
    flat_labels = labels.reshape(-1).astype(ms.int32)
    mask = (flat_labels != IGNORE_INDEX).astype(ms.float32)
    safe_labels = ops.maximum(flat_labels, 0)
    log_probs = ops.log_softmax(flat_logits, -1)
    picked = ops.gather_elements(log_probs, 1, safe_labels.reshape(-1, 1)).reshape(-1)
    return -(picked * mask).sum() / ops.maximum(mask.sum(), 1.0)
