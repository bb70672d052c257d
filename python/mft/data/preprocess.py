"""Corpus -> indexed dataset: read documents, tokenize, append EOD, write .bin/.idx.

Inputs (files or glob patterns, read in the order given, globs sorted):
`.jsonl`/`.json` (one JSON object per line, text under `field`), `.parquet`
(column `field`, via the optional pyarrow) or `.txt` (one document per
non-empty line). Bad input - malformed JSON, a missing or non-string field,
non-UTF-8 bytes, a document over `max_doc_bytes` - is fatal with its
file:line (parquet: file:row) unless `skip_bad`, which skips and counts it;
empty documents are always skipped and counted. Tokenization runs
`tokenizer.encode_batch` on chunks of documents in `workers` threads (the
native tokenizer releases the GIL), keeping output in input order; with
mft's own tokenizer, JSONL, text and Parquet string columns take the native
paths instead (`preprocess_native`), on `workers` threads. The
output appears under its final name only when complete (temp + rename).
"""

from __future__ import annotations

import glob as _glob
import json
import os
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field as dc_field
from typing import Iterator

import numpy as np

from mft.data.indexed import IndexedDatasetBuilder
from mft.data.preprocess_native import encode_lines, encode_parquet, native_tokenizer, open_parquet
from mft.errors import MftError

JSONL_SUFFIXES = (".jsonl", ".json")
TEXT_SUFFIXES = (".txt",)
PARQUET_SUFFIXES = (".parquet",)
# One document above this is almost surely a broken file (a whole dump on one line).
DEFAULT_MAX_DOC_BYTES = 64 * 1024 * 1024
BAD_EXAMPLES = 5


@dataclass
class PreprocessStats:
    documents: int = 0
    tokens: int = 0
    input_bytes: int = 0
    seconds: float = 0.0
    skipped_bad: int = 0
    skipped_empty: int = 0
    bad_examples: list[str] = dc_field(default_factory=list)
    files: int = 0

    def bad(self, where: str, skip_bad: bool) -> None:
        """Counts one bad document, or raises when bad input is fatal."""
        if not skip_bad:
            raise MftError(where + " (use --skip-bad to skip such documents)")
        self.skipped_bad += 1
        if len(self.bad_examples) < BAD_EXAMPLES:
            self.bad_examples.append(where)

    def add_skipped(self, count: int, examples: list[str]) -> None:
        """Counts bad documents skipped elsewhere (the native paths), keeping the first examples."""
        self.skipped_bad += count
        self.bad_examples.extend(examples[: max(0, BAD_EXAMPLES - len(self.bad_examples))])

    @property
    def mb_per_s(self) -> float:
        return self.input_bytes / 1e6 / self.seconds if self.seconds > 0 else 0.0


def tokenizer_vocab_size(tokenizer) -> int:
    """The id range the tokenizer can emit (added tokens included)."""
    for name in ("vocab_size", "get_vocab_size"):
        value = getattr(tokenizer, name, None)
        if callable(value):
            value = value()
        if isinstance(value, int) and value > 0:
            return value
    try:
        return len(tokenizer)
    except TypeError:
        raise MftError("the tokenizer does not report its vocabulary size") from None


def expand_inputs(inputs: list[str]) -> list[str]:
    """Files and glob patterns -> the files, in the given order (each glob sorted)."""
    paths: list[str] = []
    for item in inputs:
        item = os.fspath(item)
        if any(ch in item for ch in "*?["):
            found = sorted(p for p in _glob.glob(item, recursive=True) if os.path.isfile(p))
            if not found:
                raise MftError(f"{item}: the pattern matches no files")
            paths.extend(found)
        elif os.path.isdir(item):
            raise MftError(f"{item}: is a directory (pass files or a glob such as {item}/*.jsonl)")
        elif not os.path.isfile(item):
            raise MftError(f"{item}: no such input file")
        else:
            paths.append(item)
    return paths


