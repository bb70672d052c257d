"""Fused RMSNorm (C++ via MindSpore aot) against the pure-MindSpore reference:
the raw kernels through pybind11, forward and gradients in PyNative, and a
jitted AdamW train loop whose losses must match step for step."""

import numpy as np
import pytest

import mindspore as ms
from mindspore import Tensor, nn, ops

from mft import _kernels
from mft.errors import MftError
from mft.ops import RMSNorm, rms_norm, rms_norm_reference

ms.set_device("CPU")
EPS = 1e-6


def numpy_rms_norm(x, w, eps=EPS):
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    rstd = 1.0 / np.sqrt((x64 * x64).mean(-1, keepdims=True) + eps)
    return x64 * rstd * w64


def numpy_rms_norm_grad(dy, x, w, eps=EPS):
    x64, w64, dy64 = (a.astype(np.float64) for a in (x, w, dy))
    h = x.shape[-1]
    rstd = 1.0 / np.sqrt((x64 * x64).mean(-1, keepdims=True) + eps)
    g = dy64 * w64
    dx = rstd * g - x64 * rstd**3 * (g * x64).sum(-1, keepdims=True) / h
    dw = (dy64 * x64 * rstd).reshape(-1, h).sum(0)
    return dx, dw


def _inputs(shape, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 2).astype(dtype)
    w = rng.uniform(0.5, 1.5, shape[-1]).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    return x, w, dy


# ---- the C++ kernels directly (pybind11), against float64 numpy ----

@pytest.mark.parametrize("shape", [(1, 1), (4, 13), (2, 3, 67), (700, 64)])
def test_kernel_matches_numpy_fp32(shape):
    x, w, dy = _inputs(shape)
    y = _kernels.rms_norm_forward(x, w, EPS)
    dx, dw = _kernels.rms_norm_backward(dy, x, w, EPS)
    want_dx, want_dw = numpy_rms_norm_grad(dy, x, w)
    assert y.dtype == np.float32 and y.shape == x.shape
    np.testing.assert_allclose(y, numpy_rms_norm(x, w), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dx, want_dx, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dw, want_dw, rtol=1e-4, atol=1e-4)


