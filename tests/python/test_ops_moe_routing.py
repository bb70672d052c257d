"""Fused MoE routing (csrc/kernels/moe_routing.cc) against its composed
references and against the model's own router/dispatch (mft.models.common.moe):
gating forward + logits gradient for softmax / sigmoid / grouped / biased
routers, permute/unpermute forward + gradients, a jitted value_and_grad
through the whole routing, and bad input."""

import numpy as np
import pytest

import mindspore as ms
from mindspore import Tensor, mint, ops

from mft.errors import MftError
from mft.models.common.moe import MoE, TopKRouter
from mft.ops.moe_routing import (
    moe_gating,
    moe_gating_reference,
    moe_permute,
    moe_unpermute,
)

ms.set_device("CPU")
T, E, K, H = 12, 8, 2, 6
RNG = np.random.default_rng(7)
LOGITS = Tensor(RNG.standard_normal((T, E)).astype(np.float32))
BIAS = Tensor((RNG.standard_normal(E) * 0.2).astype(np.float32))
CONFIGS = {
    "softmax": dict(scoring="softmax"),
    "softmax_norm": dict(scoring="softmax", norm_topk_prob=True),
    "softmax_groups": dict(scoring="softmax", n_group=4, topk_group=2, routed_scaling_factor=1.5),
    "sigmoid_deepseek": dict(scoring="sigmoid", n_group=4, topk_group=2, norm_topk_prob=True,
                             routed_scaling_factor=2.5, e_score_correction_bias=BIAS),
    "sigmoid_plain": dict(scoring="sigmoid"),
}


