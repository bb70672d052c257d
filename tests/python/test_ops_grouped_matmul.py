"""The MoE grouped-matmul kernel against numpy and against the composed MindSpore reference."""

import numpy as np
import pytest

import mindspore as ms
from mindspore import ops

from mft.errors import MftError
from mft.ops.grouped_matmul import grouped_matmul, grouped_matmul_reference


def numpy_grouped(x, w, counts):
    out, start = [], 0
    for e, c in enumerate(counts):
        out.append(x[start:start + c] @ w[e].T)
        start += c
    return np.concatenate(out, 0)


def case(counts=(3, 0, 6, 2), k=12, o=10, seed=0):
    rng = np.random.default_rng(seed)
    n = sum(counts)
    x = rng.standard_normal((n, k)).astype(np.float32)
    w = rng.standard_normal((len(counts), o, k)).astype(np.float32)
    return x, w, np.asarray(counts, np.int32)


@pytest.mark.parametrize("fused", [True, False])
def test_forward_matches_numpy(fused):
    x, w, counts = case()
    got = grouped_matmul(ms.Tensor(x), ms.Tensor(w), ms.Tensor(counts), fused=fused).asnumpy()
    np.testing.assert_allclose(got, numpy_grouped(x, w, counts), rtol=1e-5, atol=1e-5)


def test_gradients_match_reference():
    x, w, counts = case(counts=(5, 1, 0, 4), k=20, o=9, seed=1)
    dy = np.random.default_rng(2).standard_normal((10, 9)).astype(np.float32)

    def loss(fused):
        def f(xt, wt):
            return (grouped_matmul(xt, wt, ms.Tensor(counts), fused=fused) * ms.Tensor(dy)).sum()
        return ms.grad(f, grad_position=(0, 1))(ms.Tensor(x), ms.Tensor(w))

    (dx, dw), (rdx, rdw) = loss(True), loss(False)
    np.testing.assert_allclose(dx.asnumpy(), rdx.asnumpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dw.asnumpy(), rdw.asnumpy(), rtol=1e-5, atol=1e-5)
    assert np.all(dw.asnumpy()[2] == 0)  # the expert that got no rows gets no gradient


def test_counts_that_do_not_cover_the_rows_are_an_error():
    x, w, _ = case()
    with pytest.raises(Exception, match="MftGroupedMatmul|grouped"):
        grouped_matmul(ms.Tensor(x), ms.Tensor(w), ms.Tensor(np.array([1, 1, 1, 1], np.int32))).asnumpy()


def test_shape_mismatch_names_the_op():
    x, w, counts = case()
    with pytest.raises(MftError, match="grouped_matmul: x must be"):
        grouped_matmul(ms.Tensor(x[:, :5]), ms.Tensor(w), ms.Tensor(counts))


def test_reference_agrees_with_numpy_on_the_permuted_layout():
    x, w, counts = case(counts=(4, 4), k=8, o=8, seed=3)
    got = grouped_matmul_reference(ms.Tensor(x), ms.Tensor(w), ops.cast(ms.Tensor(counts), ms.int32)).asnumpy()
    np.testing.assert_allclose(got, numpy_grouped(x, w, counts), rtol=1e-5, atol=1e-5)
