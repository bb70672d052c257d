"""Fused C++ flash attention against composed references: the raw kernels vs
float64 numpy (GQA, seq not a multiple of the 64-row tile, packed documents),
bidirectional (causal=False) documents as vision encoders use them,
bit-identical results for 1/2/3 threads, and the MindSpore op (forward +
gradients) vs attention_reference (odd shapes, GQA, head dims 64/80/128) in PyNative
and inside ms.jit, plus the Attention layer switch `fused_attention`."""

import numpy as np
import pytest

import mindspore as ms
from mindspore import Tensor

from mft import _kernels
from mft.errors import MftError
from mft.ops.attention import attention_reference, flash_attention

ms.set_device("CPU")


def numpy_attention(q, k, v, scale, ends=None, causal=True):
    """float64 forward (out, lse) and a function giving (dq, dk, dv) for a dout."""
    b, h, s, d = q.shape
    rep = h // k.shape[1]
    q64 = q.astype(np.float64)
    kr, vr = (np.repeat(a.astype(np.float64), rep, 1) for a in (k, v))
    allowed = np.broadcast_to(np.tri(s, dtype=bool) if causal else np.ones((s, s), bool), (b, s, s)).copy()
    if ends is not None:
        for i in range(b):
            doc = np.searchsorted(ends[i if ends.shape[0] > 1 else 0], np.arange(s), side="right")
            allowed[i] &= doc[:, None] == doc[None, :]
    sc = np.where(allowed[:, None], q64 @ kr.transpose(0, 1, 3, 2) * scale, -np.inf)
    m = sc.max(-1, keepdims=True)
    p = np.exp(sc - m)
    l = p.sum(-1, keepdims=True)
    p /= l
    out = p @ vr

    def grads(dout):
        do = dout.astype(np.float64)
        dv = p.transpose(0, 1, 3, 2) @ do
        ds = p * (do @ vr.transpose(0, 1, 3, 2) - (do * out).sum(-1, keepdims=True)) * scale
        dq, dk = ds @ kr, ds.transpose(0, 1, 3, 2) @ q64
        fold = lambda g: g.reshape(b, k.shape[1], rep, s, d).sum(2)  # noqa: E731
        return dq, fold(dk), fold(dv)

    return out, (m + np.log(l))[..., 0], grads


def _qkv(b, h, kvh, s, d, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape).astype(np.float32)
            for shape in ((b, h, s, d), (b, kvh, s, d), (b, kvh, s, d), (b, h, s, d)))


CASES = [  # b, heads, kv_heads, seq, head_dim, packed document ends
    (2, 4, 2, 70, 16, None),  # GQA, seq not a multiple of the tile
    (1, 2, 1, 130, 32, np.array([[5, 40, 40, 100]], np.int32)),  # empty doc, tail after the last end
    (2, 2, 2, 65, 8, np.array([[10, 65], [64, 64]], np.int32)),  # per-sample ends
    (1, 3, 3, 1, 4, None),
    # head dims of real models, seq ending mid-tile, GQA ratios 1..4
    (1, 2, 2, 129, 64, None),
    (1, 3, 1, 100, 80, None),
    (2, 4, 2, 150, 96, np.array([[50, 77, 150], [64, 140, 140]], np.int32)),
    (1, 8, 2, 77, 128, None),
]


@pytest.mark.parametrize("b,h,kvh,s,d,ends", CASES)
def test_kernels_match_float64(b, h, kvh, s, d, ends):
    q, k, v, dout = _qkv(b, h, kvh, s, d)
    scale = d**-0.5
    out, lse = _kernels.attention_forward(q, k, v, scale, ends)
    ref_out, ref_lse, grads = numpy_attention(q, k, v, scale, ends)
    np.testing.assert_allclose(out, ref_out, atol=1e-5)
    np.testing.assert_allclose(lse, ref_lse, atol=1e-5)
    for got, want in zip(_kernels.attention_backward(dout, q, k, v, out, lse, scale, ends), grads(dout)):
        np.testing.assert_allclose(got, want, atol=1e-4)


@pytest.mark.parametrize("b,h,kvh,s,d,ends", [
    (2, 4, 2, 70, 16, None),  # one image per row
    (1, 2, 1, 200, 32, np.array([[64, 100, 100, 180]], np.int32)),  # windows: several per row, an empty one, a tail
])
def test_bidirectional_kernels_match_float64(b, h, kvh, s, d, ends):
    """causal=False (vision encoders): a query sees every key of its own document, after it too."""
    q, k, v, dout = _qkv(b, h, kvh, s, d, seed=3)
    scale = d**-0.5
    out, lse = _kernels.attention_forward(q, k, v, scale, ends, causal=False)
    ref_out, ref_lse, grads = numpy_attention(q, k, v, scale, ends, causal=False)
    np.testing.assert_allclose(out, ref_out, atol=1e-5)
    np.testing.assert_allclose(lse, ref_lse, atol=1e-5)
    for got, want in zip(_kernels.attention_backward(dout, q, k, v, out, lse, scale, ends, causal=False), grads(dout)):
        np.testing.assert_allclose(got, want, atol=1e-4)
    causal_out, _ = _kernels.attention_forward(q, k, v, scale, ends)
    assert not np.allclose(causal_out, out, atol=1e-3)  # the flag reaches the kernel


