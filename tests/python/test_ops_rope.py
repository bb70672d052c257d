"""Fused RoPE (csrc/kernels/rope.cc) against the model's apply functions
(mft.models.common.rope): both layouts, shared and per-row positions, YaRN
scaled cos/sin, forward and gradient, PyNative and ms.jit, bad shapes."""

import numpy as np
import pytest

import mindspore as ms
from mindspore import Tensor

from mft.errors import MftError
from mft.models.common.rope import RotaryEmbedding
from mft.ops.rope import apply_rotary, apply_rotary_reference

ms.set_device("CPU")
RNG = np.random.default_rng(3)
B, N, S, D = 2, 3, 5, 8


def numpy_rope(x, cos, sin, interleaved):
    if interleaved:
        x = x.reshape(x.shape[:-1] + (D // 2, 2)).swapaxes(-1, -2).reshape(x.shape)
    rot = np.concatenate([-x[..., D // 2:], x[..., :D // 2]], -1)
    return x * cos + rot * sin


@pytest.fixture(scope="module")
def inputs():
    x = Tensor(RNG.standard_normal((B, N, S, D)).astype(np.float32))
    shared = RotaryEmbedding("default", D, 10000.0)(Tensor(np.arange(S, dtype=np.int32)))
    per_row = RotaryEmbedding("yarn", D, 10000.0, {"factor": 4.0, "original_max_position_embeddings": 4})(
        Tensor(RNG.integers(0, 50, (B, S)).astype(np.int32)))
    return x, {"shared": shared, "per_row_yarn": per_row}


@pytest.mark.parametrize("interleaved", [False, True])
@pytest.mark.parametrize("which", ["shared", "per_row_yarn"])
def test_rope_forward_and_grad(inputs, which, interleaved):
    x, table = inputs
    cos, sin = table[which]
    out = apply_rotary(x, cos, sin, interleaved=interleaved)
    ref = apply_rotary_reference(x, cos, sin, interleaved=interleaved)
    np.testing.assert_allclose(out.asnumpy(), ref.asnumpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out.asnumpy(), numpy_rope(x.asnumpy(), cos.asnumpy(), sin.asnumpy(), interleaved),
                               rtol=1e-5, atol=1e-6)
    dout = Tensor(RNG.standard_normal((B, N, S, D)).astype(np.float32))
    got = ms.grad(lambda a: (apply_rotary(a, cos, sin, interleaved) * dout).sum())(x)
    want = ms.grad(lambda a: (apply_rotary(a, cos, sin, interleaved, fused=False) * dout).sum())(x)
    np.testing.assert_allclose(got.asnumpy(), want.asnumpy(), rtol=1e-5, atol=1e-6)


def test_rope_in_jit(inputs):
    x, table = inputs
    cos, sin = table["shared"]

    def loss(a):
        return (apply_rotary(a, cos, sin, True) ** 2 * 0.5 + apply_rotary(a, cos, sin, False)).sum()

    def ref_loss(a):
        return (apply_rotary(a, cos, sin, True, fused=False) ** 2 * 0.5 + apply_rotary(a, cos, sin, False, fused=False)).sum()

    value, grad = ms.jit(ms.value_and_grad(loss))(x)
    want_value, want_grad = ms.value_and_grad(ref_loss)(x)
    np.testing.assert_allclose(value.asnumpy(), want_value.asnumpy(), rtol=1e-5)
    np.testing.assert_allclose(grad.asnumpy(), want_grad.asnumpy(), rtol=1e-5, atol=1e-6)


def test_rope_bad_shapes(inputs):
    x, table = inputs
    cos, sin = table["shared"]
    with pytest.raises(MftError, match="cos and sin"):
        apply_rotary(x[:, :, :4], cos, sin)
    with pytest.raises(MftError, match="float32"):
        apply_rotary(x.astype(ms.float16), cos, sin)