def _kind(path: str) -> str:
    lower = path.lower()
    if lower.endswith(JSONL_SUFFIXES):
        return "jsonl"
    if lower.endswith(TEXT_SUFFIXES):
        return "txt"
    if lower.endswith(PARQUET_SUFFIXES):
        return "parquet"
    raise MftError(f"{path}: unsupported input type (expected .jsonl, .json, .parquet or .txt)")


def iter_texts(
    paths: list[str],
    text_field: str,
    stats: PreprocessStats,
    skip_bad: bool,
    max_doc_bytes: int = DEFAULT_MAX_DOC_BYTES,
    on_bytes=None,
) -> Iterator[str]:
    """Yields document texts in file order; bad documents raise (or are counted).
    `on_bytes(n)` is told how many input bytes each document consumed (progress)."""
    for path in paths:
        kind = _kind(path)
        stats.files += 1
        if kind == "parquet":
            yield from _iter_parquet(path, text_field, stats, skip_bad, max_doc_bytes, on_bytes)
            continue
        try:
            f = open(path, "rb")
        except OSError as e:
            raise MftError(f"{path}: cannot open: {e.strerror}") from None
        with f:
            for lineno, raw in enumerate(f, 1):
                if on_bytes is not None:
                    on_bytes(len(raw))
                if len(raw) > max_doc_bytes:
                    stats.bad(f"{path}:{lineno}: document of {len(raw)} bytes exceeds --max-doc-bytes {max_doc_bytes}", skip_bad)
                    continue
                try:
                    text = raw.decode("utf-8")
                    if not text.strip():
                        continue
                    if kind == "jsonl":
                        text = _json_text(text, text_field)
                    else:
                        text = text.rstrip("\r\n")
                except UnicodeDecodeError as e:
                    stats.bad(f"{path}:{lineno}: not UTF-8 ({e.reason} at byte {e.start} of the line)", skip_bad)
                    continue
                except ValueError as e:
                    stats.bad(f"{path}:{lineno}: {e}", skip_bad)
                    continue
                if not text.strip():
                    stats.skipped_empty += 1
                    continue
                stats.input_bytes += len(raw)
                yield text


def _iter_parquet(path, text_field, stats, skip_bad, max_doc_bytes, on_bytes) -> Iterator[str]:
    pf = open_parquet(path, text_field)
    row = 0
    for batch in pf.iter_batches(columns=[text_field], batch_size=1024):
        for value in batch.column(0).to_pylist():
            row += 1
            if value is None:
                stats.bad(f"{path}:row {row}: {text_field!r} is null", skip_bad)
                continue
            if not isinstance(value, str):
                stats.bad(f"{path}:row {row}: {text_field!r} is {type(value).__name__}, not a string", skip_bad)
                continue
            nbytes = len(value.encode("utf-8", "surrogatepass"))
            if on_bytes is not None:
                on_bytes(nbytes)
            if nbytes > max_doc_bytes:
                stats.bad(f"{path}:row {row}: document of {nbytes} bytes exceeds --max-doc-bytes {max_doc_bytes}", skip_bad)
                continue
            if not value.strip():
                stats.skipped_empty += 1
                continue
            stats.input_bytes += nbytes
            yield value


def _json_text(line: str, text_field: str) -> str:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise ValueError(f"malformed JSON: {e.msg} at column {e.colno}") from None
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    if text_field not in obj:
        raise ValueError(f"missing field {text_field!r} (keys: {', '.join(sorted(obj)[:8])})")
    value = obj[text_field]
    if not isinstance(value, str):
        raise ValueError(f"field {text_field!r} is {type(value).__name__}, not a string")
    return value


