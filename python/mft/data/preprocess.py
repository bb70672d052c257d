"""Corpus -> indexed dataset: read JSONL/.txt documents, tokenize, append EOD, write .bin/.idx.

Inputs: `.jsonl`/`.json` (one JSON object per line, text under `field`) or
`.txt` (one document per non-empty line). Blank lines and blank texts are
skipped. A malformed line is fatal with its file:line unless `skip_bad`,
which skips and counts it. Tokenization runs `tokenizer.encode_batch` on
chunks of documents in `workers` threads (the native tokenizer releases the
GIL), keeping output in input order.
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field as dc_field
from typing import Iterator

import numpy as np

from mft.data.indexed import IndexedDatasetBuilder
from mft.errors import MftError

JSONL_SUFFIXES = (".jsonl", ".json")
TEXT_SUFFIXES = (".txt",)


@dataclass
class PreprocessStats:
    documents: int = 0
    tokens: int = 0
    input_bytes: int = 0
    seconds: float = 0.0
    skipped_bad: int = 0
    skipped_empty: int = 0
    bad_examples: list[str] = dc_field(default_factory=list)

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


def iter_texts(paths: list[str], text_field: str, stats: PreprocessStats, skip_bad: bool) -> Iterator[str]:
    """Yields document texts in file order; bad lines raise (or are counted)."""
    for path in paths:
        lower = path.lower()
        if lower.endswith(JSONL_SUFFIXES):
            jsonl = True
        elif lower.endswith(TEXT_SUFFIXES):
            jsonl = False
        else:
            raise MftError(f"{path}: unsupported input type (expected .jsonl, .json or .txt)")
        try:
            f = open(path, "rb")
        except OSError as e:
            raise MftError(f"{path}: cannot open: {e.strerror}") from None
        with f:
            for lineno, raw in enumerate(f, 1):
                try:
                    text = raw.decode("utf-8")
                    if not text.strip():
                        continue
                    if jsonl:
                        text = _json_text(text, text_field)
                    else:
                        text = text.rstrip("\r\n")
                except ValueError as e:
                    where = f"{path}:{lineno}: {e}"
                    if not skip_bad:
                        raise MftError(where + " (use --skip-bad to skip such lines)") from None
                    stats.skipped_bad += 1
                    if len(stats.bad_examples) < 5:
                        stats.bad_examples.append(where)
                    continue
                if not text.strip():
                    stats.skipped_empty += 1
                    continue
                stats.input_bytes += len(raw)
                yield text


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
) -> PreprocessStats:
    """Tokenizes every document, appends the tokenizer's EOS as EOD, writes `output_prefix.bin/.idx`."""
    eos = getattr(tokenizer, "eos_id", None)
    if eos is None:
        raise MftError("the tokenizer has no end-of-sequence token; documents need an EOD separator")
    out_dir = os.path.dirname(os.path.abspath(output_prefix))
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as e:
        raise MftError(f"{output_prefix}: cannot create output directory {out_dir}: {e.strerror}") from None
    stats = PreprocessStats()
    start = time.perf_counter()
    builder = IndexedDatasetBuilder(output_prefix, tokenizer_vocab_size(tokenizer))
    workers = max(1, int(workers))
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            pending: deque = deque()
            for chunk in _chunks(iter_texts(inputs, text_field, stats, skip_bad), chunk_docs):
                pending.append(pool.submit(_encode_with_eod, tokenizer, chunk, eos))
                if len(pending) > 2 * workers:
                    _write(builder, pending.popleft().result(), eos)
            while pending:
                _write(builder, pending.popleft().result(), eos)
        if builder.documents == 0:
            raise MftError(f"empty corpus: no documents found in {', '.join(inputs)}")
        stats.documents, stats.tokens = builder.finish()
    except BaseException:
        builder.abort()
        raise
    stats.seconds = time.perf_counter() - start
    return stats


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


def _write(builder: IndexedDatasetBuilder, encoded: tuple[np.ndarray, np.ndarray], eos: int) -> None:
    builder.add_flat(*encoded)
