"""Megatron-compatible indexed datasets: `<prefix>.bin` (tokens) + `<prefix>.idx`.

`.idx` (little-endian), as Megatron-LM's `indexed_dataset.py`:
    magic  b"MMIDIDX\\x00\\x00"        9 bytes
    version u64 = 1
    dtype code u8                     Megatron's codes: 8 = uint16, 4 = int32, ...
    sequence count u64                S
    document count u64               D + 1 (entries in the document index)
    sequence lengths int32[S]
    sequence pointers int64[S]       byte offsets into .bin
    document indices int64[D + 1]    starting with 0, ending with S
Here one document is one sequence. Reading is numpy memmap; writing is the
Rust `mft._native.IndexedWriter` (temp names, renamed into place at finish).
"""

from __future__ import annotations

import os
import struct

import numpy as np

from mft.errors import MftError

MAGIC = b"MMIDIDX\x00\x00"
VERSION = 1
HEADER = struct.Struct("<9sQBQQ")  # magic, version, dtype code, sequences, documents
# Megatron's DType codes.
CODE_TO_DTYPE = {
    1: np.dtype(np.uint8),
    2: np.dtype(np.int8),
    3: np.dtype(np.int16),
    4: np.dtype(np.int32),
    5: np.dtype(np.int64),
    6: np.dtype(np.float64),
    7: np.dtype(np.float32),
    8: np.dtype(np.uint16),
}


def dtype_for_vocab(vocab_size: int) -> np.dtype:
    """Megatron's choice: uint16 when the vocabulary is below 65500 ids, else int32."""
    return np.dtype(np.uint16) if vocab_size < 65500 else np.dtype(np.int32)


class IndexedDataset:
    """Read-only view of `<prefix>.bin/.idx`; `ds[i]` is document i's tokens."""

    def __init__(self, prefix: str):
        self.prefix = os.fspath(prefix)
        self.idx_path = self.prefix + ".idx"
        self.bin_path = self.prefix + ".bin"
        for path in (self.idx_path, self.bin_path):
            if not os.path.isfile(path):
                raise MftError(f"{path}: no such file (indexed dataset prefix {self.prefix!r})")
        self._read_index()
        nbytes = os.path.getsize(self.bin_path)
        expected = int(self.sequence_lengths.sum(dtype=np.int64)) * self.dtype.itemsize
        if nbytes != expected:
            raise MftError(f"{self.bin_path}: has {nbytes} bytes but its index describes {expected} (truncated or mismatched pair)")
        if nbytes == 0:
            self._bin = np.empty(0, dtype=self.dtype)
        else:
            self._bin = np.memmap(self.bin_path, dtype=self.dtype, mode="r")

    def _read_index(self) -> None:
        path = self.idx_path
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(HEADER.size)
        if len(head) < len(MAGIC) or head[: len(MAGIC)] != MAGIC:
            raise MftError(f"{path}: not a Megatron indexed-dataset index (bad magic {head[:9]!r})")
        if len(head) < HEADER.size:
            raise MftError(f"{path}: truncated header ({size} bytes, need {HEADER.size})")
        _, version, code, n_seq, n_doc_entries = HEADER.unpack(head)
        if version != VERSION:
            raise MftError(f"{path}: unsupported index version {version} (expected {VERSION})")
        if code not in CODE_TO_DTYPE:
            raise MftError(f"{path}: unknown dtype code {code}")
        if n_doc_entries < 1:
            raise MftError(f"{path}: document count {n_doc_entries} must be at least 1 (the leading 0)")
        expected = HEADER.size + n_seq * (4 + 8) + n_doc_entries * 8
        if size != expected:
            what = "truncated" if size < expected else "has trailing bytes"
            raise MftError(f"{path}: {what}: {size} bytes, but {n_seq} sequences and {n_doc_entries} document entries need {expected}")
        self.dtype = CODE_TO_DTYPE[code]
        mm = np.memmap(path, dtype=np.uint8, mode="r")
        off = HEADER.size
        self.sequence_lengths = mm[off : off + 4 * n_seq].view(np.int32)
        off += 4 * n_seq
        self.sequence_pointers = mm[off : off + 8 * n_seq].view(np.int64)
        off += 8 * n_seq
        self.document_indices = mm[off : off + 8 * n_doc_entries].view(np.int64)
        self._check_index(path, n_seq)

    def _check_index(self, path: str, n_seq: int) -> None:
        lengths, pointers, docs = self.sequence_lengths, self.sequence_pointers, self.document_indices
        if n_seq and lengths.min() < 0:
            raise MftError(f"{path}: negative sequence length at sequence {int(np.argmin(lengths))}")
        expect = np.zeros(n_seq, dtype=np.int64)
        if n_seq > 1:
            np.cumsum(lengths[:-1], dtype=np.int64, out=expect[1:])
        expect *= self.dtype.itemsize
        bad = np.flatnonzero(pointers != expect)
        if bad.size:
            raise MftError(f"{path}: sequence pointer {bad[0]} is {pointers[bad[0]]}, expected {expect[bad[0]]}")
        if docs[0] != 0 or docs[-1] != n_seq or np.any(np.diff(docs) < 0):
            raise MftError(f"{path}: document indices must rise from 0 to {n_seq}")

    def __len__(self) -> int:
        return len(self.sequence_lengths)

    def __getitem__(self, i: int) -> np.ndarray:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"document {i} out of range for {n} documents in {self.prefix}")
        return self.get(i % n)

    def get(self, i: int, offset: int = 0, length: int | None = None) -> np.ndarray:
        """Tokens of document i from `offset`, `length` of them (default: to the end)."""
        start = int(self.sequence_pointers[i]) // self.dtype.itemsize + offset
        end = start - offset + int(self.sequence_lengths[i]) if length is None else start + length
        return self._bin[start:end]

    @property
    def num_tokens(self) -> int:
        """Tokens in all documents."""
        return int(self.sequence_lengths.sum(dtype=np.int64))


