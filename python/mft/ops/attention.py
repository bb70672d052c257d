"""Self-attention: fused C++ flash attention and its MindSpore reference.

`flash_attention(q, k, v, scale=None, actual_seq_len=None, fused=True, causal=True, q_offset=0)`
takes q (B, heads, S, D) and k, v (B, kv_heads, L, D) float32, with heads a
multiple of kv_heads (GQA: query head h uses kv head h // (heads // kv_heads)),
and returns (B, heads, S, D). The S queries are the positions
[q_offset, q_offset + S) of the L keys (plain self-attention: L = S,
q_offset = 0; context parallelism passes one chunk's queries with the keys of
the sequence up to the chunk's end, q_offset = its first position):
q_offset + S <= L, query i sees keys j <= q_offset + i. `actual_seq_len`
(optional, int32, (B, N) or (N,)) packs several documents in one row:
cumulative document ends in key positions, non-decreasing, each <= L; a query
attends only to earlier keys of its own document, or with causal=False to
every key of its own document (vision encoders: one image or one attention
window per document).

fused=True runs csrc/kernels/attention.cc through MindSpore's aot Custom op:
a tiled online-softmax forward that keeps only the per-row log-sum-exp
(B, heads, S), and a FlashAttention-2 backward that recomputes the
probabilities tile by tile, so memory grows linearly with S. It works in
PyNative and inside `ms.jit` train steps (CPU target, float32).
fused=False (`attention_reference`) is the composed matmul + mask + softmax +
matmul it is tested against.
"""

from __future__ import annotations

import mindspore as ms
from mindspore import mint, ops
from mindspore.ops import constexpr

from mft.errors import MftError
from mft.ops import registry

FORWARD_OP = "mft.attention"
BACKWARD_OP = "mft.attention_backward"
_MASKED = float(-3.4028234663852886e38)


def repeat_kv(x, n_rep: int):
    """(B, kv_heads, L, D) -> (B, kv_heads * n_rep, L, D), each kv head repeated n_rep times in place."""
    if n_rep == 1:
        return x
    b, kvh, s, d = x.shape
    return x.expand_dims(2).broadcast_to((b, kvh, n_rep, s, d)).reshape(b, kvh * n_rep, s, d)


def softmax_attention(q, k, v, scale: float, mask):
    """The one composed attention (the models' eager path and the kernels' reference): keys/values repeated to
    every query head (GQA), fp32 scores q k^T * scale plus an additive fp32 `mask` (0 or fp32-min, broadcast
    to (B, H, S, L)), fp32 softmax, times v. q (B, H, S, D), k/v (B, kv_heads, L, D) -> (B, H, S, Dv)."""
    n_rep = q.shape[1] // k.shape[1]
    k = repeat_kv(k, n_rep)
    v = repeat_kv(v, n_rep)
    scores = (mint.matmul(q, k.swapaxes(-1, -2)) * scale).astype(ms.float32) + mask
    probs = mint.nn.functional.softmax(scores, dim=-1).astype(q.dtype)
    return mint.matmul(probs, v)


def _ends_2d(actual_seq_len):
    ends = actual_seq_len.astype(ms.int32)
    return ends.reshape(1, -1) if ends.ndim == 1 else ends


def packed_causal_mask(seq_len, actual_seq_len=None, causal=True, kv_len=None, q_offset=0):
    """Boolean (1 or B, 1, S, L): key j visible from query i at position q_offset + i (causal or not, same
    document); L = kv_len (default S)."""
    kv_len = seq_len if kv_len is None else kv_len
    keys = ops.arange(0, kv_len, dtype=ms.int32)
    pos = ops.arange(q_offset, q_offset + seq_len, dtype=ms.int32)
    if causal:
        allowed = (keys.reshape(1, -1) <= pos.reshape(-1, 1)).expand_dims(0)
    else:
        allowed = ops.ones((1, seq_len, kv_len), ms.bool_)
    if actual_seq_len is not None:
        ends = _ends_2d(actual_seq_len)  # (B, N): doc id of position p = #ends <= p
        doc_k = (ends.expand_dims(1) <= keys.reshape(1, -1, 1)).astype(ms.int32).sum(-1)  # (B, L)
        doc_q = (ends.expand_dims(1) <= pos.reshape(1, -1, 1)).astype(ms.int32).sum(-1)  # (B, S)
        allowed = mint.logical_and(allowed, doc_q.expand_dims(2) == doc_k.expand_dims(1))
    return allowed.expand_dims(1)


def attention_reference(q, k, v, scale=None, actual_seq_len=None, causal=True, q_offset=0):
    """Composed MindSpore ops (matmul, mask, fp32 softmax, matmul); any device/dtype."""
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    allowed = packed_causal_mask(q.shape[2], actual_seq_len, causal, k.shape[2], q_offset)
    mask = mint.where(allowed, ms.Tensor(0.0, ms.float32), ms.Tensor(_MASKED, ms.float32))
    return softmax_attention(q, k, v, scale, mask)


