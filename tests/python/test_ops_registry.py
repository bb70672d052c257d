"""The public aot-op registration API, used the way a user model would: a
C++ file compiled at test time into a shared library, registered with a
backward op, and trained through inside a jitted value_and_grad."""

import importlib.util
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import mindspore as ms
from mindspore import Tensor, ops

from mft.errors import MftError
from mft.ops import registry

ms.set_device("CPU")

# The user-facing example (docs/feature/custom_ops.md): out = x + scale * y, backward gives dx, dy, dscale.
EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "custom_op")


@pytest.fixture(scope="module")
def user_library(tmp_path_factory):
    compiler = shutil.which("g++") or shutil.which("c++")
    # mft's own build needs a C++ compiler, so one is always there where this runs.
    assert compiler is not None, "no C++ compiler on PATH"
    d = tmp_path_factory.mktemp("user_op")
    src, lib = d / "scaled_add.cc", d / "libscaled_add.so"
    shutil.copy(os.path.join(EXAMPLE, "scaled_add.cc"), src)
    subprocess.run([compiler, "-O2", "-std=c++17", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    return str(lib)


@pytest.fixture(scope="module")
def scaled_add(user_library):
    grad = registry.register_aot_op(
        "test.scaled_add_grad", user_library, "ScaledAddGrad",
        out_shape=lambda dout, y, s: (dout, y, s), out_dtype=lambda dout, y, s: (dout, y, s))

    def bprop(x, y, s, out, dout):
        return grad(dout, y, s)

    return registry.register_aot_op(
        "test.scaled_add", user_library, "ScaledAdd",
        out_shape=lambda x, y, s: x, out_dtype=lambda x, y, s: x, bprop=bprop)


def test_user_op_forward_and_grads_in_jit(scaled_add):
    rng = np.random.default_rng(0)
    x_np, y_np = rng.standard_normal((2, 3, 5)).astype(np.float32), rng.standard_normal((2, 3, 5)).astype(np.float32)
    w_np = rng.standard_normal((2, 3, 5)).astype(np.float32)
    x, y, s, w = Tensor(x_np), Tensor(y_np), Tensor(np.array([0.5], np.float32)), Tensor(w_np)

    np.testing.assert_allclose(scaled_add(x, y, s).asnumpy(), x_np + 0.5 * y_np, rtol=1e-6)

    def loss(x, y, s):
        return (scaled_add(x, y, s) * w).sum()

    step = ms.jit(ms.value_and_grad(loss, grad_position=(0, 1, 2)))
    value, (dx, dy, ds) = step(x, y, s)
    np.testing.assert_allclose(float(value), ((x_np + 0.5 * y_np) * w_np).sum(), rtol=1e-5)
    np.testing.assert_allclose(dx.asnumpy(), w_np, rtol=1e-6)
    np.testing.assert_allclose(dy.asnumpy(), 0.5 * w_np, rtol=1e-6)
    np.testing.assert_allclose(ds.asnumpy(), [(w_np * y_np).sum()], rtol=1e-5)


def test_registry_lookup_and_conflicts(scaled_add, user_library):
    assert registry.get_op("test.scaled_add") is scaled_add
    spec = registry.registered_ops()["test.scaled_add"]
    assert spec.function == "ScaledAdd" and spec.has_bprop
    assert "mft.rms_norm" in registry.registered_ops()  # mft's own kernels use the same API
    # same name, same function: the existing op; same name, other function: an error
    assert registry.register_aot_op("test.scaled_add", user_library, "ScaledAdd",
                                    out_shape=lambda *a: a[0], out_dtype=lambda *a: a[0]) is scaled_add
    with pytest.raises(MftError, match="already registered"):
        registry.register_aot_op("test.scaled_add", user_library, "ScaledAddGrad",
                                 out_shape=lambda *a: a[0], out_dtype=lambda *a: a[0])
    with pytest.raises(MftError, match="no aot op registered as 'test.nope'"):
        registry.get_op("test.nope")


def test_bad_library_or_symbol_is_an_mft_error(user_library, tmp_path):
    with pytest.raises(MftError, match="does not exist"):
        registry.aot_op(str(tmp_path / "missing.so"), "F", out_shape=(1,), out_dtype=ms.float32)
    not_a_lib = tmp_path / "junk.so"
    not_a_lib.write_text("not an ELF file")
    with pytest.raises(MftError, match="cannot be loaded"):
        registry.aot_op(str(not_a_lib), "F", out_shape=(1,), out_dtype=ms.float32)
    with pytest.raises(MftError, match="does not export a function named 'Missing'"):
        registry.aot_op(user_library, "Missing", out_shape=(1,), out_dtype=ms.float32)


def test_kernel_error_code_surfaces_as_runtime_error(scaled_add):
    # The C++ returns 2 for non-float32 input; MindSpore turns that into RuntimeError.
    x = Tensor(np.ones((2, 2), np.float16))
    with pytest.raises(RuntimeError, match="ScaledAdd"):
        scaled_add(x, x, Tensor(np.array([1.0], np.float16))).asnumpy()


def test_the_documented_example_model_trains(tmp_path):
    """examples/custom_op/my_model.py, as docs/feature/custom_ops.md tells users to run it."""
    spec = importlib.util.spec_from_file_location("mft_example_custom_op", os.path.join(EXAMPLE, "my_model.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # MindSpore's graph parser looks functions up by module
    spec.loader.exec_module(module)
    result = module.main(str(tmp_path))
    assert result["losses"][-1] < 0.5 * result["losses"][0]
    assert result["scale"] != pytest.approx(0.1)  # the custom op's own parameter was trained
