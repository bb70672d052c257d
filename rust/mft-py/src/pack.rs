//! Sample-index building and fine-tuning packing for Python.

use numpy::{PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1};
use pyo3::prelude::*;

use mft_core::pack;

use crate::error::value_err;

/// (sample indices per bin, cumulative end positions per bin)
type PackedBins = (Vec<Vec<usize>>, Vec<Vec<u64>>);

/// build_sample_idx(sizes int32[], doc_idx int32[], seq_len, num_samples) -> int64[num_samples + 1, 2]
#[pyfunction]
fn build_sample_idx<'py>(
    py: Python<'py>,
    sizes: PyReadonlyArray1<'py, i32>,
    doc_idx: PyReadonlyArray1<'py, i32>,
    seq_len: usize,
    num_samples: usize,
) -> PyResult<Bound<'py, PyArray2<i64>>> {
    let sizes = sizes
        .as_slice()
        .map_err(|_| value_err("sizes must be contiguous".into()))?;
    let doc_idx = doc_idx
        .as_slice()
        .map_err(|_| value_err("doc_idx must be contiguous".into()))?;
    let idx = py
        .detach(|| pack::build_sample_idx(sizes, doc_idx, seq_len, num_samples))
        .map_err(value_err)?;
    let flat: Vec<i64> = idx.into_iter().flatten().collect();
    let rows = flat.len() / 2;
    PyArray1::from_vec(py, flat).reshape([rows, 2])
}

/// best_fit_decreasing(lengths int64[], seq_len) -> (bins, actual_seq_len), lists of lists
#[pyfunction]
fn best_fit_decreasing(lengths: PyReadonlyArray1<'_, i64>, seq_len: u64) -> PyResult<PackedBins> {
    let lengths = lengths
        .as_slice()
        .map_err(|_| value_err("lengths must be contiguous".into()))?;
    if let Some(i) = lengths.iter().position(|&l| l < 0) {
        return Err(value_err(format!(
            "sample {i} has negative length {}",
            lengths[i]
        )));
    }
    let lengths: Vec<u64> = lengths.iter().map(|&l| l as u64).collect();
    let bins = pack::best_fit_decreasing(&lengths, seq_len).map_err(value_err)?;
    Ok((bins.bins, bins.actual_seq_len))
}

/// build_blending_indices(weights float64[], size) -> (dataset uint16[size], sample int64[size])
#[pyfunction]
fn build_blending_indices<'py>(
    py: Python<'py>,
    weights: Vec<f64>,
    size: usize,
) -> PyResult<(Bound<'py, PyArray1<u16>>, Bound<'py, PyArray1<i64>>)> {
    let (which, local) = py
        .detach(|| pack::build_blending_indices(&weights, size))
        .map_err(value_err)?;
    Ok((PyArray1::from_vec(py, which), PyArray1::from_vec(py, local)))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(build_sample_idx, m)?)?;
    m.add_function(wrap_pyfunction!(best_fit_decreasing, m)?)?;
    m.add_function(wrap_pyfunction!(build_blending_indices, m)?)?;
    Ok(())
}
