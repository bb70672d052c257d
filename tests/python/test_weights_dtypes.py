"""Float dtype conversions: the Rust core vs the numpy reference, bit for bit,
plus anchors against numpy's own float16/float32 rounding."""

from __future__ import annotations

import numpy as np
import pytest

from mft import _native
from mft.weights import dtypes_ref as ref
from mft.weights import safetensors as st

SMALL = ["F16", "BF16", "F8_E4M3", "F8_E5M2"]


def probe_values() -> np.ndarray:
    rng = np.random.default_rng(0)
    x = rng.standard_normal(20000) * 10.0 ** rng.integers(-12, 8, 20000)
    special = [0.0, -0.0, np.inf, -np.inf, np.nan, 65504.0, 65520.0, 448.0, 464.0, 480.0, 57344.0, 61440.0,
               2.0**-24, 2.0**-25, 3 * 2.0**-26, 1e-40, 1.00390625, 1.01171875]
    return np.concatenate([x, special]).astype("<f8")


@pytest.mark.parametrize("dst", ["F32"] + SMALL)
def test_f64_to_every_float_matches_reference(dst):
    raw = probe_values().view(np.uint8)
    np.testing.assert_array_equal(_native.float_convert(raw, "F64", dst), ref.convert(raw, "F64", dst))


@pytest.mark.parametrize("src", SMALL)
def test_every_bit_pattern_widens_and_narrows_like_reference(src):
    width = 2 if src in ("F16", "BF16") else 1
    bits = np.arange(2 ** (8 * width), dtype="<u2" if width == 2 else "u1").view(np.uint8)
    for dst in ["F64", "F32"] + SMALL:
        a, b = _native.float_convert(bits, src, dst), ref.convert(bits, src, dst)
        if dst in ("F64", "F32"):
            av, bv = a.view(ref.NATIVE[dst]), b.view(ref.NATIVE[dst])
            assert np.array_equal(av, bv, equal_nan=True), (src, dst)
        else:
            np.testing.assert_array_equal(a, b, err_msg=f"{src}->{dst}")


def test_anchors_against_numpy():
    x = probe_values()
    with np.errstate(over="ignore"):
        want16 = x.astype(np.float16)
    np.testing.assert_array_equal(_native.float_convert(x.view(np.uint8), "F64", "F16").view("<f2"), want16)
    f32 = x.astype(np.float32)
    # bf16 -> f32 is exact: the bits are the high half of the float32.
    bits = _native.float_convert(f32.view(np.uint8), "F32", "BF16").view("<u2")
    widened = _native.float_convert(bits.view(np.uint8), "BF16", "F32").view("<f4")
    finite = np.isfinite(widened)
    np.testing.assert_array_equal(widened.view("<u4")[finite] >> 16, bits[finite])
    assert np.max(np.abs(widened[finite & (np.abs(f32) > 1e-30)] / f32[finite & (np.abs(f32) > 1e-30)] - 1)) <= 2.0**-8


def test_ints_do_not_convert():
    with pytest.raises(ValueError, match="only float"):
        _native.float_convert(np.zeros(4, np.uint8), "I32", "F32")


def test_zero_copy_views_and_parallel_large_tensor(tmp_path):
    path = str(tmp_path / "big.safetensors")
    big = np.arange(3 * 1024 * 1024, dtype=np.float32).reshape(3, -1)  # 12 MB: more than one copy chunk
    st.save_file({"big": big, "small": np.ones(3, np.int8)}, path)
    views = st.load_file(path, copy=False)
    assert not views["big"].flags.writeable
    np.testing.assert_array_equal(views["big"], big)
    np.testing.assert_array_equal(st.load_file(path)["big"], big)
