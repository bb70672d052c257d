//! Reading numpy arrays in place, with errors that name the argument.

use numpy::{Element, PyReadonlyArray1};
use pyo3::prelude::*;

use crate::error::value_err;

/// The array's elements, or an error naming `what` when it is not contiguous.
pub fn slice<'a, T: Element>(a: &'a PyReadonlyArray1<'_, T>, what: &str) -> PyResult<&'a [T]> {
    a.as_slice()
        .map_err(|_| value_err(format!("{what} must be a contiguous 1-D array")))
}

/// A 1-D integer array of ids or offsets, read in its own dtype (uint32 from
/// the tokenizer, int32 from Arrow, int64 from numpy defaults).
pub enum Ints<'py> {
    U32(PyReadonlyArray1<'py, u32>),
    I32(PyReadonlyArray1<'py, i32>),
    I64(PyReadonlyArray1<'py, i64>),
}

impl<'py> Ints<'py> {
    pub fn extract(obj: &Bound<'py, PyAny>, what: &str) -> PyResult<Self> {
        if let Ok(a) = obj.extract() {
            return Ok(Ints::U32(a));
        }
        if let Ok(a) = obj.extract() {
            return Ok(Ints::I32(a));
        }
        obj.extract()
            .map(Ints::I64)
            .map_err(|_| value_err(format!("{what} must be a 1-D uint32, int32 or int64 array")))
    }
}

/// Runs `$body` with `$s` bound to the `Ints`' elements, whatever their dtype
/// (the body is generic code over `T: Copy + Into<i64>`).
macro_rules! with_ints {
    ($ints:expr, $what:expr, $s:ident => $body:expr) => {
        match &$ints {
            $crate::arrays::Ints::U32(a) => {
                let $s = $crate::arrays::slice(a, $what)?;
                $body
            }
            $crate::arrays::Ints::I32(a) => {
                let $s = $crate::arrays::slice(a, $what)?;
                $body
            }
            $crate::arrays::Ints::I64(a) => {
                let $s = $crate::arrays::slice(a, $what)?;
                $body
            }
        }
    };
}
pub(crate) use with_ints;
