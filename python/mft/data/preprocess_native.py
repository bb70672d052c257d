"""The native paths of `mft data preprocess` (mft's own tokenizer only).

JSONL and text files are memory-mapped and handed whole to Rust, which cuts
them into blocks of lines, checks, parses and encodes every line in parallel
and writes each block while the next is encoded. Parquet string columns are
read batch by batch with pyarrow and their Arrow buffers (offsets + bytes)
go to Rust in place, without a Python string per row. Bad documents come
back as (line or row, message); the caller's stats decide skip or fatal.
"""

from __future__ import annotations

import mmap
import os
import queue
import threading

import numpy as np

from mft.errors import MftError

PARQUET_BATCH_ROWS = 2048


def native_tokenizer(tokenizer):
    """mft's own native tokenizer behind `tokenizer`, or None (a stand-in
    tokenizer takes the Python path)."""
    from mft import _native

    inner = getattr(tokenizer, "_tok", None)
    return inner if isinstance(inner, _native.BpeTokenizer) else None


def open_parquet(path: str, text_field: str):
    """The opened `pyarrow.parquet.ParquetFile`; errors name the file and what to do."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise MftError(f"{path}: reading .parquet needs pyarrow; install pyarrow (pip install pyarrow)") from None
    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises its own ArrowInvalid/OSError types
        raise MftError(f"{path}: not a readable Parquet file ({e})") from None
    names = pf.schema_arrow.names
    if text_field not in names:
        raise MftError(f"{path}: no column {text_field!r} (columns: {', '.join(names[:8])}; use --field)")
    return pf


def encode_lines(path, native, field, eos, max_doc_bytes, block_bytes, skip_bad, stats, builder, workers, on_bytes) -> None:
    """JSONL (text under `field`) or plain text (`field` None), encoded and
    written in Rust."""
    from mft import _native

    stats.files += 1
    try:
        f = open(path, "rb")
    except OSError as e:
        raise MftError(f"{path}: cannot open: {e.strerror}") from None
    with f:
        if os.fstat(f.fileno()).st_size == 0:
            return  # mmap cannot map an empty file
        try:
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError) as e:
            raise MftError(f"{path}: cannot map for reading: {e}") from None
    with mm:
        view = memoryview(mm)
        try:
            # add_special_tokens=True: the same ids as the Python path's encode_batch.
            docs, bad, examples, empty, good_bytes, fatal = _native.encode_lines_into(
                native, view, builder._writer, field, True, int(eos), int(max_doc_bytes), int(block_bytes), skip_bad,
                int(workers), on_bytes)
        except (ValueError, OSError) as e:
            raise MftError(str(e)) from None
        finally:
            view.release()
    if fatal is not None:
        stats.bad(f"{path}:{fatal[0]}: {fatal[1]}", skip_bad=False)
    stats.add_skipped(bad, [f"{path}:{line}: {message}" for line, message in examples])
    stats.skipped_empty += empty
    stats.input_bytes += good_bytes


def encode_parquet(path, native, text_field, eos, max_doc_bytes, skip_bad, stats, builder, workers, on_bytes) -> bool:
    """A Parquet file's string column, encoded and written in Rust; False
    (nothing done) when the column is not a string column, for the Python
    path to report row by row."""
    from mft import _native

    pf = open_parquet(path, text_field)  # says to install pyarrow when it is missing
    import pyarrow as pa

    column_type = pf.schema_arrow.field(text_field).type
    if not (pa.types.is_string(column_type) or pa.types.is_large_string(column_type)):
        return False
    stats.files += 1
    offset_type = np.int32 if pa.types.is_string(column_type) else np.int64
    row = 0
    for batch in _read_ahead(pf.iter_batches(columns=[text_field], batch_size=PARQUET_BATCH_ROWS)):
        col = batch.column(0)
        n = len(col)
        _, offsets_buf, data_buf = col.buffers()
        offsets = np.frombuffer(offsets_buf, dtype=offset_type)[col.offset : col.offset + n + 1]
        data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.empty(0, np.uint8)
        valid, nulls = None, []
        if col.null_count:
            valid = np.ascontiguousarray(col.is_valid().to_numpy(zero_copy_only=False))
            nulls = [(int(i), f"{text_field!r} is null") for i in np.flatnonzero(~valid)]
        try:
            docs, bad, empty, good_bytes = _native.encode_rows_into(
                native, data, np.ascontiguousarray(offsets), valid, builder._writer, True, int(eos), int(max_doc_bytes),
                int(workers))
        except (ValueError, OSError) as e:
            raise MftError(f"{path}: {e}") from None
        for i, message in sorted(nulls + bad):  # in row order, so a fatal error names the first
            stats.bad(f"{path}:row {row + i + 1}: {message}", skip_bad)
        stats.skipped_empty += empty
        stats.input_bytes += good_bytes
        if on_bytes is not None:
            on_bytes(int(offsets[-1] - offsets[0]) if n else 0)
        row += n
    return True


def _read_ahead(batches, depth: int = 2):
    """Yields `batches`, decoding the next ones on a thread meanwhile (pyarrow
    releases the GIL): reading no longer waits for encoding, nor the reverse.
    The thread stops when the consumer does, early exits included."""
    items: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def produce():
        try:
            for b in batches:
                while not stop.is_set():
                    try:
                        items.put(b, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            items.put(end)
        except BaseException as e:  # handed to the consumer, raised there
            items.put(e)

    thread = threading.Thread(target=produce, name="mft-parquet-reader", daemon=True)
    thread.start()
    try:
        while (item := items.get()) is not end:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()
