"""Indexed .bin/.idx datasets: the documented Megatron layout byte for byte,
round trips, atomic writes and validation on open."""

from __future__ import annotations

import os
import struct

import numpy as np
import pytest

from mft.data.indexed import IndexedDataset, IndexedDatasetBuilder, dtype_for_vocab, write_indexed_dataset
from mft.errors import MftError


def expected_idx(lengths: list[int], code: int, itemsize: int) -> bytes:
    """The .idx Megatron-LM writes, spelled out field by field."""
    out = b"MMIDIDX\x00\x00"
    out += struct.pack("<Q", 1)  # version
    out += struct.pack("<B", code)  # dtype code
    out += struct.pack("<Q", len(lengths))  # sequence count
    out += struct.pack("<Q", len(lengths) + 1)  # document count = entries in the document index
    out += struct.pack(f"<{len(lengths)}i", *lengths)
    pointers, pos = [], 0
    for n in lengths:
        pointers.append(pos)
        pos += n * itemsize
    out += struct.pack(f"<{len(lengths)}q", *pointers)
    out += struct.pack(f"<{len(lengths) + 1}q", *range(len(lengths) + 1))
    return out


@pytest.mark.parametrize(
    "vocab_size, code, fmt",
    [(50000, 8, "<H"), (65499, 8, "<H"), (65500, 4, "<i"), (151936, 4, "<i")],
)
def test_files_match_the_megatron_layout_byte_for_byte(tmp_path, vocab_size, code, fmt):
    docs = [[1, 2, 3], [vocab_size - 1], [], [7, 7, 7, 7, 0]]
    prefix = str(tmp_path / "ds")
    assert write_indexed_dataset(prefix, docs, vocab_size) == (4, 9)
    itemsize = struct.calcsize(fmt)
    assert (tmp_path / "ds.idx").read_bytes() == expected_idx([len(d) for d in docs], code, itemsize)
    assert (tmp_path / "ds.bin").read_bytes() == b"".join(struct.pack(fmt, t) for d in docs for t in d)
    assert sorted(os.listdir(tmp_path)) == ["ds.bin", "ds.idx"]


def test_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    docs = [rng.integers(0, 1000, size=rng.integers(0, 50)) for _ in range(200)]
    prefix = str(tmp_path / "rt")
    with IndexedDatasetBuilder(prefix, vocab_size=1000) as b:
        for d in docs[:100]:
            b.add_document(d)
        b.add_documents(docs[100:])
        assert b.documents == 200
    ds = IndexedDataset(prefix)
    assert len(ds) == 200 and ds.dtype == np.uint16
    np.testing.assert_array_equal(ds.sequence_lengths, [len(d) for d in docs])
    assert ds.num_tokens == sum(len(d) for d in docs)
    for i in (0, 57, 199, -1):
        np.testing.assert_array_equal(ds[i], docs[i])
    np.testing.assert_array_equal(ds.get(3, offset=1, length=2), docs[3][1:3])
    with pytest.raises(IndexError):
        ds[200]


def test_flat_uint32_ids_are_written_as_given_and_checked(tmp_path):
    """The tokenizer's uint32 output goes to the writer without an int64 copy;
    the vocabulary check still names the document and position."""
    prefix = str(tmp_path / "u")
    with IndexedDatasetBuilder(prefix, vocab_size=70000) as b:
        b.add_flat(np.array([1, 69999, 5, 6, 7], dtype=np.uint32), np.array([2, 3]))
    ds = IndexedDataset(prefix)
    assert ds.dtype == np.int32 and [ds[i].tolist() for i in range(2)] == [[1, 69999], [5, 6, 7]]
    b = IndexedDatasetBuilder(str(tmp_path / "v"), vocab_size=100)
    with pytest.raises(MftError, match=r"document 1, position 0: token id 4000000000"):
        b.add_flat(np.array([1, 4_000_000_000], dtype=np.uint32), np.array([1, 1]))
    with pytest.raises(MftError, match="lengths sum to 3 but 2 tokens"):
        b.add_flat(np.array([1, 2], dtype=np.uint32), np.array([1, 2]))
    with pytest.raises(MftError, match="tokens must be a 1-D uint32, int32 or int64 array"):
        b._call(b._writer.add_documents, np.array([1.0]), np.array([1]))
    b.abort()
    assert sorted(os.listdir(tmp_path)) == ["u.bin", "u.idx"]