def numpy_gating(logits, k, scoring="softmax", n_group=1, topk_group=1, norm_topk_prob=False,
                 routed_scaling_factor=1.0, e_score_correction_bias=None):
    """float64 statement of the documented semantics (ties cannot occur with random logits)."""
    lg = logits.astype(np.float64)
    if scoring == "sigmoid":
        s = 1 / (1 + np.exp(-lg))
    else:
        s = np.exp(lg - lg.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
    choice = s + (0 if e_score_correction_bias is None else e_score_correction_bias.asnumpy())
    t, e = lg.shape
    if n_group > 1:
        g = choice.reshape(t, n_group, e // n_group)
        gs = np.sort(g, -1)[..., -2:].sum(-1) if scoring == "sigmoid" else g.max(-1)
        keep = np.zeros_like(gs)
        np.put_along_axis(keep, np.argsort(-gs, -1)[:, :topk_group], 1, -1)
        choice = (g * keep[..., None]).reshape(t, e)
    ids = np.argsort(-choice, -1, kind="stable")[:, :k]
    w = np.take_along_axis(s, ids, -1)
    if norm_topk_prob:
        w = w / w.sum(-1, keepdims=True)
    return w * routed_scaling_factor, ids


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_gating_matches_numpy_and_reference(name):
    cfg = CONFIGS[name]
    w, ids = moe_gating(LOGITS, K, **cfg)
    want_w, want_ids = numpy_gating(LOGITS.asnumpy(), K, **cfg)
    assert ids.dtype == ms.int32 and w.dtype == ms.float32
    np.testing.assert_array_equal(ids.asnumpy(), want_ids)
    np.testing.assert_allclose(w.asnumpy(), want_w, rtol=1e-5, atol=1e-6)
    rw, rids = moe_gating_reference(LOGITS, K, **cfg)
    np.testing.assert_array_equal(ids.asnumpy(), rids.asnumpy())
    np.testing.assert_allclose(w.asnumpy(), rw.asnumpy(), rtol=1e-5, atol=1e-6)

    dw = Tensor(RNG.standard_normal((T, K)).astype(np.float32))
    grad = {f: ms.grad(lambda lg, f=f: (moe_gating(lg, K, fused=f, **cfg)[0] * dw).sum())(LOGITS)
            for f in (True, False)}
    assert np.abs(grad[False].asnumpy()).max() > 1e-4  # the gradient really flows
    np.testing.assert_allclose(grad[True].asnumpy(), grad[False].asnumpy(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("router_kw", [
    dict(scoring="softmax", norm_topk_prob=True),  # Mixtral / Qwen3-MoE
    dict(scoring="sigmoid", norm_topk_prob=True, n_group=4, topk_group=2, routed_scaling_factor=2.5,
         correction_bias=True),  # DeepSeek-V3
])
def test_gating_matches_model_router(router_kw):
    router = TopKRouter(H, E, K, **router_kw)
    kw = {k: v for k, v in router_kw.items() if k != "correction_bias"}
    if router_kw.get("correction_bias"):
        router.e_score_correction_bias.set_data(BIAS)
        kw["e_score_correction_bias"] = router.e_score_correction_bias
    x = Tensor(RNG.standard_normal((T, H)).astype(np.float32))
    logits, _, want_ids, want_w = router(x)
    w, ids = moe_gating(logits, K, **kw)
    np.testing.assert_array_equal(ids.asnumpy(), want_ids.asnumpy())
    np.testing.assert_allclose(w.asnumpy(), want_w.asnumpy(), rtol=1e-5, atol=1e-6)


def test_group_ties_keep_exactly_topk_group_groups_the_lower_index_first():
    """One rule for tied group scores (the model's router, the reference and the kernel): exactly topk_group
    groups are kept and a tie goes to the lower group index. 8 experts in 4 groups of 2; groups 1, 2 and 3
    tie, group 0 is best; topk_group 2 keeps groups 0 and 1."""
    e, n_group = 8, 4
    row = np.array([3.0, 2.0, 1.0, 0.5, 1.0, 0.5, 1.0, 0.5], np.float32)  # sigmoid group scores: g0 > g1 = g2 = g3
    logits = Tensor(np.stack([row, row[::-1].copy()]))  # second row: the tie among groups 0, 1, 2; group 3 best
    kw = dict(scoring="sigmoid", n_group=n_group, topk_group=2)
    for fused in (True, False):
        _, ids = moe_gating(logits, 4, fused=fused, **kw)
        assert sorted(ids.asnumpy()[0].tolist()) == [0, 1, 2, 3], fused  # groups 0 and 1 (not 2 or 3)
        assert sorted(ids.asnumpy()[1].tolist()) == [0, 1, 6, 7], fused  # groups 3 and 0
    router = TopKRouter(2, e, 4, scoring="sigmoid", n_group=n_group, topk_group=2)
    # a router whose logits are exactly `logits`: x = logits' first two columns' basis, weight = logits^T rows
    router.weight.set_data(Tensor(logits.asnumpy().T.copy()))
    _, _, ids, _ = router(Tensor(np.eye(2, dtype=np.float32)))
    assert sorted(ids.asnumpy()[0].tolist()) == [0, 1, 2, 3]
    assert sorted(ids.asnumpy()[1].tolist()) == [0, 1, 6, 7]


def numpy_permute(x, ids, e):
    flat = ids.reshape(-1)
    row_map = np.argsort(flat, kind="stable")
    return x[row_map // ids.shape[1]], row_map, np.bincount(flat, minlength=e)


@pytest.fixture(scope="module")
def routed():
    x = Tensor(RNG.standard_normal((T, H)).astype(np.float32))
    ids = Tensor(np.stack([RNG.permutation(E)[:K] for _ in range(T)]).astype(np.int32))
    w = Tensor(RNG.random((T, K)).astype(np.float32))
    return x, ids, w


def test_permute_unpermute_forward(routed):
    x, ids, w = routed
    xs, row_map, counts = moe_permute(x, ids, E)
    want = numpy_permute(x.asnumpy(), ids.asnumpy(), E)
    assert row_map.dtype == ms.int32 and counts.dtype == ms.int32
    np.testing.assert_array_equal(xs.asnumpy(), want[0])
    np.testing.assert_array_equal(row_map.asnumpy(), want[1])
    np.testing.assert_array_equal(counts.asnumpy(), want[2])
    for got, ref in zip((xs, row_map, counts), moe_permute(x, ids, E, fused=False)):
        np.testing.assert_array_equal(got.asnumpy(), ref.asnumpy())
    y = xs * 3.0 - 1.0
    out = moe_unpermute(y, row_map, w)
    want_out = (w.asnumpy()[..., None] * (x.asnumpy()[:, None, :] * 3.0 - 1.0)).sum(1)
    np.testing.assert_allclose(out.asnumpy(), want_out, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.asnumpy(), moe_unpermute(y, row_map, w, fused=False).asnumpy(), rtol=1e-6,
                               atol=1e-6)


def test_permute_unpermute_gradients(routed):
    x, ids, w = routed
    wy = Tensor(RNG.standard_normal((H, H)).astype(np.float32))
    dout = Tensor(RNG.standard_normal((T, H)).astype(np.float32))

    def loss(x, w, fused):
        xs, row_map, _ = moe_permute(x, ids, E, fused=fused)
        y = ops.tanh(mint.matmul(xs, wy))
        return (moe_unpermute(y, row_map, w, fused=fused) * dout).sum()

    got = ms.grad(lambda a, b: loss(a, b, True), grad_position=(0, 1))(x, w)
    want = ms.grad(lambda a, b: loss(a, b, False), grad_position=(0, 1))(x, w)
    for g, r in zip(got, want):
        assert np.abs(r.asnumpy()).max() > 1e-3
        np.testing.assert_allclose(g.asnumpy(), r.asnumpy(), rtol=1e-4, atol=1e-5)


def test_routing_in_jitted_value_and_grad():
    router_w = Tensor(RNG.standard_normal((E, H)).astype(np.float32) * 0.5)
    expert_w = Tensor(RNG.standard_normal((H, H)).astype(np.float32))
    x = Tensor(RNG.standard_normal((T, H)).astype(np.float32))
    kw = dict(scoring="sigmoid", n_group=4, topk_group=2, norm_topk_prob=True, routed_scaling_factor=2.0)

    def loss(x, rw, fused):
        logits = mint.matmul(x, rw.swapaxes(0, 1))
        w, ids = moe_gating(logits, K, fused=fused, **kw)
        xs, row_map, _ = moe_permute(x, ids, E, fused=fused)
        out = moe_unpermute(ops.tanh(mint.matmul(xs, expert_w)), row_map, w, fused=fused)
        return (out * out).sum()

    def fused_loss(a, b):
        return loss(a, b, True)

    fused_step = ms.jit(ms.value_and_grad(fused_loss, grad_position=(0, 1)))
    value, grads = fused_step(x, router_w)
    want_value, want_grads = ms.value_and_grad(lambda a, b: loss(a, b, False), grad_position=(0, 1))(x, router_w)
    np.testing.assert_allclose(value.asnumpy(), want_value.asnumpy(), rtol=1e-5)
    for g, r in zip(grads, want_grads):
        np.testing.assert_allclose(g.asnumpy(), r.asnumpy(), rtol=1e-4, atol=1e-5)


def test_fused_routing_reproduces_model_moe_layer():
    """Dropless model MoE == gating + permute + each expert on its block + unpermute."""
    router = TopKRouter(H, E, K, scoring="softmax", norm_topk_prob=True)
    moe = MoE(H, 5, router, capacity_factor=0.0)
    x = Tensor(RNG.standard_normal((2, T // 2, H)).astype(np.float32))
    want = moe(x)[0].asnumpy().reshape(T, H)
    flat = x.reshape(T, H)
    logits = mint.nn.functional.linear(flat, router.weight)
    w, ids = moe_gating(logits, K, norm_topk_prob=True)
    xs, row_map, counts = moe_permute(flat, ids, E)
    ex = moe.experts
    blocks, start = [], 0
    for e, n in enumerate(counts.asnumpy().tolist()):
        rows = xs[start:start + n]
        gate = mint.matmul(rows, ex.gate_proj.weight[e].swapaxes(0, 1))
        up = mint.matmul(rows, ex.up_proj.weight[e].swapaxes(0, 1))
        blocks.append(mint.matmul(mint.nn.functional.silu(gate) * up, ex.down_proj.weight[e].swapaxes(0, 1)))
        start += n
    out = moe_unpermute(mint.cat(blocks, 0), row_map, w)
    np.testing.assert_allclose(out.asnumpy(), want, rtol=1e-4, atol=1e-6)


def test_bad_inputs():
    with pytest.raises(MftError, match="multiple of n_group"):
        moe_gating(LOGITS, K, n_group=3)
    with pytest.raises(MftError, match="top_k"):
        moe_gating(LOGITS, E + 1)
    with pytest.raises(MftError, match="fewer than top_k"):
        moe_gating(LOGITS, 4, n_group=4, topk_group=1)
    with pytest.raises(MftError, match="x must be"):
        moe_permute(Tensor(np.zeros((T, H), np.float16)), Tensor(np.zeros((T, K), np.int32)), E)
    with pytest.raises(MftError, match="topk_ids"):
        moe_permute(Tensor(np.zeros((T, H), np.float32)), Tensor(np.zeros((T + 1, K), np.int32)), E)
    bad_ids = Tensor(np.full((T, K), E, np.int32))  # out of range: the kernel returns an error code
    with pytest.raises(RuntimeError):
        moe_permute(Tensor(np.zeros((T, H), np.float32)), bad_ids, E)[0].asnumpy()
