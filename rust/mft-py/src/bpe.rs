//! The byte-level BPE tokenizer and trainer for Python (`mft.tokenizer`).
//!
//! Encoding/training runs with the GIL released; batches spread over
//! rayon's pool (RAYON_NUM_THREADS caps it).

use numpy::{IntoPyArray, PyArray1};
use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use std::path::PathBuf;
use std::sync::Arc;

use mft_core::bpe::{self, Error, Tokenizer, Trainer, TrainerConfig};

fn bpe_err(e: Error) -> PyErr {
    match e {
        Error::Io(m) => PyOSError::new_err(m),
        Error::Format(m) | Error::Unsupported(m) | Error::Invalid(m) => PyValueError::new_err(m),
    }
}

/// Texts this long release the GIL even for a single `encode`.
const DETACH_BYTES: usize = 4096;

#[pyclass(name = "BpeTokenizer", module = "mft._native", frozen)]
pub struct PyBpeTokenizer {
    /// Shared with other native modules that want to tokenize without Python.
    pub inner: Arc<Tokenizer>,
}

#[pymethods]
impl PyBpeTokenizer {
    #[staticmethod]
    fn from_file(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let tok = py.detach(|| bpe::from_file(&path)).map_err(bpe_err)?;
        Ok(PyBpeTokenizer {
            inner: Arc::new(tok),
        })
    }

    #[staticmethod]
    fn from_str(json: &str) -> PyResult<Self> {
        Ok(PyBpeTokenizer {
            inner: Arc::new(bpe::from_json_str(json).map_err(bpe_err)?),
        })
    }

    fn to_str(&self) -> String {
        bpe::to_json_string(&self.inner)
    }

    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        py.detach(|| bpe::save(&self.inner, &path)).map_err(bpe_err)
    }

    #[pyo3(signature = (text, add_special_tokens = true))]
    fn encode(&self, py: Python<'_>, text: &str, add_special_tokens: bool) -> Vec<u32> {
        if text.len() >= DETACH_BYTES {
            py.detach(|| self.inner.encode(text, add_special_tokens))
        } else {
            self.inner.encode(text, add_special_tokens)
        }
    }

    #[pyo3(signature = (texts, add_special_tokens = true))]
    fn encode_batch(
        &self,
        py: Python<'_>,
        texts: Vec<String>,
        add_special_tokens: bool,
    ) -> Vec<Vec<u32>> {
        py.detach(|| self.inner.encode_batch(&texts, add_special_tokens))
    }

    /// Batch encoding as two arrays: all ids concatenated (uint32) and
    /// `len(texts) + 1` offsets (int64), so text i is ids[off[i]:off[i+1]].
    #[pyo3(signature = (texts, add_special_tokens = true))]
    fn encode_batch_flat<'py>(
        &self,
        py: Python<'py>,
        texts: Vec<String>,
        add_special_tokens: bool,
    ) -> (Bound<'py, PyArray1<u32>>, Bound<'py, PyArray1<i64>>) {
        let (ids, offsets) = py.detach(|| {
            let per_text = self.inner.encode_batch(&texts, add_special_tokens);
            let total = per_text.iter().map(Vec::len).sum();
            let mut ids = Vec::with_capacity(total);
            let mut offsets = Vec::with_capacity(per_text.len() + 1);
            offsets.push(0i64);
            for v in per_text {
                ids.extend_from_slice(&v);
                offsets.push(ids.len() as i64);
            }
            (ids, offsets)
        });
        (ids.into_pyarray(py), offsets.into_pyarray(py))
    }

    #[pyo3(signature = (ids, skip_special_tokens = true))]
    fn decode(&self, ids: Vec<u32>, skip_special_tokens: bool) -> String {
        self.inner.decode(&ids, skip_special_tokens)
    }

    /// HF's `get_vocab_size(with_added_tokens=True)`.
    #[getter]
    fn vocab_size(&self) -> usize {
        self.inner.vocab_size()
    }

    /// One more than the largest id (the embedding table size needed).
    #[getter]
    fn id_upper_bound(&self) -> usize {
        self.inner.max_id_plus_one()
    }

    fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id).map(str::to_string)
    }

    /// [(id, content, special)] in file order.
    fn added_tokens(&self) -> Vec<(u32, String, bool)> {
        self.inner
            .added
            .tokens
            .iter()
            .map(|t| (t.id, t.content.clone(), t.special))
            .collect()
    }

    /// Ids the post-processor adds (before the text, after the text).
    fn template_ids(&self) -> (Vec<u32>, Vec<u32>) {
        self.inner.post_processor.added_ids()
    }

    /// The GPT-2 pre-tokenizer pieces of `text` (no added tokens, no prefix space).
    #[staticmethod]
    fn pre_tokenize(text: &str) -> Vec<String> {
        bpe::pieces(text).into_iter().map(str::to_string).collect()
    }
}

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

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyBpeTokenizer>()?;
    m.add_class::<PyBpeTrainer>()?;
    Ok(())
}
