//! The tokenizer (any HF tokenizer.json: BPE, WordPiece, Unigram, WordLevel)
//! for Python (`mft.tokenizer`), a thin layer over `mft_core::bpe`; the
//! byte-level BPE trainer is in `bpe/trainer.rs`.
//!
//! Encoding/training runs with the GIL released; batches spread over
//! rayon's pool (RAYON_NUM_THREADS caps it).

use numpy::{IntoPyArray, PyArray1, PyArray2, PyArrayMethods};
use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedStr;
use std::path::PathBuf;
use std::sync::Arc;

use mft_core::bpe::{self, Error, Tokenizer};

mod trainer;

pub(crate) fn bpe_err(e: Error) -> PyErr {
    match e {
        Error::Io(m) => PyOSError::new_err(m),
        Error::Format(m) | Error::Unsupported(m) | Error::Invalid(m) => PyValueError::new_err(m),
    }
}

/// (ids, type_ids, offsets if asked for).
type PairTuple = (Vec<u32>, Vec<u32>, Option<Vec<(usize, usize)>>);

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

    /// Errors only where the file's truncation cannot cut the text as HF
    /// would refuse to ("OnlySecond" without a pair, too large a stride).
    #[pyo3(signature = (text, add_special_tokens = true))]
    fn encode(&self, py: Python<'_>, text: &str, add_special_tokens: bool) -> PyResult<Vec<u32>> {
        if text.len() >= DETACH_BYTES {
            py.detach(|| self.inner.try_encode(text, add_special_tokens))
        } else {
            self.inner.try_encode(text, add_special_tokens)
        }
        .map_err(bpe_err)
    }

    #[pyo3(signature = (texts, add_special_tokens = true))]
    fn encode_batch(
        &self,
        py: Python<'_>,
        texts: Vec<PyBackedStr>,
        add_special_tokens: bool,
    ) -> PyResult<Vec<Vec<u32>>> {
        py.detach(|| {
            let mut rows = if self.inner.limits.is_none() {
                self.inner.encode_batch(&texts, add_special_tokens)
            } else {
                self.inner.try_encode_batch(&texts, add_special_tokens)?
            };
            self.inner.pad_batch(&mut rows);
            Ok(rows)
        })
        .map_err(bpe_err)
    }

    /// Batch encoding as two arrays: all ids concatenated (uint32) and
    /// `len(texts) + 1` offsets (int64), so text i is ids[off[i]:off[i+1]].
    #[pyo3(signature = (texts, add_special_tokens = true))]
    fn encode_batch_flat<'py>(
        &self,
        py: Python<'py>,
        texts: Vec<PyBackedStr>,
        add_special_tokens: bool,
    ) -> (Bound<'py, PyArray1<u32>>, Bound<'py, PyArray1<i64>>) {
        let (ids, offsets) = py.detach(|| self.inner.encode_batch_flat(&texts, add_special_tokens));
        (ids.into_pyarray(py), offsets.into_pyarray(py))
    }

    #[pyo3(signature = (ids, skip_special_tokens = true))]
    fn decode(&self, ids: Vec<u32>, skip_special_tokens: bool) -> String {
        self.inner.decode(&ids, skip_special_tokens)
    }

    #[pyo3(signature = (batch, skip_special_tokens = true))]
    fn decode_batch(
        &self,
        py: Python<'_>,
        batch: Vec<Vec<u32>>,
        skip_special_tokens: bool,
    ) -> Vec<String> {
        py.detach(|| self.inner.decode_batch(&batch, skip_special_tokens))
    }

    /// One text's ids as a uint32 numpy array (moved, not copied).
    #[pyo3(signature = (text, add_special_tokens = true))]
    fn encode_array<'py>(
        &self,
        py: Python<'py>,
        text: &str,
        add_special_tokens: bool,
    ) -> PyResult<Bound<'py, PyArray1<u32>>> {
        let ids = if text.len() >= DETACH_BYTES {
            py.detach(|| self.inner.try_encode(text, add_special_tokens))
        } else {
            self.inner.try_encode(text, add_special_tokens)
        };
        Ok(ids.map_err(bpe_err)?.into_pyarray(py))
    }

    /// (ids, [(start, end)] char offsets into `text`).
    #[pyo3(signature = (text, add_special_tokens = true))]
    fn encode_with_offsets(
        &self,
        py: Python<'_>,
        text: &str,
        add_special_tokens: bool,
    ) -> PyResult<(Vec<u32>, Vec<(usize, usize)>)> {
        py.detach(|| self.inner.try_encode_with_offsets(text, add_special_tokens))
            .map_err(bpe_err)
    }

    #[pyo3(signature = (texts, add_special_tokens = true))]
    fn encode_batch_with_offsets(
        &self,
        py: Python<'_>,
        texts: Vec<PyBackedStr>,
        add_special_tokens: bool,
    ) -> PyResult<Vec<bpe::IdsWithOffsets>> {
        py.detach(|| {
            let mut rows = self
                .inner
                .encode_batch_with_offsets(&texts, add_special_tokens)?;
            self.inner.pad_batch_with_offsets(&mut rows);
            Ok(rows)
        })
        .map_err(bpe_err)
    }

    /// A rectangular batch: (ids int32 [B, L], attention_mask int8 [B, L],
    /// lengths int64 [B]); see `Tokenizer::encode_batch_padded`.
    #[pyo3(signature = (texts, add_special_tokens, max_length, pad_to, pad_id, pad_left))]
    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    fn encode_batch_padded<'py>(
        &self,
        py: Python<'py>,
        texts: Vec<PyBackedStr>,
        add_special_tokens: bool,
        max_length: Option<usize>,
        pad_to: Option<usize>,
        pad_id: u32,
        pad_left: bool,
    ) -> PyResult<(
        Bound<'py, PyArray2<i32>>,
        Bound<'py, PyArray2<i8>>,
        Bound<'py, PyArray1<i64>>,
    )> {
        let rows = py
            .detach(|| {
                self.inner.encode_batch_padded(
                    &texts,
                    add_special_tokens,
                    max_length,
                    pad_to,
                    pad_id,
                    pad_left,
                )
            })
            .map_err(bpe_err)?;
        let (b, width) = (rows.lengths.len(), rows.width);
        Ok((
            rows.ids.into_pyarray(py).reshape([b, width])?,
            rows.mask.into_pyarray(py).reshape([b, width])?,
            rows.lengths.into_pyarray(py),
        ))
    }

    /// `a` (with pair `b`) laid out by the post-processor's template:
    /// (ids, type_ids, offsets or None).
    #[pyo3(signature = (a, b = None, add_special_tokens = true, with_offsets = false))]
    fn encode_pair(
        &self,
        py: Python<'_>,
        a: &str,
        b: Option<&str>,
        add_special_tokens: bool,
        with_offsets: bool,
    ) -> PyResult<PairTuple> {
        let e = py
            .detach(|| {
                self.inner
                    .encode_pair(a, b, add_special_tokens, with_offsets)
            })
            .map_err(bpe_err)?;
        Ok((e.ids, e.type_ids, e.offsets))
    }

    /// `encode_pair` over [(a, b or None)], on all cores, in order.
    #[pyo3(signature = (items, add_special_tokens = true, with_offsets = false))]
    fn encode_pair_batch(
        &self,
        py: Python<'_>,
        items: Vec<(PyBackedStr, Option<PyBackedStr>)>,
        add_special_tokens: bool,
        with_offsets: bool,
    ) -> PyResult<Vec<PairTuple>> {
        let rows = py
            .detach(|| {
                self.inner
                    .encode_pair_batch(&items, add_special_tokens, with_offsets)
            })
            .map_err(bpe_err)?;
        Ok(rows
            .into_iter()
            .map(|e| (e.ids, e.type_ids, e.offsets))
            .collect())
    }

    /// Per item of [(a, b or None)]: its main encoding and then HF's
    /// overflowing windows (the file's truncation with its `stride`), each
    /// as `encode_pair` returns it; on all cores, in order.
    #[pyo3(signature = (items, add_special_tokens = true, with_offsets = false))]
    fn encode_overflowing(
        &self,
        py: Python<'_>,
        items: Vec<(PyBackedStr, Option<PyBackedStr>)>,
        add_special_tokens: bool,
        with_offsets: bool,
    ) -> PyResult<Vec<Vec<PairTuple>>> {
        let all = py
            .detach(|| {
                self.inner
                    .encode_overflowing_batch(&items, add_special_tokens, with_offsets)
            })
            .map_err(bpe_err)?;
        Ok(all
            .into_iter()
            .map(|rows| {
                rows.into_iter()
                    .map(|e| (e.ids, e.type_ids, e.offsets))
                    .collect()
            })
            .collect())
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

    /// True when the file sets `truncation` or `padding` (applied to every encode).
    #[getter]
    fn file_limits(&self) -> bool {
        !self.inner.limits.is_none()
    }

    /// HF's model type: "BPE", "WordPiece", "Unigram" or "WordLevel".
    #[getter]
    fn model_type(&self) -> &'static str {
        self.inner.model.type_name()
    }

    /// True when the model merges byte-level mapped text (GPT-2 style).
    #[getter]
    fn is_byte_level(&self) -> bool {
        self.inner.model.is_byte_level()
    }

    /// The GPT-2 pre-tokenizer pieces of `text` (no added tokens, no prefix space).
    #[staticmethod]
    fn pre_tokenize(text: &str) -> Vec<String> {
        bpe::pieces(text).into_iter().map(str::to_string).collect()
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyBpeTokenizer>()?;
    m.add_class::<trainer::PyBpeTrainer>()?;
    Ok(())
}
