"""MoE block against an independent numpy implementation; aux losses and bias update by hand."""

import math

import numpy as np
import pytest

import mindspore as ms

from mft.models.common.mlp import SwiGLUMLP
from mft.models.common.moe import MoE, TopKRouter, capacity

ms.set_device("CPU")
H, I, E = 8, 6, 4


def _silu(x):
    return x / (1.0 + np.exp(-x))


def numpy_moe(x, p, k, scoring, norm, n_group=1, topk_group=1, bias=None, scale=1.0, cap=None, shared=None):
    """Token-by-token loop: route, weight, run each chosen expert, skip tokens over capacity."""
    t = x.shape[0]
    logits = x @ p["gate"].T
    if scoring == "softmax":
        z = np.exp(logits - logits.max(-1, keepdims=True))
        scores = z / z.sum(-1, keepdims=True)
        choice = scores
    else:
        scores = 1.0 / (1.0 + np.exp(-logits))
        choice = scores + bias
        if n_group > 1:
            groups = choice.reshape(t, n_group, -1)
            gscore = np.sort(groups, -1)[..., -2:].sum(-1)
            keep = np.zeros((t, n_group), bool)
            for r in range(t):
                keep[r, np.argsort(-gscore[r])[:topk_group]] = True
            choice = np.where(np.repeat(keep, E // n_group, axis=1), choice, 0.0)
    out = np.zeros_like(x)
    taken = np.zeros(E, int)
    for r in range(t):
        ids = np.argsort(-choice[r], kind="stable")[:k]
        w = scores[r, ids]
        if norm:
            w = w / (w.sum() + (1e-20 if scoring == "sigmoid" else 0.0))
        w = w * scale
        for e, we in zip(ids, w):
            taken[e] += 1
            if cap is not None and taken[e] > cap:
                continue
            h = _silu(p["g"][e] @ x[r]) * (p["u"][e] @ x[r])
            out[r] += we * (p["d"][e] @ h)
    if shared is not None:
        out += (_silu(x @ shared["g"].T) * (x @ shared["u"].T)) @ shared["d"].T
    return out


def build(k, scoring="softmax", norm=True, n_group=1, topk_group=1, scale=1.0, cf=0.0, shared=False, seed=0, fused=False):
    rng = np.random.default_rng(seed)
    p = {
        "gate": rng.normal(0, 1.0, (E, H)).astype(np.float32),
        "g": rng.normal(0, 0.3, (E, I, H)).astype(np.float32),
        "u": rng.normal(0, 0.3, (E, I, H)).astype(np.float32),
        "d": rng.normal(0, 0.3, (E, H, I)).astype(np.float32),
    }
    router = TopKRouter(H, E, k, scoring, norm, n_group, topk_group, scale, correction_bias=scoring == "sigmoid")
    shared_mlp = SwiGLUMLP(H, I) if shared else None
    moe = MoE(H, I, router, shared_mlp, capacity_factor=cf, fused=fused)
    router.weight.set_data(ms.Tensor(p["gate"]))
    moe.experts.gate_proj.weight.set_data(ms.Tensor(p["g"]))
    moe.experts.up_proj.weight.set_data(ms.Tensor(p["u"]))
    moe.experts.down_proj.weight.set_data(ms.Tensor(p["d"]))
    sp = None
    if shared:
        sp = {n: rng.normal(0, 0.3, s).astype(np.float32) for n, s in (("g", (I, H)), ("u", (I, H)), ("d", (H, I)))}
        shared_mlp.gate_proj.weight.set_data(ms.Tensor(sp["g"]))
        shared_mlp.up_proj.weight.set_data(ms.Tensor(sp["u"]))
        shared_mlp.down_proj.weight.set_data(ms.Tensor(sp["d"]))
    bias = None
    if scoring == "sigmoid":
        bias = rng.normal(0, 0.3, (E,)).astype(np.float32)
        router.e_score_correction_bias.set_data(ms.Tensor(bias))
    x = rng.normal(0, 1.0, (2, 5, H)).astype(np.float32)
    return moe, p, x, bias, sp


@pytest.mark.parametrize("norm", [True, False])
def test_softmax_topk_matches_numpy_with_and_without_renormalisation(norm):
    moe, p, x, _, _ = build(k=2, norm=norm)
    out = moe(ms.Tensor(x))[0].asnumpy().reshape(-1, H)
    want = numpy_moe(x.reshape(-1, H), p, 2, "softmax", norm)
    np.testing.assert_allclose(out, want, atol=1e-5)


def test_sigmoid_group_limited_routing_with_bias_scale_and_shared_expert_matches_numpy():
    moe, p, x, bias, sp = build(k=2, scoring="sigmoid", norm=True, n_group=2, topk_group=1, scale=2.5, shared=True)
    out = moe(ms.Tensor(x))[0].asnumpy().reshape(-1, H)
    want = numpy_moe(x.reshape(-1, H), p, 2, "sigmoid", True, 2, 1, bias, 2.5, shared=sp)
    np.testing.assert_allclose(out, want, atol=1e-5)


def test_capacity_drops_tokens_beyond_each_experts_queue():
    moe, p, x, _, _ = build(k=2, cf=0.5)
    cap = capacity(10, E, 2, 0.5)
    assert cap == math.ceil(0.5 * 10 * 2 / E) == 3
    out = moe(ms.Tensor(x))[0].asnumpy().reshape(-1, H)
    want = numpy_moe(x.reshape(-1, H), p, 2, "softmax", True, cap=cap)
    np.testing.assert_allclose(out, want, atol=1e-5)
    dropless = numpy_moe(x.reshape(-1, H), p, 2, "softmax", True)
    assert np.abs(want - dropless).max() > 1e-3  # some token really was dropped


def hand_router(aux_type):
    """Two experts, top-1; logits (ln 3, 0) for tokens [1,0] and (0, ln 3) for [0,1]."""
    router = TopKRouter(2, 2, 1, "softmax", norm_topk_prob=True)
    router.weight.set_data(ms.Tensor(np.eye(2, dtype=np.float32) * np.float32(math.log(3.0))))
    moe = MoE(2, 3, router, aux_loss_type=aux_type)
    x = np.array([[[1, 0], [1, 0]], [[0, 1], [1, 0]]], np.float32)  # 2 sequences of 2 tokens
    return moe(ms.Tensor(x))


def test_balance_and_z_loss_equal_hand_computed_values():
    # probs: 0.75/0.25 for [1,0], 0.25/0.75 for [0,1]; experts chosen 0,0,1,0.
    _, balance, z_loss, load = hand_router("global")
    np.testing.assert_array_equal(load.asnumpy(), [3, 1])
    # f = E/(k T) * counts = (1.5, 0.5); P = mean probs = (0.625, 0.375)
    assert balance.asnumpy() == pytest.approx(1.5 * 0.625 + 0.5 * 0.375, abs=1e-6)  # 1.125
    assert z_loss.asnumpy() == pytest.approx(math.log(4.0) ** 2, abs=1e-5)  # logsumexp = ln 4 for every token
    # per sequence: seq 0 -> f (2, 0), P (.75, .25): 1.5; seq 1 -> f (1, 1), P (.5, .5): 1.0
    _, seq_balance, _, _ = hand_router("sequence")
    assert seq_balance.asnumpy() == pytest.approx(1.25, abs=1e-6)
    assert hand_router("none")[1].asnumpy() == 0.0


def test_sorted_dispatch_matches_numpy_and_the_capacity_path_in_value_and_gradient():
    """fused=True (permute + grouped matmul kernels, T*k rows) is the dropless layer, not an approximation."""
    outs, grads = [], []
    for fused in (True, False):
        moe, p, x, bias, sp = build(k=2, scoring="sigmoid", norm=True, n_group=2, topk_group=1, scale=2.5,
                                    shared=True, fused=fused)
        dy = np.random.default_rng(7).normal(0, 1.0, x.shape).astype(np.float32)
        params = moe.trainable_params()

        def loss(xt):
            return (moe(xt)[0] * ms.Tensor(dy)).sum()

        out = moe(ms.Tensor(x))[0].asnumpy().reshape(-1, H)
        g = ms.grad(loss, grad_position=0, weights=params)(ms.Tensor(x))
        outs.append(out)
        grads.append([g[0].asnumpy()] + [t.asnumpy() for t in g[1]])
    want = numpy_moe(x.reshape(-1, H), p, 2, "sigmoid", True, 2, 1, bias, 2.5, shared=sp)
    np.testing.assert_allclose(outs[0], want, atol=1e-5)
    for fused_grad, capacity_grad in zip(*grads):
        np.testing.assert_allclose(fused_grad, capacity_grad, rtol=1e-4, atol=1e-5)
    assert np.abs(grads[0][1]).max() > 0  # the router weight does get a gradient through the routing weights


def test_sorted_dispatch_refuses_a_capacity():
    from mft.models.mixtral.config import MixtralConfig

    with pytest.raises(Exception, match="fused_moe.*dropless"):
        MixtralConfig(hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2,
                      num_key_value_heads=2, vocab_size=32, moe_capacity_factor=1.0, fused_moe=True).validate()
