//! The indexed-dataset writer for Python (`mft.data.indexed.IndexedDatasetBuilder`).

use numpy::PyReadonlyArray1;
use pyo3::prelude::*;

use mft_core::indexed::IndexedWriter;

use crate::arrays::{slice, with_ints, Ints};
use crate::error::{indexed_err, value_err};

#[pyclass(name = "IndexedWriter", module = "mft._native")]
pub struct PyIndexedWriter {
    inner: Option<IndexedWriter>,
    prefix: String,
}

impl PyIndexedWriter {
    pub(crate) fn writer(&mut self) -> PyResult<&mut IndexedWriter> {
        let prefix = &self.prefix;
        self.inner
            .as_mut()
            .ok_or_else(|| value_err(format!("{prefix}: writer is already finished or aborted")))
    }
}

#[pymethods]
impl PyIndexedWriter {
    #[new]
    fn new(prefix: &str, vocab_size: u64) -> PyResult<Self> {
        let inner = IndexedWriter::create(prefix, vocab_size).map_err(indexed_err)?;
        Ok(PyIndexedWriter {
            inner: Some(inner),
            prefix: prefix.to_string(),
        })
    }

    /// Token storage dtype name ("uint16" or "int32").
    #[getter]
    fn dtype(&mut self) -> PyResult<&'static str> {
        Ok(self.writer()?.dtype().name())
    }

    /// Appends one document given as a 1-D int64 array.
    fn add_document(&mut self, tokens: PyReadonlyArray1<'_, i64>) -> PyResult<()> {
        let tokens = slice(&tokens, "tokens")?;
        self.writer()?.add_document(tokens).map_err(indexed_err)
    }

    /// Appends many documents given as one flat uint32, int32 or int64 array
    /// (the tokenizer's ids need no conversion) and their lengths.
    fn add_documents(
        &mut self,
        py: Python<'_>,
        flat: &Bound<'_, PyAny>,
        lengths: PyReadonlyArray1<'_, i64>,
    ) -> PyResult<()> {
        let lens = slice(&lengths, "lengths")?;
        let ids = Ints::extract(flat, "tokens")?;
        let w = self.writer()?;
        with_ints!(ids, "tokens", ids => py.detach(|| w.add_documents(ids, lens)))
            .map_err(indexed_err)
    }

    /// Writes the index and renames both files into place -> (documents, tokens).
    fn finish(&mut self) -> PyResult<(u64, u64)> {
        self.writer()?;
        let s = self.inner.take().unwrap().finish().map_err(indexed_err)?;
        Ok((s.documents, s.tokens))
    }

    /// Drops the temporary files; nothing appears under the final names.
    fn abort(&mut self) {
        self.inner = None;
    }

    #[getter]
    fn documents(&mut self) -> PyResult<u64> {
        Ok(self.writer()?.documents())
    }

    #[getter]
    fn tokens(&mut self) -> PyResult<u64> {
        Ok(self.writer()?.tokens())
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyIndexedWriter>()
}
