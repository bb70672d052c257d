//! `mft data preprocess`'s native paths: a mapped JSONL or text file, or a
//! batch of a Parquet string column (Arrow buffers), encoded and written to
//! the indexed writer in one call, without the GIL.

use pyo3::buffer::PyBuffer;
use pyo3::exceptions::{PyKeyboardInterrupt, PyValueError};
use pyo3::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mft_core::preprocess::{encode_lines, encode_string_rows, LineBlock, LineOptions, LinesError};
use numpy::PyReadonlyArray1;

use crate::arrays::{slice, with_ints, Ints};
use crate::bpe::PyBpeTokenizer;
use crate::error::indexed_err;
use crate::indexed::PyIndexedWriter;

/// (documents, bad lines, first bad [(line, message)], empty documents,
/// bytes of good lines, the fatal bad (line, message) that stopped the run)
type Outcome = (
    usize,
    usize,
    Vec<(usize, String)>,
    usize,
    usize,
    Option<(usize, String)>,
);

/// Encodes every line of `data` (a whole file, e.g. a memoryview of an mmap)
/// and appends the documents to `writer`, on `threads` threads (0: the
/// shared pool). `progress(bytes)` is called per block (from the encoding
/// thread); a signal (Ctrl-C) stops the run at the next block with its
/// exception.
#[pyfunction]
#[pyo3(signature = (tokenizer, data, writer, field, add_special_tokens, eod, max_doc_bytes, block_bytes, skip_bad, threads = 0, progress = None))]
#[allow(clippy::too_many_arguments)]
fn encode_lines_into(
    py: Python<'_>,
    tokenizer: &PyBpeTokenizer,
    data: PyBuffer<u8>,
    writer: &Bound<'_, PyIndexedWriter>,
    field: Option<&str>,
    add_special_tokens: bool,
    eod: Option<u32>,
    max_doc_bytes: usize,
    block_bytes: usize,
    skip_bad: bool,
    threads: usize,
    progress: Option<Py<PyAny>>,
) -> PyResult<Outcome> {
    if !data.is_c_contiguous() || data.dimensions() != 1 {
        return Err(PyValueError::new_err(
            "data must be a contiguous 1-D byte buffer",
        ));
    }
    // SAFETY: the buffer is contiguous u8 and `data` keeps its exporter
    // alive (and the memory pinned) until this call returns.
    let bytes: &[u8] =
        unsafe { std::slice::from_raw_parts(data.buf_ptr() as *const u8, data.item_count()) };
    let mut guard = writer.borrow_mut();
    let out = guard.writer()?;
    let opts = LineOptions {
        field,
        add_special_tokens,
        eod,
        max_doc_bytes,
        block_bytes,
        skip_bad,
        threads,
    };
    let tok = &tokenizer.inner;
    let cancelled = AtomicBool::new(false);
    let sink = |block: &LineBlock, consumed: usize| -> PyResult<()> {
        if cancelled.load(Ordering::Relaxed) {
            return Err(PyKeyboardInterrupt::new_err("cancelled")); // replaced by the real signal's error
        }
        for run in &block.runs {
            let lengths: Vec<i64> = run.lengths.iter().map(|&n| n as i64).collect();
            out.add_documents(&run.ids, &lengths).map_err(indexed_err)?;
        }
        match &progress {
            Some(cb) => Python::attach(|py| cb.call1(py, (consumed,)).map(drop)),
            None => Ok(()),
        }
    };
    let (result, signal) = py.detach(|| {
        // The work runs on the pool; this (the main) thread watches for
        // Ctrl-C, which Python only delivers here.
        let main = std::thread::current();
        let done = AtomicBool::new(false);
        let mut result = None;
        let mut signal = None;
        mft_core::bpe::pool().in_place_scope(|scope| {
            let (slot, done) = (&mut result, &done);
            scope.spawn(move |_| {
                *slot = Some(encode_lines(tok, bytes, &opts, sink));
                done.store(true, Ordering::Release);
                main.unpark();
            });
            while !done.load(Ordering::Acquire) {
                std::thread::park_timeout(Duration::from_millis(50));
                if signal.is_none() {
                    if let Err(e) = Python::attach(|py| py.check_signals()) {
                        signal = Some(e);
                        cancelled.store(true, Ordering::Relaxed);
                    }
                }
            }
        });
        (result.expect("the encoding task ran"), signal)
    });
    if let Some(e) = signal {
        return Err(e);
    }
    match result {
        Ok(r) => Ok((
            r.documents,
            r.bad,
            r.bad_examples,
            r.empty,
            r.good_bytes,
            None,
        )),
        Err(LinesError::BadLine { line, message }) => {
            Ok((0, 0, vec![], 0, 0, Some((line, message))))
        }
        Err(LinesError::Sink(e)) => Err(e),
    }
}

/// (documents, [(row, message)] bad values, empty values, bytes of good values)
type RowsOutcome = (usize, Vec<(usize, String)>, usize, usize);

/// Encodes a string column's values (Arrow buffers: `data` uint8, `offsets`
/// int32 or int64 (uint32 too), one more than the rows; `valid` false for null rows,
/// which are skipped) on `threads` threads and appends them to `writer`.
/// Returns (documents, [(row, message)] for bad values, empty values,
/// bytes of good values); the caller decides whether bad values are fatal.
#[pyfunction]
#[pyo3(signature = (tokenizer, data, offsets, valid, writer, add_special_tokens, eod, max_doc_bytes, threads))]
#[allow(clippy::too_many_arguments)]
fn encode_rows_into(
    py: Python<'_>,
    tokenizer: &PyBpeTokenizer,
    data: PyReadonlyArray1<'_, u8>,
    offsets: &Bound<'_, PyAny>,
    valid: Option<PyReadonlyArray1<'_, bool>>,
    writer: &Bound<'_, PyIndexedWriter>,
    add_special_tokens: bool,
    eod: Option<u32>,
    max_doc_bytes: usize,
    threads: usize,
) -> PyResult<RowsOutcome> {
    let data = slice(&data, "data")?;
    let offsets = Ints::extract(offsets, "offsets")?;
    #[allow(clippy::useless_conversion)] // the int64 case needs none
    let offsets: Vec<i64> =
        with_ints!(offsets, "offsets", o => o.iter().map(|&v| v.into()).collect());
    let valid = match &valid {
        Some(v) => Some(slice(v, "valid")?),
        None => None,
    };
    let tok = &tokenizer.inner;
    let block = py
        .detach(|| {
            encode_string_rows(
                tok,
                data,
                &offsets,
                valid,
                add_special_tokens,
                eod,
                max_doc_bytes,
                threads,
            )
        })
        .map_err(PyValueError::new_err)?;
    let mut guard = writer.borrow_mut();
    let out = guard.writer()?;
    py.detach(|| {
        block.runs.iter().try_for_each(|run| {
            let lengths: Vec<i64> = run.lengths.iter().map(|&n| n as i64).collect();
            out.add_documents(&run.ids, &lengths)
        })
    })
    .map_err(indexed_err)?;
    Ok((block.documents(), block.bad, block.empty, block.good_bytes))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(encode_lines_into, m)?)?;
    m.add_function(wrap_pyfunction!(encode_rows_into, m)?)
}
