"""A user's model with its own C++ op, trained in a compiled step (docs/feature/custom_ops.md).

    python examples/custom_op/my_model.py [BUILD_DIR]

Compiles scaled_add.cc with the system C++ compiler into BUILD_DIR (default: a
temporary folder), registers the op and its backward through `mft.ops.registry`,
uses it inside a Cell, checks its gradients against numpy, and trains the Cell
for a few steps with `ms.jit(ms.value_and_grad(...))` + AdamW.
tests/python/test_ops_registry.py runs `main()`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops

from mft.ops import registry

HERE = os.path.dirname(os.path.abspath(__file__))


def build(build_dir: str) -> str:
    """Compiles scaled_add.cc into build_dir/libscaled_add.so and returns its path."""
    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        raise SystemExit("no C++ compiler (g++ or c++) on PATH")
    lib = os.path.join(build_dir, "libscaled_add.so")
    subprocess.run([compiler, "-O2", "-std=c++17", "-shared", "-fPIC", "-o", lib, os.path.join(HERE, "scaled_add.cc")],
                   check=True)  # fmt: skip
    return lib


def register(lib: str):
    """The forward op, with the backward op as its bprop (names are global: register once)."""
    grad = registry.register_aot_op(
        "example.scaled_add_grad", lib, "ScaledAddGrad",
        out_shape=lambda dout, y, s: (dout, y, s), out_dtype=lambda dout, y, s: (dout, y, s))

    def bprop(x, y, s, out, dout):
        return grad(dout, y, s)  # (dx, dy, ds)

    return registry.register_aot_op(
        "example.scaled_add", lib, "ScaledAdd",
        out_shape=lambda x, y, s: x, out_dtype=lambda x, y, s: x, bprop=bprop)


class ResidualBlock(nn.Cell):
    """y = x + s * tanh(x W): the residual add with a learned scale is the custom op."""

    def __init__(self, dim: int, scaled_add, seed: int = 0):
        super().__init__()
        init = np.random.default_rng(seed).normal(0.0, dim ** -0.5, (dim, dim)).astype(np.float32)
        self.proj = nn.Dense(dim, dim, weight_init=Tensor(init), has_bias=False)
        self.scale = Parameter(Tensor(np.array([0.1], np.float32)), name="scale")
        self.scaled_add = scaled_add  # created outside traced code, as graph mode requires

    def construct(self, x):
        return self.scaled_add(x, ops.tanh(self.proj(x)), self.scale)


def main(build_dir: str | None = None) -> dict:
    ms.set_device("CPU")
    build_dir = build_dir or tempfile.mkdtemp(prefix="mft-custom-op-")
    os.makedirs(build_dir, exist_ok=True)
    scaled_add = register(build(build_dir))

    # 1. the op and its gradients against numpy
    rng = np.random.default_rng(0)
    x, y, w = (rng.standard_normal((2, 3, 5)).astype(np.float32) for _ in range(3))
    s = np.array([0.5], np.float32)
    weights = Tensor(w)

    def weighted_sum(a, b, c):
        return (scaled_add(a, b, c) * weights).sum()

    value, (dx, dy, ds) = ms.jit(ms.value_and_grad(weighted_sum, grad_position=(0, 1, 2)))(Tensor(x), Tensor(y), Tensor(s))
    np.testing.assert_allclose(float(value), ((x + 0.5 * y) * w).sum(), rtol=1e-5)
    np.testing.assert_allclose(dx.asnumpy(), w, rtol=1e-6)
    np.testing.assert_allclose(dy.asnumpy(), 0.5 * w, rtol=1e-6)
    np.testing.assert_allclose(ds.asnumpy(), [(w * y).sum()], rtol=1e-5)

    # 2. a Cell using it, trained in a compiled step: fit y = 2x on random data
    model = ResidualBlock(8, scaled_add)
    optimizer = nn.AdamWeightDecay(model.trainable_params(), learning_rate=0.05)
    inputs = Tensor(rng.standard_normal((16, 8)).astype(np.float32))
    targets = inputs * 2.0

    def mse(a, b):
        return ((model(a) - b) ** 2).mean()

    grad_fn = ms.value_and_grad(mse, None, optimizer.parameters)

    @ms.jit
    def step(a, b):
        loss, grads = grad_fn(a, b)
        optimizer(grads)
        return loss

    losses = [float(step(inputs, targets)) for _ in range(40)]
    if not losses[-1] < 0.5 * losses[0]:
        raise SystemExit(f"training through the custom op did not converge: {losses}")
    print(f"custom op ok: grads match numpy; loss {losses[0]:.4f} -> {losses[-1]:.4f} in {len(losses)} steps")
    return {"losses": losses, "scale": float(model.scale.asnumpy()[0])}


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
