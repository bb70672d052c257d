"""safetensors: Rust-backed `mft.weights.safetensors` vs the numpy reference
and the PyPI `safetensors` package (a dev dependency), plus malformed files."""

from __future__ import annotations

import glob
import json
import os
import struct

import numpy as np
import pytest
import safetensors.numpy as hf_st

from mft.errors import MftError
from mft.weights import safetensors as st
from mft.weights import safetensors_ref as ref

FIXTURES = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "fixtures", "hf", "*", "model.safetensors")))
IMPLS = [pytest.param(st, id="rust"), pytest.param(ref, id="ref")]


def every_dtype() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "f64": rng.standard_normal((2, 3)),
        "f32": rng.standard_normal((4,)).astype(np.float32),
        "f16": rng.standard_normal((3, 1)).astype(np.float16),
        "i64": np.arange(-3, 3, dtype=np.int64).reshape(2, 3),
        "i32": np.array([[-(2**31), 2**31 - 1]], dtype=np.int32),
        "i16": np.array([-7, 7], dtype=np.int16),
        "i8": np.array([-128, 0, 127], dtype=np.int8),
        "u8": np.arange(5, dtype=np.uint8),
        "bool": np.array([True, False, True]),
        "scalar": np.array(2.5, dtype=np.float32),
        "empty": np.zeros((0, 4), dtype=np.float32),
        "unicode name é": np.ones(1, dtype=np.float32),
        "transposed": np.arange(6, dtype=np.int32).reshape(2, 3).T,
        "big_endian": np.arange(3, dtype=">f4"),
    }


def assert_same(a: dict, b: dict) -> None:
    assert list(a) == list(b) or sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        assert a[k].shape == b[k].shape, k
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def write_raw(path, header: dict | bytes, data: bytes = b"") -> str:
    blob = header if isinstance(header, bytes) else json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)) + blob + data)
    return str(path)


def test_rust_writes_the_same_bytes_as_the_reference(tmp_path):
    tensors = every_dtype()
    st.save_file(tensors, str(tmp_path / "rust.safetensors"), metadata={"format": "np", "note": "ü\n"})
    ref.save_file(tensors, str(tmp_path / "ref.safetensors"), metadata={"format": "np", "note": "ü\n"})
    assert (tmp_path / "rust.safetensors").read_bytes() == (tmp_path / "ref.safetensors").read_bytes()
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("impl", IMPLS)
def test_round_trip_every_dtype(tmp_path, impl):
    tensors = every_dtype()
    path = str(tmp_path / "x.safetensors")
    impl.save_file(tensors, path, metadata={"k": "v"})
    loaded = st.load_file(path)
    expected = {k: np.asarray(v).astype(np.asarray(v).dtype.newbyteorder("<")) for k, v in tensors.items()}
    assert_same(loaded, expected)
    assert loaded["scalar"].shape == ()
    header, metadata, start = st.read_header(path)
    assert (header, metadata, start) == ref.read_header(path)
    assert metadata == {"k": "v"} and start % 8 == 0


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.split(os.sep)[-2])
def test_fixture_parity_with_reference(path):
    assert st.read_header(path) == ref.read_header(path)
    assert_same(st.load_file(path), ref.load_file(path))


def test_files_interoperate_with_pypi_safetensors(tmp_path):
    # PyPI's numpy writer copies raw memory, so hand it C-ordered little-endian arrays.
    tensors = {k: np.ascontiguousarray(v) for k, v in every_dtype().items() if k not in ("big_endian", "scalar")}
    tensors["scalar"] = every_dtype()["scalar"]
    ours = str(tmp_path / "ours.safetensors")
    st.save_file(tensors, ours, metadata={"format": "np"})
    assert_same(hf_st.load_file(ours), tensors)

    theirs = str(tmp_path / "theirs.safetensors")
    hf_st.save_file(tensors, theirs, metadata={"format": "np"})
    assert_same(st.load_file(theirs), tensors)
    assert st.read_header(theirs)[1] == {"format": "np"}