@pytest.mark.parametrize("jit", [False, True])
def test_bidirectional_op_matches_reference(jit):
    q, k, v, w = (Tensor(a) for a in _qkv(1, 4, 2, 90, 16, seed=5))
    ends = Tensor(np.array([[30, 64]], np.int32))
    for e in (None, ends):
        fused = _value_and_grads(True, e, jit, q, k, v, w, causal=False)
        ref = _value_and_grads(False, e, jit, q, k, v, w, causal=False)
        np.testing.assert_allclose(fused[0], ref[0], rtol=1e-5, atol=1e-3)
        for got, want in zip(fused[1:], ref[1:]):
            np.testing.assert_allclose(got, want, atol=1e-4)


def test_kernels_bit_identical_for_any_thread_count():
    q, k, v, dout = _qkv(2, 4, 2, 200, 80, seed=3)
    ends = np.array([[30, 130], [200, 200]], np.int32)
    runs = []
    for threads in (1, 2, 3):
        out, lse = _kernels.attention_forward(q, k, v, 0.1, ends, threads=threads)
        runs.append([out, lse, *_kernels.attention_backward(dout, q, k, v, out, lse, 0.1, ends, threads=threads)])
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            assert a.tobytes() == b.tobytes()


def test_kernel_rejects_bad_inputs():
    q, k, v, _ = _qkv(1, 3, 2, 8, 4)
    with pytest.raises(ValueError, match="multiple of kv_heads"):
        _kernels.attention_forward(q, k, v, 0.5)
    q, k, v, _ = _qkv(1, 2, 1, 8, 4)
    with pytest.raises(ValueError, match="non-decreasing"):
        _kernels.attention_forward(q, k, v, 0.5, np.array([[6, 3]], np.int32))
    with pytest.raises(ValueError, match="within"):
        _kernels.attention_forward(q, k, v, 0.5, np.array([[9]], np.int32))


def _value_and_grads(fused, ends, jit, q, k, v, w, causal=True):
    def loss(q, k, v):
        return (flash_attention(q, k, v, actual_seq_len=ends, fused=fused, causal=causal) * w).sum()

    fn = ms.value_and_grad(loss, grad_position=(0, 1, 2))
    if jit:
        fn = ms.jit(fn)
    value, grads = fn(q, k, v)
    return [value.asnumpy()] + [g.asnumpy() for g in grads]


@pytest.mark.parametrize("b,h,kvh,s,d,ends", [
    (1, 4, 1, 97, 80, None),  # GQA 4:1, seq not a multiple of the tile, d=80
    (2, 2, 2, 130, 64, [[20, 90], [130, 130]]),  # packed documents, d=64
    (1, 2, 1, 66, 128, None),
])
def test_op_odd_shapes_match_reference(b, h, kvh, s, d, ends):
    q, k, v, w = (Tensor(a) for a in _qkv(b, h, kvh, s, d, seed=4))
    e = None if ends is None else Tensor(np.array(ends, np.int32))
    fused = _value_and_grads(True, e, False, q, k, v, w)
    ref = _value_and_grads(False, e, False, q, k, v, w)
    np.testing.assert_allclose(fused[0], ref[0], rtol=1e-5, atol=1e-3)
    for got, want in zip(fused[1:], ref[1:]):
        np.testing.assert_allclose(got, want, atol=2e-4)


@pytest.mark.parametrize("jit", [False, True])
def test_op_forward_and_grads_match_reference(jit):
    q, k, v, w = (Tensor(a) for a in _qkv(2, 4, 2, 70, 16, seed=1))
    ends = Tensor(np.array([[10, 40], [70, 70]], np.int32))
    for e in (None, ends):
        fused = _value_and_grads(True, e, jit, q, k, v, w)
        ref = _value_and_grads(False, e, jit, q, k, v, w)
        np.testing.assert_allclose(fused[0], ref[0], rtol=1e-5, atol=1e-3)  # a sum of 9k terms
        for got, want in zip(fused[1:], ref[1:]):
            np.testing.assert_allclose(got, want, atol=1e-4)
    out = flash_attention(q, k, v, fused=True).asnumpy()
    np.testing.assert_allclose(out, attention_reference(q, k, v).asnumpy(), atol=1e-5)


def _offset_problem(b, h, kvh, s, kv, d, seed):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape).astype(np.float32)
            for shape in ((b, h, s, d), (b, kvh, kv, d), (b, kvh, kv, d), (b, h, s, d)))


