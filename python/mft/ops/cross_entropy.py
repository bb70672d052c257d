"""Causal-LM cross-entropy in one C++ kernel each way (csrc/kernels/cross_entropy.cc).

`cross_entropy(logits, labels, fused=True)` takes logits (N, V) float32 and
labels (N,) int32 and returns the mean over the labels that are not
IGNORE_INDEX of logsumexp(logits[r]) - logits[r, label[r]] (0 when all are
ignored): the value of `mft.training.loss.causal_lm_loss`, which is the
composed reference (`fused=False`). The composed loss is about a dozen
kernels forward and backward and writes an N x V log-softmax in the forward;
the fused forward keeps one logsumexp per row for its backward.

A label outside [0, V) that is not IGNORE_INDEX makes the kernel fail
(MindSpore raises a RuntimeError naming MftCrossEntropyForward and code 5).
"""

from __future__ import annotations

import mindspore as ms
from mindspore import ops

from mft.errors import MftError
from mft.ops import registry

FORWARD_OP = "mft.cross_entropy"
BACKWARD_OP = "mft.cross_entropy_backward"
IGNORE_INDEX = -100


def _element_type(dtype):
    return dtype.element_type() if hasattr(dtype, "element_type") else dtype


def _check(logits, labels):
    if len(logits) != 2 or len(labels) != 1 or (logits[0] >= 0 and labels[0] >= 0 and logits[0] != labels[0]):
        raise MftError(f"cross_entropy: logits must be (N, V) and labels (N,); got {tuple(logits)} and {tuple(labels)}")


def _forward_shape(logits, labels, ignore):
    _check(logits, labels)
    return (1,), (logits[0],)


def _forward_dtype(logits, labels, ignore):
    if _element_type(logits) != ms.float32 or _element_type(labels) != ms.int32:
        raise MftError(f"cross_entropy(fused=True): logits must be float32 and labels int32; got {logits}, {labels}")
    return ms.float32, ms.float32


def _backward_shape(logits, labels, lse, dloss, ignore):
    _check(logits, labels)
    return logits


def _backward_dtype(logits, labels, lse, dloss, ignore):
    return logits


def _bprop(logits, labels, ignore, out, dout):
    dlogits = _BACKWARD(logits, labels, out[1], dout[0], ignore)
    return dlogits, ops.zeros_like(labels), ops.zeros_like(ignore)


def fused_ops():
    """(forward, backward) aot primitives, registered on first use; MftError if the kernels cannot run."""
    global _FORWARD, _BACKWARD
    lib = registry.kernels_library()
    _BACKWARD = registry.register_aot_op(BACKWARD_OP, lib, "MftCrossEntropyBackward",
                                         out_shape=_backward_shape, out_dtype=_backward_dtype)
    _FORWARD = registry.register_aot_op(FORWARD_OP, lib, "MftCrossEntropyForward",
                                        out_shape=_forward_shape, out_dtype=_forward_dtype, bprop=_bprop)
    return _FORWARD, _BACKWARD


_FORWARD = _BACKWARD = None
registry.build_at_import(fused_ops)  # graph-mode code reads the ops as globals


def cross_entropy_reference(logits, labels):
    """Composed MindSpore ops: the parity reference (any float dtype; computed in float32)."""
    logits = logits.astype(ms.float32)
    labels = labels.astype(ms.int32)
    mask = (labels != IGNORE_INDEX).astype(ms.float32)
    log_probs = ops.log_softmax(logits, -1)
    picked = ops.gather_elements(log_probs, 1, ops.maximum(labels, 0).reshape(-1, 1)).reshape(-1)
    return -(picked * mask).sum() / ops.maximum(mask.sum(), 1.0)


def cross_entropy(logits, labels, fused=True):
    """Mean token cross-entropy of logits (N, V) against labels (N,); IGNORE_INDEX rows do not count."""
    if not fused:
        return cross_entropy_reference(logits, labels)
    if _FORWARD is None:  # constant at trace time: dead code where the kernels loaded
        fused_ops()  # raises the MftError saying why the kernels are unavailable
    loss, _ = _FORWARD(logits.astype(ms.float32), labels.astype(ms.int32), ops.full((1,), IGNORE_INDEX, dtype=ms.int32))
    return loss.reshape(())