def test_bf16_widening_and_fp8_bits(tmp_path):
    values = np.array([1.0, -2.5, 3.140625, 0.0], dtype=np.float32)
    bits = (values.view(np.uint32) >> 16).astype("<u2")
    fp8 = np.array([0, 0x38, 0xFF], dtype=np.uint8)
    header = {
        "__metadata__": {"format": "pt"},
        "b": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [0, 8]},
        "e4": {"dtype": "F8_E4M3", "shape": [3], "data_offsets": [8, 11]},
        "e5": {"dtype": "F8_E5M2", "shape": [0], "data_offsets": [11, 11]},
    }
    path = write_raw(tmp_path / "bf16.safetensors", header, bits.tobytes() + fp8.tobytes())
    for impl in (st, ref):
        wide = impl.load_file(path)
        np.testing.assert_array_equal(wide["b"], values.reshape(2, 2))
        assert wide["b"].dtype == np.float32
        np.testing.assert_array_equal(wide["e4"], fp8)
        raw = impl.load_file(path, widen_bf16=False)
        assert raw["b"].dtype == np.uint16
        np.testing.assert_array_equal(raw["b"].reshape(-1), bits)
    # Both parsers agree on the header of a file neither wrote.
    assert st.read_header(path) == ref.read_header(path)


def test_loaded_arrays_are_writable_copies(tmp_path):
    path = str(tmp_path / "w.safetensors")
    st.save_file({"w": np.zeros(4, np.float32)}, path)
    arr = st.load_file(path)["w"]
    arr[0] = 1.0
    assert st.load_file(path)["w"][0] == 0.0


def test_failed_save_keeps_the_old_file(tmp_path):
    path = str(tmp_path / "keep.safetensors")
    st.save_file({"w": np.ones(2, np.float32)}, path)
    before = open(path, "rb").read()
    for bad in ({"w": np.array(["text"])}, {"__metadata__": np.ones(1, np.float32)}):
        with pytest.raises(MftError, match="keep.safetensors"):
            st.save_file(bad, path)
    assert open(path, "rb").read() == before
    assert os.listdir(tmp_path) == ["keep.safetensors"]


F32x2 = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
MALFORMED = {
    "truncated": (b"\x05\x00\x00", None),
    "header_longer_than_file": (struct.pack("<Q", 1000) + b"{}", "raw"),
    "offsets_past_end": ({"a": F32x2}, b"\x00" * 4),
    "overlap": ({"a": F32x2, "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\x00" * 8),
    "gap": ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\x00" * 8),
    "trailing_bytes": ({"a": F32x2}, b"\x00" * 12),
    "dtype_shape_mismatch": ({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\x00" * 8),
    "unknown_dtype": ({"a": {"dtype": "Q7", "shape": [2], "data_offsets": [0, 8]}}, b"\x00" * 8),
    "negative_shape": ({"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, b"\x00" * 8),
    "non_utf8": (b'{"\xff\xfe": 1}', b""),
    "not_json": (b"{nope", b""),
    "not_an_object": (b"[1, 2]", b""),
    "duplicate_key": (b'{"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}, '
                      b'"a": {"dtype": "U8", "shape": [1], "data_offsets": [1, 2]}}', b"\x00\x00"),
    "metadata_not_strings": ({"__metadata__": {"step": 3}}, b""),
}

# What each message must say (both implementations).
REASONS = {
    "truncated": "shorter than its 8-byte header",
    "header_longer_than_file": "exceeds the file size",
    "offsets_past_end": "run past the end",
    "overlap": "overlap",
    "gap": "gap of unused bytes",
    "trailing_bytes": "trailing bytes",
    "dtype_shape_mismatch": "do not fit dtype F32 x shape \\[3\\]",
    "unknown_dtype": "Q7",
    "negative_shape": "malformed header entry",
    "non_utf8": "not valid UTF-8 JSON",
    "not_json": "not valid UTF-8 JSON",
    "not_an_object": "JSON object",
    "duplicate_key": "appears twice",
    "metadata_not_strings": "__metadata__",
}


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_files_raise_mft_error_naming_the_file(tmp_path, impl, case):
    header, data = MALFORMED[case]
    path = tmp_path / f"{case}.safetensors"
    if data is None or data == "raw":
        path.write_bytes(header)
    else:
        write_raw(path, header, data)
    for fn in (impl.read_header, impl.load_file):
        with pytest.raises(MftError) as err:
            fn(str(path))
        assert str(path) in str(err.value)
        assert err.match(REASONS[case])


def test_error_messages_name_the_tensor(tmp_path):
    path = write_raw(tmp_path / "m.safetensors", {"layer.0.w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8)
    for impl in (st, ref):
        with pytest.raises(MftError, match="layer.0.w"):
            impl.load_file(path)


def test_missing_file(tmp_path):
    with pytest.raises(MftError, match="nothere"):
        st.load_file(str(tmp_path / "nothere.safetensors"))
    with pytest.raises(MftError, match="nothere"):
        st.read_header(str(tmp_path / "nothere.safetensors"))
