//! safetensors for Python: tensors cross as flat uint8 numpy arrays plus
//! (dtype name, shape); `mft.weights.safetensors` views them as typed arrays.
//! Loads allocate the numpy arrays first, then fill them from the map in
//! parallel with the GIL released; saves fill the output map in parallel.

use numpy::{PyArray1, PyArrayMethods, PyReadonlyArray1, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyList;
use rayon::prelude::*;

use mft_core::safetensors::convert::convert;
use mft_core::safetensors::{copy_parallel, write_file, Dtype, SafetensorsFile, TensorRef};

use crate::error::{safetensors_err, value_err};

type HeaderEntry = (String, String, Vec<u64>, (u64, u64));
type HeaderParts = (Vec<HeaderEntry>, Vec<(String, String)>, u64);

/// read_header(path) -> ([(name, dtype, shape, (begin, end))], [(key, value)], data_start)
#[pyfunction]
fn safetensors_read_header(py: Python<'_>, path: &str) -> PyResult<HeaderParts> {
    let f = py
        .detach(|| SafetensorsFile::open(path))
        .map_err(safetensors_err)?;
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

/// Fresh, uninitialised uint8 arrays of the given lengths, plus raw slices
/// into them for filling without the GIL.
pub fn new_byte_arrays<'py>(
    py: Python<'py>,
    lens: &[usize],
) -> (Vec<Bound<'py, PyArray1<u8>>>, Vec<&'py mut [u8]>) {
    let arrays: Vec<Bound<'py, PyArray1<u8>>> = lens
        .iter()
        // SAFETY: every byte is written before Python sees the array.
        .map(|&n| unsafe { PyArray1::<u8>::new(py, [n], false) })
        .collect();
    let slices = arrays
        .iter()
        .map(|a| {
            // SAFETY: the arrays are new, contiguous and not shared yet; each
            // slice is the only view of its array until we return it.
            unsafe { std::slice::from_raw_parts_mut(a.data(), a.len()) }
        })
        .collect();
    (arrays, slices)
}

/// load(path, widen_bf16) -> [(name, dtype, shape, uint8 array)]; BF16 comes
/// back as F32 bytes when widen_bf16 (bits shifted into the high half).
#[pyfunction]
fn safetensors_load<'py>(
    py: Python<'py>,
    path: &str,
    widen_bf16: bool,
) -> PyResult<Bound<'py, PyList>> {
    let f = py
        .detach(|| SafetensorsFile::open(path))
        .map_err(safetensors_err)?;
    let widen = |d: Dtype| d == Dtype::BF16 && widen_bf16;
    let lens: Vec<usize> = f
        .tensors()
        .iter()
        .map(|t| (t.end - t.begin) as usize * if widen(t.dtype) { 2 } else { 1 })
        .collect();
    let (arrays, slices) = new_byte_arrays(py, &lens);
    let jobs: Vec<_> = f.tensors().iter().zip(slices).collect();
    py.detach(|| {
        jobs.into_par_iter().for_each(|(t, out)| {
            if widen(t.dtype) {
                convert(Dtype::BF16, f.data(t), Dtype::F32, out).expect("sizes match");
            } else {
                copy_parallel(out, f.data(t));
            }
        })
    });
    let out = PyList::empty(py);
    for (t, array) in f.tensors().iter().zip(arrays) {
        let dtype = if widen(t.dtype) {
            "F32"
        } else {
            t.dtype.name()
        };
        out.append((t.name.as_str(), dtype, t.shape.clone(), array))?;
    }
    Ok(out)
}

/// save(path, [(name, dtype, shape, uint8 array)], [(key, value)])
#[pyfunction]
fn safetensors_save(
    py: Python<'_>,
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
    py.detach(|| write_file(path, &refs, &metadata))
        .map_err(safetensors_err)
}

/// convert_float(uint8 bytes, from, to) -> uint8 bytes (the Rust conversions,
/// exposed for parity tests against the numpy reference).
#[pyfunction]
fn float_convert<'py>(
    py: Python<'py>,
    data: PyReadonlyArray1<'py, u8>,
    from: &str,
    to: &str,
) -> PyResult<Bound<'py, PyArray1<u8>>> {
    let dt = |n: &str| Dtype::from_name(n).ok_or_else(|| value_err(format!("unknown dtype {n:?}")));
    let (from, to) = (dt(from)?, dt(to)?);
    let src = data
        .as_slice()
        .map_err(|_| value_err("data is not contiguous".into()))?;
    let n = src.len() / from.size() * to.size();
    let (arrays, mut slices) = new_byte_arrays(py, &[n]);
    let out = slices.pop().unwrap();
    py.detach(|| convert(from, src, to, out))
        .map_err(safetensors_err)?;
    Ok(arrays.into_iter().next().unwrap())
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(safetensors_read_header, m)?)?;
    m.add_function(wrap_pyfunction!(safetensors_load, m)?)?;
    m.add_function(wrap_pyfunction!(safetensors_save, m)?)?;
    m.add_function(wrap_pyfunction!(float_convert, m)?)?;
    Ok(())
}
