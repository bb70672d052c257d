//! Core errors -> Python exceptions: I/O failures become OSError, bad bytes
//! or arguments ValueError. The messages already name the file; the Python
//! wrappers turn both into `mft.errors.MftError`.

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::PyErr;

pub fn safetensors_err(e: mft_core::safetensors::Error) -> PyErr {
    use mft_core::safetensors::Error;
    match e {
        Error::Io(m) => PyOSError::new_err(m),
        Error::Invalid(m) => PyValueError::new_err(m),
    }
}

pub fn indexed_err(e: mft_core::indexed::Error) -> PyErr {
    use mft_core::indexed::Error;
    match e {
        Error::Io(m) => PyOSError::new_err(m),
        Error::Invalid(m) => PyValueError::new_err(m),
    }
}

pub fn value_err(m: String) -> PyErr {
    PyValueError::new_err(m)
}
