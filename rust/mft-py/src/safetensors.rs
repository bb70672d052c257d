//! safetensors for Python: tensors cross as flat uint8 numpy arrays plus
//! (dtype name, shape); `mft.weights.safetensors` views them as typed arrays.

use numpy::{PyArray1, PyReadonlyArray1};
use pyo3::prelude::*;
use pyo3::types::PyList;

use mft_core::safetensors::{write_file, Dtype, SafetensorsFile, TensorRef};

use crate::error::{safetensors_err, value_err};

type HeaderEntry = (String, String, Vec<u64>, (u64, u64));
type HeaderParts = (Vec<HeaderEntry>, Vec<(String, String)>, u64);

/// read_header(path) -> ([(name, dtype, shape, (begin, end))], [(key, value)], data_start)
#[pyfunction]
fn safetensors_read_header(path: &str) -> PyResult<HeaderParts> {
    let f = SafetensorsFile::open(path).map_err(safetensors_err)?;
    let h = f.header();
    let entries = h
        .tensors
        .iter()
        .map(|t| {
            (
                t.name.clone(),
                t.dtype.name().to_string(),
                t.shape.clone(),
                (t.begin, t.end),
            )
        })
        .collect();
    Ok((entries, h.metadata.clone(), h.data_start))
}

/// load(path, widen_bf16) -> [(name, dtype, shape, uint8 array)]; BF16 comes
/// back as F32 bytes when widen_bf16 (bits shifted into the high half).
#[pyfunction]
fn safetensors_load<'py>(
    py: Python<'py>,
    path: &str,
    widen_bf16: bool,
) -> PyResult<Bound<'py, PyList>> {
    let f = SafetensorsFile::open(path).map_err(safetensors_err)?;
    let out = PyList::empty(py);
    for t in f.tensors() {
        let bytes = f.data(t);
        let (dtype, array) = if t.dtype == Dtype::BF16 && widen_bf16 {
            let mut wide = Vec::with_capacity(bytes.len() * 2);
            for pair in bytes.chunks_exact(2) {
                wide.extend_from_slice(&[0, 0, pair[0], pair[1]]);
            }
            ("F32", PyArray1::from_vec(py, wide))
        } else {
            (t.dtype.name(), PyArray1::from_slice(py, bytes))
        };
        out.append((t.name.as_str(), dtype, t.shape.clone(), array))?;
    }
    Ok(out)
}

/// save(path, [(name, dtype, shape, uint8 array)], [(key, value)])
#[pyfunction]
fn safetensors_save(
    path: &str,
    tensors: Vec<(String, String, Vec<u64>, PyReadonlyArray1<'_, u8>)>,
    metadata: Vec<(String, String)>,
) -> PyResult<()> {
    let mut refs = Vec::with_capacity(tensors.len());
    for (name, dtype, shape, data) in &tensors {
        let dt = Dtype::from_name(dtype).ok_or_else(|| {
            value_err(format!("{path}: tensor {name:?}: unknown dtype {dtype:?}"))
        })?;
        let bytes = data
            .as_slice()
            .map_err(|_| value_err(format!("{path}: tensor {name:?}: data is not contiguous")))?;
        refs.push(TensorRef {
            name,
            dtype: dt,
            shape: shape.clone(),
            data: bytes,
        });
    }
    write_file(path, &refs, &metadata).map_err(safetensors_err)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(safetensors_read_header, m)?)?;
    m.add_function(wrap_pyfunction!(safetensors_load, m)?)?;
    m.add_function(wrap_pyfunction!(safetensors_save, m)?)?;
    Ok(())
}
