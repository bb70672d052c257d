"""AdamW, gradient clipping and lr schedules against numpy references."""

import math

import numpy as np
import pytest

from mft.config.schema import LrScheduleConfig
from mft.training.lr_schedule import lr_at


def test_warmup_then_cosine_reaches_min_lr():
    s = LrScheduleConfig(name="cosine", warmup_steps=10, min_lr=0.1)
    lrs = [lr_at(i, 1.0, 110, s) for i in range(110)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[10] == pytest.approx(1.0)
    assert lrs[60] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_at(110, 1.0, 110, s) == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))


def test_linear_and_constant():
    assert lr_at(50, 2.0, 100, LrScheduleConfig(name="linear")) == pytest.approx(1.0)
    assert lr_at(99, 2.0, 100, LrScheduleConfig(name="constant")) == 2.0


def numpy_adamw(params, grads_per_step, lrs, betas, eps, wd, decay, clip):
    params = [p.copy() for p in params]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    for t, (grads, lr) in enumerate(zip(grads_per_step, lrs), start=1):
        norm = math.sqrt(sum(float((g.astype(np.float64) ** 2).sum()) for g in grads))
        scale = min(1.0, clip / (norm + 1e-6))
        for i, g in enumerate(grads):
            g = g * scale
            m[i] = betas[0] * m[i] + (1 - betas[0]) * g
            v[i] = betas[1] * v[i] + (1 - betas[1]) * g * g
            upd = (m[i] / (1 - betas[0] ** t)) / (np.sqrt(v[i] / (1 - betas[1] ** t)) + eps)
            if decay[i]:
                upd = upd + wd * params[i]
            params[i] = params[i] - lr * upd
    return params


def test_adamw_with_clipping_matches_numpy():
    import mindspore as ms
    from mindspore import Parameter, Tensor, ops

    from mft.training.optimizer import AdamW
    from mft.training.train_step import clip_by_global_norm

    rng = np.random.default_rng(0)
    init = [rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal((3,)).astype(np.float32)]
    params = [Parameter(Tensor(init[0]), name="w.weight"), Parameter(Tensor(init[1]), name="norm.weight")]
    opt = AdamW(params, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    grads_per_step = [[rng.standard_normal(p.shape).astype(np.float32) * 3 for p in init] for _ in range(4)]
    lrs = [0.1, 0.05, 0.02, 0.01]

    @ms.jit
    def apply(g0, g1, lr):
        grads, norm = clip_by_global_norm((g0, g1), 1.0)
        opt(grads, lr)
        return norm

    for grads, lr in zip(grads_per_step, lrs):
        apply(Tensor(grads[0]), Tensor(grads[1]), Tensor(lr, ms.float32))
    expected = numpy_adamw(init, grads_per_step, lrs, (0.9, 0.95), 1e-8, 0.1, [True, False], 1.0)
    for p, e in zip(params, expected):
        np.testing.assert_allclose(p.asnumpy(), e, rtol=1e-5, atol=1e-6)
    assert int(opt.step_count.asnumpy()) == 4
    assert set(opt.state_tensors()) == {"optimizer_step", "exp_avg.w.weight", "exp_avg_sq.w.weight", "exp_avg.norm.weight", "exp_avg_sq.norm.weight"}
