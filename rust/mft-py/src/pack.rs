//! Sample-index building and fine-tuning packing for Python.

use numpy::{PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1};
use pyo3::prelude::*;

use mft_core::pack;

use crate::arrays::{slice, with_ints, Ints};
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
    let sizes = slice(&sizes, "sizes")?;
    let doc_idx = slice(&doc_idx, "doc_idx")?;
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
    let lengths = non_negative(lengths)?;
    let bins = pack::best_fit_decreasing(&lengths, seq_len).map_err(value_err)?;
    Ok((bins.bins, bins.actual_seq_len))
}

/// pack_rows(flat uint32[], int32[] or int64[], lengths int64[], seq_len, pad_id) ->
/// (input_ids, position_ids, segment_ids) int32[rows, seq_len], bins, actual_seq_len
#[pyfunction]
#[allow(clippy::type_complexity)]
fn pack_rows<'py>(
    py: Python<'py>,
    flat: &Bound<'py, PyAny>,
    lengths: PyReadonlyArray1<'py, i64>,
    seq_len: u64,
    pad_id: i32,
) -> PyResult<(
    Bound<'py, PyArray2<i32>>,
    Bound<'py, PyArray2<i32>>,
    Bound<'py, PyArray2<i32>>,
    Vec<Vec<usize>>,
    Vec<Vec<u64>>,
)> {
    let lengths = non_negative(lengths)?;
    let flat = Ints::extract(flat, "tokens")?;
    let rows = with_ints!(flat, "tokens", ids => py.detach(|| pack::pack_rows(ids, &lengths, seq_len, pad_id)))
        .map_err(value_err)?;
    let shape = [rows.bins.bins.len(), seq_len as usize];
    let as_2d = |v: Vec<i32>| PyArray1::from_vec(py, v).reshape(shape);
    Ok((
        as_2d(rows.input_ids)?,
        as_2d(rows.position_ids)?,
        as_2d(rows.segment_ids)?,
        rows.bins.bins,
        rows.bins.actual_seq_len,
    ))
}

/// Sample lengths as u64, or an error naming the first negative one.
fn non_negative(lengths: PyReadonlyArray1<'_, i64>) -> PyResult<Vec<u64>> {
    let lengths = slice(&lengths, "lengths")?;
    if let Some(i) = lengths.iter().position(|&l| l < 0) {
        return Err(value_err(format!(
            "sample {i} has negative length {}",
            lengths[i]
        )));
    }
    Ok(lengths.iter().map(|&l| l as u64).collect())
}

/// (dataset index, sample index within it) per blended sample
type BlendingIndices<'py> = (Bound<'py, PyArray1<u16>>, Bound<'py, PyArray1<i64>>);

/// build_blending_indices(weights float64[], size) -> (dataset uint16[size], sample int64[size])
#[pyfunction]
fn build_blending_indices<'py>(
    py: Python<'py>,
    weights: Vec<f64>,
    size: usize,
) -> PyResult<BlendingIndices<'py>> {
    let (which, local) = py
        .detach(|| pack::build_blending_indices(&weights, size))
        .map_err(value_err)?;
    Ok((PyArray1::from_vec(py, which), PyArray1::from_vec(py, local)))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(build_sample_idx, m)?)?;
    m.add_function(wrap_pyfunction!(best_fit_decreasing, m)?)?;
    m.add_function(wrap_pyfunction!(pack_rows, m)?)?;
    m.add_function(wrap_pyfunction!(build_blending_indices, m)?)?;
    Ok(())
}