def _chunks(texts: Iterator[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for t in texts:
        chunk.append(t)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def preprocess(
    inputs: list[str],
    tokenizer,
    output_prefix: str,
    text_field: str = "text",
    workers: int = 1,
    skip_bad: bool = False,
    chunk_docs: int = 256,
    max_doc_bytes: int = DEFAULT_MAX_DOC_BYTES,
    progress: bool = False,
) -> PreprocessStats:
    """Tokenizes every document, appends the tokenizer's EOS as EOD, writes `output_prefix.bin/.idx`.

    `inputs`: files or glob patterns. `progress`: a tqdm bar of input MB and MB/s on stderr."""
    eos = getattr(tokenizer, "eos_id", None)
    if eos is None:
        raise MftError("the tokenizer has no end-of-sequence token; documents need an EOD separator")
    out_dir = os.path.dirname(os.path.abspath(output_prefix))
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as e:
        raise MftError(f"{output_prefix}: cannot create output directory {out_dir}: {e.strerror}") from None
    paths = expand_inputs(inputs)
    for p in paths:
        _kind(p)  # unsupported types fail before any work
    stats = PreprocessStats()
    start = time.perf_counter()
    bar = _progress_bar(paths) if progress else None
    builder = IndexedDatasetBuilder(output_prefix, tokenizer_vocab_size(tokenizer))
    workers = max(1, int(workers))
    on_bytes = bar.update if bar is not None else None
    native = native_tokenizer(tokenizer)
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for path in paths:
                kind = _kind(path)
                if native is not None and kind in ("jsonl", "txt"):
                    field = text_field if kind == "jsonl" else None
                    encode_lines(path, native, field, eos, max_doc_bytes, BLOCK_BYTES, skip_bad, stats, builder, workers, on_bytes)
                elif native is None or kind != "parquet" or not encode_parquet(
                        path, native, text_field, eos, max_doc_bytes, skip_bad, stats, builder, workers, on_bytes):
                    texts = iter_texts([path], text_field, stats, skip_bad, max_doc_bytes, on_bytes)
                    _encode_python(texts, tokenizer, eos, builder, pool, workers, chunk_docs)
        if builder.documents == 0:
            raise MftError(f"empty corpus: no documents found in {', '.join(paths)}")
        stats.documents, stats.tokens = builder.finish()
    except BaseException:
        # Ctrl-C included: the temp files go, nothing appears under the final names.
        builder.abort()
        raise
    finally:
        if bar is not None:
            bar.close()
    stats.seconds = time.perf_counter() - start
    return stats


BLOCK_BYTES = 4 << 20


def _encode_python(texts, tokenizer, eos, builder, pool, workers, chunk_docs) -> None:
    """Chunks of texts encoded on `pool` (any tokenizer with encode_batch), written in order."""
    pending: deque = deque()
    for chunk in _chunks(texts, chunk_docs):
        pending.append(pool.submit(_encode_with_eod, tokenizer, chunk, eos))
        if len(pending) > 2 * workers:
            builder.add_flat(*pending.popleft().result())
    while pending:
        builder.add_flat(*pending.popleft().result())


def _progress_bar(paths: list[str]):
    from tqdm import tqdm

    total = sum(os.path.getsize(p) for p in paths)
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1000, desc="preprocess", smoothing=0.1, mininterval=0.5)


def _encode_with_eod(tokenizer, texts: list[str], eos: int) -> tuple[np.ndarray, np.ndarray]:
    """(flat int64 ids with EOD after every document, per-document lengths)."""
    flat_api = getattr(tokenizer, "encode_batch_flat", None)
    if flat_api is not None:
        # Avoids building one Python int per token (~2x faster end to end).
        ids, offsets = flat_api(texts)
        offsets = np.asarray(offsets, dtype=np.int64)
        flat = np.insert(np.asarray(ids, dtype=np.int64), offsets[1:], eos)
        return flat, np.diff(offsets) + 1
    encoded = tokenizer.encode_batch(texts)
    lengths = np.array([len(ids) + 1 for ids in encoded], dtype=np.int64)
    flat = np.fromiter((t for ids in encoded for t in (*ids, eos)), dtype=np.int64, count=int(lengths.sum()))
    return flat, lengths
