"""MoE routing: router gating and token permute/unpermute, fused C++ and MindSpore references.

Gating — `moe_gating(logits, top_k, ...)` -> (topk_weights (T, k) float32, topk_ids (T, k) int32):
  scores = softmax(logits) ("softmax") or sigmoid(logits) ("sigmoid", DeepSeek-V3);
  selection uses scores + e_score_correction_bias (if given) restricted to the
  best `topk_group` of `n_group` expert groups (group score: sum of its two
  best experts for sigmoid, its best expert for softmax; dropped groups' experts
  score 0.0, as HF masks them); the weights are the unbiased scores of the k
  chosen experts (descending by selection score), divided by their sum if
  norm_topk_prob, times routed_scaling_factor. Gradients reach logits through
  the weights; ids and the bias get none.
  Same semantics as mft.models.common.moe.TopKRouter (its softmax path has
  n_group = 1 and scale 1).

Permute — `moe_permute(x (T, H), topk_ids (T, k), num_experts)` ->
  (x_sorted (T*k, H), row_map (T*k,) int32, tokens_per_expert (E,) int32):
  each (token, slot) row copied to its expert's block, experts in ascending
  order, rows in token order inside a block; row_map[r] = token * k + slot of
  sorted row r. `moe_unpermute(y_sorted, row_map, topk_weights)` -> (T, H) sums
  each token's k expert outputs weighted by topk_weights. Both are
  differentiable (permute's backward is an unweighted unpermute; unpermute's
  weight gradient is <y_sorted row, dout row>).

fused=True runs csrc/kernels/moe_routing.cc through MindSpore's aot Custom
op (CPU target, float32), in PyNative and inside ms.jit train steps.
"""

from __future__ import annotations

import mindspore as ms
from mindspore import ops
from mindspore.ops import constexpr

from mft.errors import MftError
from mft.ops import registry

SCORINGS = ("softmax", "sigmoid")
GATING_OP = "mft.moe_gating"
GATING_BACKWARD_OP = "mft.moe_gating_backward"
PERMUTE_OP = "mft.moe_permute"
UNPERMUTE_OP = "mft.moe_unpermute"
UNPERMUTE_BACKWARD_OP = "mft.moe_unpermute_backward"


def check_gating_config(num_experts, top_k, scoring, n_group, topk_group):
    """Raises MftError naming the bad router setting (runs in Python even inside ms.jit)."""
    _check_gating_config(num_experts, top_k, scoring, n_group, topk_group)


