//! The byte-level BPE trainer for Python (`mft.tokenizer.Tokenizer.train`).

use pyo3::prelude::*;
use std::sync::Arc;

use mft_core::bpe::{Trainer, TrainerConfig};

use super::{bpe_err, PyBpeTokenizer};

#[pyclass(name = "BpeTrainer", module = "mft._native")]
pub struct PyBpeTrainer {
    inner: Trainer,
}

#[pymethods]
impl PyBpeTrainer {
    #[new]
    #[pyo3(signature = (vocab_size, min_frequency = 2, special_tokens = Vec::new(), add_prefix_space = false))]
    fn new(
        vocab_size: usize,
        min_frequency: u64,
        special_tokens: Vec<String>,
        add_prefix_space: bool,
    ) -> PyResult<Self> {
        let config = TrainerConfig {
            vocab_size,
            min_frequency,
            special_tokens,
            add_prefix_space,
        };
        Ok(PyBpeTrainer {
            inner: Trainer::new(config).map_err(bpe_err)?,
        })
    }

    /// Counts the pre-tokenized words of `texts` (GIL released, parallel).
    fn feed(&mut self, py: Python<'_>, texts: Vec<String>) {
        let inner = &mut self.inner;
        py.detach(|| inner.feed(&texts));
    }

    #[getter]
    fn distinct_words(&self) -> usize {
        self.inner.distinct_words()
    }

    fn train(&self, py: Python<'_>) -> PyResult<PyBpeTokenizer> {
        let tok = py.detach(|| self.inner.train()).map_err(bpe_err)?;
        Ok(PyBpeTokenizer {
            inner: Arc::new(tok),
        })
    }
}