class IndexedDatasetBuilder:
    """Streams documents into `<prefix>.bin/.idx` through the Rust writer.

    Used as a context manager, an exception inside the block aborts: the
    temporary files are removed and nothing appears under the final names.
    """

    def __init__(self, prefix: str, vocab_size: int):
        from mft import _native

        self.prefix = os.fspath(prefix)
        try:
            self._writer = _native.IndexedWriter(self.prefix, int(vocab_size))
        except (ValueError, OSError) as e:
            raise MftError(str(e)) from None
        self.dtype = np.dtype(self._writer.dtype)

    def add_document(self, tokens) -> None:
        """Appends one document (a sequence of token ids)."""
        self._call(self._writer.add_document, np.ascontiguousarray(tokens, dtype=np.int64).reshape(-1))

    def add_documents(self, docs) -> None:
        """Appends many documents (a list of id sequences) in one native call."""
        lengths = np.fromiter((len(d) for d in docs), dtype=np.int64, count=len(docs))
        flat = np.concatenate([np.asarray(d, dtype=np.int64).reshape(-1) for d in docs]) if len(docs) else np.empty(0, np.int64)
        self._call(self._writer.add_documents, flat, lengths)

    def add_flat(self, flat, lengths) -> None:
        """Appends documents given as one flat id array and their lengths."""
        flat = np.asarray(flat)
        # The tokenizer's uint32 ids go to the writer as they are; anything else as int64.
        flat = np.ascontiguousarray(flat, dtype=np.uint32 if flat.dtype == np.uint32 else np.int64).reshape(-1)
        self._call(self._writer.add_documents, flat, np.ascontiguousarray(lengths, dtype=np.int64).reshape(-1))

    @property
    def documents(self) -> int:
        """Documents added so far."""
        return self._writer.documents

    @property
    def tokens(self) -> int:
        """Tokens added so far."""
        return self._writer.tokens

    def finish(self) -> tuple[int, int]:
        """Renames both files into place; returns (documents, tokens)."""
        return self._call(self._writer.finish)

    def abort(self) -> None:
        """Drops the temporary files; nothing appears under PREFIX.bin/.idx."""
        self._writer.abort()

    def _call(self, fn, *args):
        try:
            return fn(*args)
        except (ValueError, OSError) as e:
            raise MftError(str(e)) from None

    def __enter__(self) -> "IndexedDatasetBuilder":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.finish()
        else:
            self.abort()


def write_indexed_dataset(prefix: str, documents, vocab_size: int) -> tuple[int, int]:
    """Writes a whole list of documents at once; returns (documents, tokens)."""
    builder = IndexedDatasetBuilder(prefix, vocab_size)
    try:
        builder.add_documents(list(documents))
    except BaseException:
        builder.abort()
        raise
    return builder.finish()