@constexpr  # executed by Python at trace time: graph code may not raise MftError itself
def _check_gating_config(num_experts, top_k, scoring, n_group, topk_group):
    if scoring not in SCORINGS:
        raise MftError(f"moe_gating: scoring must be one of {SCORINGS}, got {scoring!r}")
    if not 1 <= top_k <= num_experts:
        raise MftError(f"moe_gating: top_k ({top_k}) must be in [1, num_experts={num_experts}]")
    if n_group < 1 or num_experts % n_group:
        raise MftError(f"moe_gating: num_experts ({num_experts}) must be a multiple of n_group ({n_group})")
    if not 1 <= topk_group <= n_group:
        raise MftError(f"moe_gating: topk_group ({topk_group}) must be in [1, n_group={n_group}]")
    if n_group > 1 and topk_group * (num_experts // n_group) < top_k:
        raise MftError(f"moe_gating: topk_group={topk_group} groups of {num_experts // n_group} experts "
                       f"hold fewer than top_k={top_k} experts")
    if n_group > 1 and scoring == "sigmoid" and num_experts // n_group < 2:
        raise MftError("moe_gating: sigmoid group scores sum each group's two best experts; "
                       f"groups of {num_experts // n_group} expert are too small")


# ----------------------------------------------------------------- references

def keep_best_groups(choice, n_group: int, topk_group: int, scoring: str):
    """choice (T, E) with the experts outside each row's best `topk_group` of `n_group` groups set to 0.0 (as HF
    masks them). Group score: the sum of its two best experts (sigmoid) or its best (softmax). Exactly
    `topk_group` groups stay; a tie goes to the lower group index, as in the C++ kernel and torch.topk. The one
    rule for the model's router (mft.models.common.moe.TopKRouter) and the reference below."""
    t, e = choice.shape
    grouped = choice.reshape(t, n_group, e // n_group)
    group_scores = ops.topk(grouped, 2)[0].sum(-1) if scoring == "sigmoid" else ops.amax(grouped, -1)
    # A group's rank: the groups scoring higher, plus the equal ones at a lower index. (MindSpore's CPU topk
    # breaks ties its own way, so the rank is counted: n_group is small.)
    mine, other = group_scores.expand_dims(-1), group_scores.expand_dims(-2)  # (T, G, 1), (T, 1, G)
    index = ops.arange(0, n_group, dtype=ms.int32)
    lower = index.expand_dims(0) < index.expand_dims(1)  # [i, j]: j < i
    ahead = ops.logical_or(other > mine, ops.logical_and(other == mine, lower))
    keep = (ahead.astype(ms.int32).sum(-1) < topk_group).astype(choice.dtype)  # (T, G)
    return choice * keep.expand_dims(-1).broadcast_to(grouped.shape).reshape(t, e)


def moe_gating_reference(logits, top_k, scoring="softmax", n_group=1, topk_group=1, norm_topk_prob=False,
                         routed_scaling_factor=1.0, e_score_correction_bias=None):
    """Composed MindSpore ops; the parity reference for the fused gating."""
    logits = logits.astype(ms.float32)
    t, e = logits.shape
    check_gating_config(e, top_k, scoring, n_group, topk_group)
    scores = ops.sigmoid(logits) if scoring == "sigmoid" else ops.softmax(logits, -1)
    choice = scores if e_score_correction_bias is None else scores + e_score_correction_bias.astype(ms.float32)
    choice = ops.stop_gradient(choice)
    if n_group > 1:
        choice = keep_best_groups(choice, n_group, topk_group, scoring)
    ids = ops.topk(choice, top_k)[1].astype(ms.int32)
    weights = ops.gather_elements(scores, 1, ids)
    if norm_topk_prob:
        weights = weights / (weights.sum(-1, keepdims=True) + 1e-20)
    return weights * routed_scaling_factor, ids


def moe_permute_reference(x, topk_ids, num_experts):
    """Composed ops: a stable sort of (expert, flat index) keys, then a gather."""
    t, k = topk_ids.shape
    flat = topk_ids.reshape(-1).astype(ms.int32)
    key = flat * (t * k) + ops.arange(0, t * k, dtype=ms.int32)  # unique, so any sort is stable
    _, row_map = ops.sort(key.astype(ms.float32))  # exact while E*T*k < 2**24
    row_map = row_map.astype(ms.int32)
    x_sorted = ops.gather(x, row_map // k, 0)
    counts = ops.one_hot(flat, num_experts, ms.Tensor(1, ms.int32), ms.Tensor(0, ms.int32)).sum(0)
    return x_sorted, row_map, counts.astype(ms.int32)


def moe_unpermute_reference(y_sorted, row_map, topk_weights):
    """Composed ops: weight each sorted row, segment-sum rows back to their tokens."""
    t, k = topk_weights.shape
    w = ops.gather(topk_weights.reshape(-1), row_map, 0).astype(y_sorted.dtype)
    return ops.unsorted_segment_sum(y_sorted * w.expand_dims(-1), row_map // k, t)


# ----------------------------------------------------------------- aot ops

def _element_type(dtype):
    return dtype.element_type() if hasattr(dtype, "element_type") else dtype


def _require(what, dtype, want):
    if _element_type(dtype) != want:
        raise MftError(f"moe routing (fused=True): {what} must be {want}, got {dtype}; use fused=False")


def _gating_shape(logits, bias, cfg):
    if len(logits) != 2 or len(bias) != 1 or bias[0] != logits[1] or len(cfg) != 2 or cfg[1] != 5:
        raise MftError(f"moe_gating: logits must be (tokens, experts) and the bias (experts,); got logits "
                       f"{tuple(logits)}, bias {tuple(bias)}")
    out = [logits[0], cfg[0]]
    return out, out


def _gating_dtype(logits, bias, cfg):
    _require("logits", logits, ms.float32)
    _require("e_score_correction_bias", bias, ms.float32)
    return ms.float32, ms.int32


def _gating_bprop(logits, bias, cfg, out, dout):
    dlogits = _GATING_BACKWARD(dout[0], logits, bias, cfg, out[1])
    return dlogits, ops.zeros_like(bias), ops.zeros_like(cfg)


def _permute_shape(x, ids, experts):
    if len(x) != 2 or len(ids) != 2 or ids[0] != x[0] or len(experts) != 1:
        raise MftError(f"moe_permute: x must be (tokens, hidden) and topk_ids (tokens, k); got x {tuple(x)}, "
                       f"topk_ids {tuple(ids)}")
    return [x[0] * ids[1], x[1]], [x[0] * ids[1]], [experts[0]]


def _permute_dtype(x, ids, experts):
    _require("x", x, ms.float32)
    _require("topk_ids", ids, ms.int32)
    return ms.float32, ms.int32, ms.int32


def _permute_bprop(x, ids, experts, out, dout):
    row_map = out[1]
    ones = ops.ones(ids.shape, ms.float32)
    return _UNPERMUTE(dout[0], row_map, ones), ops.zeros_like(ids), ops.zeros_like(experts)


def _unpermute_shape(y, row_map, w):
    if len(y) != 2 or len(w) != 2 or y[0] != w[0] * w[1] or tuple(row_map) != (y[0],):
        raise MftError(f"moe_unpermute: y_sorted must be (tokens*k, hidden), row_map (tokens*k,), "
                       f"topk_weights (tokens, k); got {tuple(y)}, {tuple(row_map)}, {tuple(w)}")
    return [w[0], y[1]]


def _unpermute_dtype(y, row_map, w):
    _require("y_sorted", y, ms.float32)
    _require("row_map", row_map, ms.int32)
    _require("topk_weights", w, ms.float32)
    return ms.float32


def _unpermute_bprop(y, row_map, w, out, dout):
    dy, dw = _UNPERMUTE_BACKWARD(dout, y, row_map, w)
    return dy, ops.zeros_like(row_map), dw


def fused_ops():
    """Registers the aot primitives (once); returns them by name.

    gating(logits, bias (E,), cfg (k, 5)) -> (weights, ids), cfg rows =
    [sigmoid, n_group, topk_group, norm_topk_prob, routed_scaling_factor];
    permute(x, ids, experts (E,) int32) -> (x_sorted, row_map, counts);
    unpermute(y_sorted, row_map, weights) -> out. (cfg's first dimension and
    experts' length carry k and E into shape inference.)
    """
    global _GATING, _GATING_BACKWARD, _PERMUTE, _UNPERMUTE, _UNPERMUTE_BACKWARD
    lib = registry.kernels_library()
    reg = registry.register_aot_op
    _GATING_BACKWARD = reg(GATING_BACKWARD_OP, lib, "MftMoeGatingBackward",
                           out_shape=lambda dw, logits, bias, cfg, ids: logits,
                           out_dtype=lambda dw, logits, bias, cfg, ids: ms.float32)
    _GATING = reg(GATING_OP, lib, "MftMoeGatingForward", out_shape=_gating_shape, out_dtype=_gating_dtype,
                  bprop=_gating_bprop)
    _UNPERMUTE_BACKWARD = reg(UNPERMUTE_BACKWARD_OP, lib, "MftMoeUnpermuteBackward",
                              out_shape=lambda dout, y, row_map, w: (y, w),
                              out_dtype=lambda dout, y, row_map, w: (ms.float32, ms.float32))
    _UNPERMUTE = reg(UNPERMUTE_OP, lib, "MftMoeUnpermute", out_shape=_unpermute_shape,
                     out_dtype=_unpermute_dtype, bprop=_unpermute_bprop)
    _PERMUTE = reg(PERMUTE_OP, lib, "MftMoePermute", out_shape=_permute_shape, out_dtype=_permute_dtype,
                   bprop=_permute_bprop)
    return {"gating": _GATING, "permute": _PERMUTE, "unpermute": _UNPERMUTE}


_GATING = _GATING_BACKWARD = _PERMUTE = _UNPERMUTE = _UNPERMUTE_BACKWARD = None
registry.build_at_import(fused_ops)  # graph-mode code reads the ops as globals


def moe_gating(logits, top_k, scoring="softmax", n_group=1, topk_group=1, norm_topk_prob=False,
               routed_scaling_factor=1.0, e_score_correction_bias=None, fused=True):
    """(topk_weights (T, k) float32, topk_ids (T, k) int32); see the module docstring.

    Inside ms.jit every argument but logits / e_score_correction_bias must be a Python constant.
    """
    if not fused:
        return moe_gating_reference(logits, top_k, scoring, n_group, topk_group, norm_topk_prob,
                                    routed_scaling_factor, e_score_correction_bias)
    check_gating_config(logits.shape[-1], top_k, scoring, n_group, topk_group)
    if _GATING is None:
        fused_ops()  # raises the MftError saying why the kernels are unavailable
    bias = e_score_correction_bias
    if bias is None:
        bias = ops.zeros((logits.shape[-1],), ms.float32)
    row = ms.Tensor([1.0 if scoring == "sigmoid" else 0.0, float(n_group), float(topk_group),
                     1.0 if norm_topk_prob else 0.0, float(routed_scaling_factor)], ms.float32)
    cfg = ops.tile(row.reshape(1, 5), (top_k, 1))
    return _GATING(logits.astype(ms.float32), bias.astype(ms.float32), cfg)


def moe_permute(x, topk_ids, num_experts, fused=True):
    """(x_sorted (T*k, H), row_map (T*k,) int32, tokens_per_expert (E,) int32)."""
    if not fused:
        return moe_permute_reference(x, topk_ids, num_experts)
    if _PERMUTE is None:
        fused_ops()
    return _PERMUTE(x, topk_ids.astype(ms.int32), ops.zeros((num_experts,), ms.int32))


def moe_unpermute(y_sorted, row_map, topk_weights, fused=True):
    """(T, H): sum over each token's k sorted rows, weighted by topk_weights."""
    if not fused:
        return moe_unpermute_reference(y_sorted, row_map, topk_weights)
    if _UNPERMUTE is None:
        fused_ops()
    return _UNPERMUTE(y_sorted, row_map, topk_weights)


__all__ = [
    "check_gating_config",
    "moe_gating",
    "moe_gating_reference",
    "moe_permute",
    "moe_permute_reference",
    "moe_unpermute",
    "moe_unpermute_reference",
]