@pytest.mark.parametrize("b,h,kvh,s,kv,off,ends", [
    (1, 4, 2, 40, 120, 80, None),  # a context-parallel chunk: queries 80..119 against the keys 0..119
    (2, 2, 1, 70, 200, 100, None),  # offset mid-tile, GQA 2:1, keys after the last query (zero dk, dv)
    (2, 2, 2, 30, 90, 33, [[20, 60, 90], [50, 50, 80]]),  # packed documents in key positions
])
def test_query_offset_kernels_match_float64_and_op_matches_reference(b, h, kvh, s, kv, off, ends):
    """q's rows are positions off.. of the kv keys: the C++ kernels against float64 (the whole key sequence
    as the query rows of a bigger problem, rows off..off+s kept), and the MindSpore op's forward and
    gradients against the composed reference with the same offset (what parallel.cp runs)."""
    q, k, v, dout = _offset_problem(b, h, kvh, s, kv, 16, seed=off)
    e = None if ends is None else np.array(ends, np.int32)
    full_q = np.zeros((b, h, kv, 16), np.float32)
    full_q[:, :, off:off + s] = q
    full_dout = np.zeros_like(full_q)
    full_dout[:, :, off:off + s] = dout
    want_out, want_lse, grads = numpy_attention(full_q, k, v, 0.25, e)
    want_dq, want_dk, want_dv = grads(full_dout)  # rows outside off..off+s have zero dout: no dk, dv share
    out, lse = _kernels.attention_forward(q, k, v, 0.25, e, q_offset=off)
    np.testing.assert_allclose(out, want_out[:, :, off:off + s], atol=1e-5)
    np.testing.assert_allclose(lse, want_lse[:, :, off:off + s], atol=1e-5)
    dq, dk, dv = _kernels.attention_backward(dout, q, k, v, out, lse, 0.25, e, q_offset=off)
    np.testing.assert_allclose(dq, want_dq[:, :, off:off + s], atol=1e-4)
    np.testing.assert_allclose(dk, want_dk, atol=1e-4)
    np.testing.assert_allclose(dv, want_dv, atol=1e-4)
    if ends is None:
        assert not dk[:, :, off + s:].any() and not dv[:, :, off + s:].any()  # keys no query sees

    tq, tk, tv, tw = (Tensor(a) for a in (q, k, v, dout))
    te = None if e is None else Tensor(e)

    def loss(fused):
        return lambda q, k, v: (flash_attention(q, k, v, 0.25, te, fused, True, off) * tw).sum()

    got = ms.value_and_grad(loss(True), grad_position=(0, 1, 2))(tq, tk, tv)
    ref = ms.value_and_grad(loss(False), grad_position=(0, 1, 2))(tq, tk, tv)
    np.testing.assert_allclose(got[0].asnumpy(), ref[0].asnumpy(), rtol=1e-5, atol=1e-3)
    for name, g, r in zip("qkv", got[1], ref[1]):
        np.testing.assert_allclose(g.asnumpy(), r.asnumpy(), atol=2e-4, err_msg=f"d{name}")


def test_query_offset_out_of_range_is_an_mft_error_in_pynative_and_graph():
    q, k, v, _ = (Tensor(a) for a in _offset_problem(1, 2, 1, 8, 24, 8, seed=0))
    with pytest.raises(MftError, match="q_offset=17 with 8 queries needs at least 25 keys; k has 24"):
        flash_attention(q, k, v, q_offset=17)

    def too_far(q, k, v):
        return flash_attention(q, k, v, None, None, True, True, 17)

    with pytest.raises(MftError, match="q_offset=17"):  # also while a graph compiles
        ms.jit(too_far)(q, k, v)
    with pytest.raises(ValueError, match="within the kv_seq keys"):
        _kernels.attention_forward(q.asnumpy(), k.asnumpy(), v.asnumpy(), 0.5, q_offset=17)


def test_op_rejects_bad_shapes_and_dtypes():
    q, k, v, _ = (Tensor(a) for a in _qkv(1, 3, 2, 8, 4))
    with pytest.raises(MftError, match="multiple of kv_heads"):
        flash_attention(q, k, v)
    q, k, v, _ = (Tensor(a) for a in _qkv(1, 2, 1, 8, 4))
    with pytest.raises(MftError, match="float32"):
        flash_attention(q.astype(ms.float16), k.astype(ms.float16), v.astype(ms.float16))


def test_attention_layer_switch():
    from mft.models.common.attention import Attention, causal_mask
    from mft.models.common.rope import RotaryEmbedding

    ms.set_seed(0)
    plain = Attention(32, 4, 2, 8)
    fused = Attention(32, 4, 2, 8, fused_attention=True)
    for (_, a), (_, b) in zip(plain.parameters_and_names(), fused.parameters_and_names()):
        b.set_data(a.data.copy())
    s = 20
    x = Tensor(np.random.default_rng(2).standard_normal((2, s, 32)).astype(np.float32))
    slots = ms.ops.arange(0, s, dtype=ms.int32)
    cos, sin = RotaryEmbedding("default", 8, 10000.0, {})(slots)
    mask = causal_mask(slots, s)

    def run(layer):
        def loss(x):
            return (layer(x, cos, sin, mask)[0] ** 2).sum()

        fn = ms.jit(ms.value_and_grad(loss, None, layer.trainable_params()))
        value, grads = fn(x)
        return [value.asnumpy()] + [g.asnumpy() for g in grads]

    for got, want in zip(run(fused), run(plain)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