def test_kernel_fp16_io_accumulates_in_fp32():
    x, w, dy = _inputs((8, 40), np.float16)
    y = _kernels.rms_norm_forward(x, w, EPS)
    dx, dw = _kernels.rms_norm_backward(dy, x, w, EPS)
    assert (y.dtype, dx.dtype, dw.dtype) == (np.float16,) * 3
    want_dx, want_dw = numpy_rms_norm_grad(dy, x, w)
    np.testing.assert_allclose(y.astype(np.float64), numpy_rms_norm(x, w), rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(dx.astype(np.float64), want_dx, rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(dw.astype(np.float64), want_dw, rtol=2e-3, atol=1e-2)


def test_kernel_rejects_bad_input():
    x, w, dy = _inputs((3, 5))
    with pytest.raises(ValueError, match="weight has 4 elements"):
        _kernels.rms_norm_forward(x, w[:4], EPS)
    with pytest.raises(ValueError, match="float32 or float16"):
        _kernels.rms_norm_forward(x.astype(np.float64), w, EPS)
    with pytest.raises(ValueError, match="same shape"):
        _kernels.rms_norm_backward(dy[:2], x, w, EPS)


# ---- through MindSpore, PyNative ----

def _grads(fused, x, w, dy):
    def loss(x, w):
        return (rms_norm(x, w, EPS, fused=fused) * dy).sum()
    value, (dx, dw) = ms.value_and_grad(loss, grad_position=(0, 1))(x, w)
    return rms_norm(x, w, EPS, fused=fused).asnumpy(), dx.asnumpy(), dw.asnumpy()


@pytest.mark.parametrize("shape", [(4, 13), (2, 3, 20)])
def test_fused_matches_reference_pynative(shape):
    x, w, dy = (Tensor(a) for a in _inputs(shape, seed=1))
    y_f, dx_f, dw_f = _grads(True, x, w, dy)
    y_r, dx_r, dw_r = _grads(False, x, w, dy)
    np.testing.assert_allclose(y_f, y_r, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dx_f, dx_r, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dw_f, dw_r, rtol=1e-4, atol=1e-5)


def test_fused_fp16_matches_reference():
    x, w, _ = _inputs((6, 24), np.float16, seed=2)
    y_f = rms_norm(Tensor(x), Tensor(w), EPS, fused=True)
    y_r = rms_norm_reference(Tensor(x), Tensor(w), EPS)
    assert y_f.dtype == ms.float16
    np.testing.assert_allclose(y_f.asnumpy().astype(np.float32), y_r.asnumpy().astype(np.float32),
                               rtol=2e-3, atol=2e-3)


def test_fused_on_a_transposed_view():
    x, w, _ = _inputs((5, 8), seed=3)
    xt = Tensor(x.T.copy()).transpose(1, 0)  # non-contiguous view in PyNative
    np.testing.assert_allclose(rms_norm(xt, Tensor(w), EPS, fused=True).asnumpy(),
                               numpy_rms_norm(x, w), rtol=1e-5, atol=1e-6)


def test_fused_reports_bad_input_as_mft_error():
    x, w, _ = _inputs((3, 5))
    with pytest.raises(MftError, match="weight has 4 elements but x's last dimension is 5"):
        rms_norm(Tensor(x), Tensor(w[:4]), EPS, fused=True)
    with pytest.raises(MftError, match="Float64|float64"):
        rms_norm(Tensor(x.astype(np.float64)), Tensor(w), EPS, fused=True)


def test_rmsnorm_layer_parameter():
    layer = RMSNorm(12, eps=1e-5, fused=True)
    names = [p.name for p in layer.get_parameters()]
    assert names == ["weight"]
    np.testing.assert_array_equal(layer.weight.asnumpy(), np.ones(12, np.float32))
    with pytest.raises(MftError, match="hidden_size"):
        RMSNorm(0)


# ---- inside a jitted train step ----

class TinyNet(nn.Cell):
    def __init__(self, fused):
        super().__init__()
        self.norm = RMSNorm(12, fused=fused)
        self.proj = nn.Dense(12, 5, weight_init="normal", bias_init="zeros")

    def construct(self, x):
        return self.proj(self.norm(x))


def _train(fused, steps=4):
    ms.set_seed(7)
    net = TinyNet(fused)
    # Same initial weights for both runs, whatever the RNG did.
    rng = np.random.default_rng(0)
    net.proj.weight.set_data(Tensor(rng.standard_normal((5, 12)).astype(np.float32) * 0.3))
    opt = nn.AdamWeightDecay(net.trainable_params(), learning_rate=0.05, weight_decay=0.01)
    x = Tensor(rng.standard_normal((3, 4, 12)).astype(np.float32) * 3)
    target = Tensor(rng.standard_normal((3, 4, 5)).astype(np.float32))

    def loss_fn(x, t):
        return ((net(x) - t) ** 2).mean()

    grad_fn = ms.value_and_grad(loss_fn, None, opt.parameters)

    @ms.jit
    def step(x, t):
        loss, grads = grad_fn(x, t)
        opt(grads)
        return loss

    losses = [float(step(x, target)) for _ in range(steps)]
    return losses, net.norm.weight.asnumpy()


def test_fused_trains_like_reference_in_jit():
    fused_losses, fused_w = _train(True)
    ref_losses, ref_w = _train(False)
    assert fused_losses[-1] < fused_losses[0]  # it actually learns
    np.testing.assert_allclose(fused_losses, ref_losses, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fused_w, ref_w, rtol=1e-5, atol=1e-6)
    assert not np.allclose(fused_w, 1.0)  # the norm weight received gradients
