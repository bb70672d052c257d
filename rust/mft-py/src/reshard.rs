//! Resharding for Python: layouts cross as JSON text, boxes as tuples, data
//! as uint8 numpy arrays filled in parallel with the GIL released.

use numpy::PyArray1;
use pyo3::prelude::*;

use mft_core::reshard::{reshard, BoxRequest, Layout, Sources};
use mft_core::safetensors::{Dtype, Error};
use rayon::prelude::*;

use crate::error::{safetensors_err, value_err};
use crate::safetensors::new_byte_arrays;

fn open_sources(src_dir: &str, layout_json: &str) -> Result<Sources, Error> {
    let layout = Layout::from_json(&format!("{src_dir}: layout"), layout_json)?;
    Sources::open(src_dir, layout)
}

/// reshard_execute(src_dir, src_layout_json, dst_dir, dst_layout_json, metadata) -> (files, tensors, bytes)
#[pyfunction]
fn reshard_execute(
    py: Python<'_>,
    src_dir: &str,
    src_layout: &str,
    dst_dir: &str,
    dst_layout: &str,
    metadata: Vec<(String, String)>,
) -> PyResult<(usize, usize, u64)> {
    py.detach(|| {
        let src = open_sources(src_dir, src_layout)?;
        let dst = Layout::from_json(&format!("{dst_dir}: target layout"), dst_layout)?;
        reshard(&src, dst_dir, &dst, &metadata)
    })
    .map(|s| (s.files, s.tensors, s.bytes))
    .map_err(safetensors_err)
}

/// reshard_read(src_dir, src_layout_json, [(name, dtype, offset, shape)]) -> [uint8 array]
#[pyfunction]
fn reshard_read<'py>(
    py: Python<'py>,
    src_dir: &str,
    src_layout: &str,
    requests: Vec<(String, String, Vec<u64>, Vec<u64>)>,
) -> PyResult<Vec<Bound<'py, PyArray1<u8>>>> {
    let src = py
        .detach(|| open_sources(src_dir, src_layout))
        .map_err(safetensors_err)?;
    let mut reqs = Vec::with_capacity(requests.len());
    for (name, dtype, offset, shape) in requests {
        let dtype = Dtype::from_name(&dtype)
            .ok_or_else(|| value_err(format!("tensor {name:?}: unknown dtype {dtype:?}")))?;
        reqs.push(BoxRequest {
            name,
            dtype,
            offset,
            shape,
        });
    }
    let lens: Vec<usize> = reqs
        .iter()
        .map(|r| r.shape.iter().product::<u64>() as usize * r.dtype.size())
        .collect();
    let (arrays, slices) = new_byte_arrays(py, &lens);
    py.detach(|| {
        reqs.par_iter().zip(slices).try_for_each(|(r, out)| {
            out.fill(0); // padding rows stay zero
            src.fill(r, out)
        })
    })
    .map_err(safetensors_err)?;
    Ok(arrays)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(reshard_execute, m)?)?;
    m.add_function(wrap_pyfunction!(reshard_read, m)?)?;
    Ok(())
}