def test_a_file_megatron_style_writer_made_is_read(tmp_path):
    """Hand-written pair (int32 tokens), as another tool would produce it."""
    docs = [[70000, 1], [5, 6, 7]]
    (tmp_path / "m.idx").write_bytes(expected_idx([2, 3], 4, 4))
    (tmp_path / "m.bin").write_bytes(np.array([t for d in docs for t in d], dtype="<i4").tobytes())
    ds = IndexedDataset(str(tmp_path / "m"))
    assert ds.dtype == np.int32
    assert [ds[i].tolist() for i in range(2)] == docs


def test_dtype_rule():
    assert dtype_for_vocab(32000) == np.uint16
    assert dtype_for_vocab(65500) == np.int32


def test_out_of_vocab_token_is_an_error_and_leaves_nothing(tmp_path):
    prefix = str(tmp_path / "bad")
    with pytest.raises(MftError, match=r"document 1, position 2: token id 100"):
        write_indexed_dataset(prefix, [[1], [1, 2, 100]], vocab_size=100)
    with pytest.raises(MftError, match="-1"):
        write_indexed_dataset(prefix, [[-1]], vocab_size=100)
    assert os.listdir(tmp_path) == []


def test_interrupted_write_leaves_no_pair_and_keeps_the_old_one(tmp_path):
    prefix = str(tmp_path / "ds")
    write_indexed_dataset(prefix, [[1, 2]], vocab_size=10)
    old = ((tmp_path / "ds.bin").read_bytes(), (tmp_path / "ds.idx").read_bytes())
    with pytest.raises(RuntimeError):
        with IndexedDatasetBuilder(prefix, vocab_size=10) as b:
            b.add_document([3, 4, 5])
            raise RuntimeError("interrupted")
    assert ((tmp_path / "ds.bin").read_bytes(), (tmp_path / "ds.idx").read_bytes()) == old
    assert sorted(os.listdir(tmp_path)) == ["ds.bin", "ds.idx"]
    # A builder dropped without finish() also cleans up after itself.
    b = IndexedDatasetBuilder(str(tmp_path / "other"), vocab_size=10)
    b.add_document([1])
    del b
    assert sorted(os.listdir(tmp_path)) == ["ds.bin", "ds.idx"]
    # Finishing replaces the pair.
    write_indexed_dataset(prefix, [[9], [8]], vocab_size=10)
    assert [IndexedDataset(prefix)[i].tolist() for i in range(2)] == [[9], [8]]


def write_pair(tmp_path, idx: bytes, bin_: bytes = b"") -> str:
    (tmp_path / "x.idx").write_bytes(idx)
    (tmp_path / "x.bin").write_bytes(bin_)
    return str(tmp_path / "x")


GOOD = expected_idx([2, 1], 8, 2)
BIN = b"\x01\x00\x02\x00\x03\x00"


@pytest.mark.parametrize(
    "idx, bin_, message",
    [
        (b"NOTMAGIC!" + GOOD[9:], BIN, "bad magic"),
        (GOOD[:5], BIN, "bad magic"),
        (GOOD[:20], BIN, "truncated header"),
        (GOOD[:-8], BIN, "truncated"),
        (GOOD + b"\0", BIN, "trailing bytes"),
        (GOOD[:9] + struct.pack("<Q", 2) + GOOD[17:], BIN, "version 2"),
        (GOOD[:17] + b"\x63" + GOOD[18:], BIN, "dtype code 99"),
        (GOOD, BIN[:-2], "truncated or mismatched"),
        (GOOD[:-8] + struct.pack("<q", 5), BIN, "document indices"),
    ],
    ids=["magic", "tiny", "short-header", "truncated", "trailing", "version", "dtype", "short-bin", "doc-index"],
)
def test_corrupt_files_raise_mft_error_naming_the_file(tmp_path, idx, bin_, message):
    prefix = write_pair(tmp_path, idx, bin_)
    with pytest.raises(MftError, match=message) as err:
        IndexedDataset(prefix)
    assert "x.idx" in str(err.value) or "x.bin" in str(err.value)


def test_pointer_mismatch_is_caught(tmp_path):
    bad = bytearray(GOOD)
    struct.pack_into("<q", bad, 34 + 2 * 4 + 8, 6)  # second pointer should be 4
    with pytest.raises(MftError, match="sequence pointer 1"):
        IndexedDataset(write_pair(tmp_path, bytes(bad), BIN))


def test_missing_files(tmp_path):
    with pytest.raises(MftError, match="nothing.idx"):
        IndexedDataset(str(tmp_path / "nothing"))
