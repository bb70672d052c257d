//! PyO3 glue for mft-core: one file per core module, nothing else here.
use pyo3::prelude::*;

mod arrays;
mod bpe;
mod error;
mod indexed;
mod pack;
mod preprocess;
mod reshard;
mod safetensors;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    bpe::register(m)?;
    indexed::register(m)?;
    pack::register(m)?;
    preprocess::register(m)?;
    reshard::register(m)?;
    safetensors::register(m)?;
    Ok(())
}