def _check_shapes(q, k, v, ends=None):
    if len(q) != 4 or len(k) != 4 or len(v) != 4:
        raise MftError(f"attention: q, k, v must be 4-D (batch, heads, seq, head_dim); got q {tuple(q)}, "
                       f"k {tuple(k)}, v {tuple(v)}")
    b, h, s, d = q
    if tuple(k) != tuple(v) or k[0] != b or k[2] < s or k[3] != d:
        raise MftError(f"attention: k and v must be (batch, kv_heads, kv_seq >= {s}, head_dim) = ({b}, kv_heads, "
                       f"kv_seq, {d}); got k {tuple(k)}, v {tuple(v)}")
    if k[1] <= 0 or h % k[1] != 0:
        raise MftError(f"attention: heads ({h}) must be a multiple of kv_heads ({k[1]})")
    if ends is not None and (len(ends) != 2 or ends[0] not in (1, b)):
        raise MftError(f"attention: actual_seq_len must be (batch, n) or (n,) cumulative ends; got shape {tuple(ends)}")


def _element_type(dtype):
    return dtype.element_type() if hasattr(dtype, "element_type") else dtype


def _check_dtypes(*named):
    for what, dt in named:
        if _element_type(dt) != ms.float32:
            raise MftError(f"attention(fused=True): {what} dtype {dt} is not supported by the C++ kernel "
                           "(float32); use fused=False")


def _forward_shape(q, k, v, scale, ends, offset):
    _check_shapes(q, k, v, ends)
    return q, q[:3]


def _forward_dtype(q, k, v, scale, ends, offset):
    _check_dtypes(("q", q), ("k", k), ("v", v))
    if _element_type(ends) != ms.int32:
        raise MftError(f"attention: actual_seq_len must be int32, got {ends}")
    return q, ms.float32


def _backward_shape(dout, q, k, v, out, lse, scale, ends, offset):
    _check_shapes(q, k, v, ends)
    return q, k, v


def _backward_dtype(dout, q, k, v, out, lse, scale, ends, offset):
    return q, k, v


def _bprop(q, k, v, scale, ends, offset, out, dout):
    o, lse = out
    dq, dk, dv = _BACKWARD(dout[0], q, k, v, o, lse, scale, ends, offset)  # lse is not differentiated
    return dq, dk, dv, ops.zeros_like(scale), ops.zeros_like(ends), ops.zeros_like(offset)


def fused_ops():
    """(forward, backward) aot primitives (registered on first use).

    forward(q, k, v, scale[1] f32 (causal) or [2] = (scale, 0) (bidirectional), seq_ends (1|B, N) i32,
            q_offset[1] i32) -> (out, lse);
    backward(dout, q, k, v, out, lse, scale, seq_ends, q_offset) -> (dq, dk, dv).
    """
    global _FORWARD, _BACKWARD
    lib = registry.kernels_library()
    _BACKWARD = registry.register_aot_op(BACKWARD_OP, lib, "MftAttentionBackward",
                                         out_shape=_backward_shape, out_dtype=_backward_dtype)
    _FORWARD = registry.register_aot_op(FORWARD_OP, lib, "MftAttentionForward",
                                        out_shape=_forward_shape, out_dtype=_forward_dtype, bprop=_bprop)
    return _FORWARD, _BACKWARD


_FORWARD = _BACKWARD = None
registry.build_at_import(fused_ops)  # graph-mode code reads the ops as globals


@constexpr
def _check_offset(q_offset, queries, keys):
    """Runs in Python, also while a graph compiles (graph code itself can raise only builtin exceptions)."""
    if q_offset < 0 or q_offset + queries > keys:
        raise MftError(f"attention: q_offset={q_offset} with {queries} queries needs at least "
                       f"{q_offset + queries} keys; k has {keys}")


def flash_attention(q, k, v, scale=None, actual_seq_len=None, fused=True, causal=True, q_offset=0):
    """Causal (or bidirectional, causal=False) attention (B, heads, S, D); see the module docstring.

    Inside `ms.jit`, `scale` and `q_offset` must be Python numbers (scale None = head_dim**-0.5).
    """
    _check_offset(q_offset, q.shape[2], k.shape[2])
    if not fused:
        return attention_reference(q, k, v, scale, actual_seq_len, causal, q_offset)
    if _FORWARD is None:
        fused_ops()  # raises the MftError saying why the kernels are unavailable
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    if actual_seq_len is None:
        ends = ops.full((1, 1), k.shape[2], dtype=ms.int32)  # one document per row = plain causal
    else:
        ends = _ends_2d(actual_seq_len)
    # the direction rides in the scale input: (scale,) causal, (scale, 0) bidirectional
    scale_in = ops.full((1,), scale, dtype=ms.float32) if causal else ms.Tensor([scale, 0.0], ms.float32)
    out, _ = _FORWARD(q, k, v, scale_in, ends, ops.full((1,), q_offset, dtype=ms.int32))
    return out
