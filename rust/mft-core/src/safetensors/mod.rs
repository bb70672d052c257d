//! safetensors files: a strict header parser, an mmap reader and an atomic writer.
//!
//! Layout: 8-byte little-endian header length N, N bytes of UTF-8 JSON
//! (`{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}`),
//! then the tensor bytes; offsets are relative to the end of the header and
//! must tile the data region exactly (no gaps, no overlap, no trailing bytes).

pub mod convert;
mod dtype;
#[cfg(test)]
mod fuzz_tests;
mod header;
mod json_out;
mod reader;
mod writer;

pub use dtype::{byte_len, Dtype};
pub use header::{parse_header, Header, TensorInfo, MAX_HEADER_BYTES};
pub use reader::SafetensorsFile;
pub use writer::{copy_parallel, write_file, PendingFile, TensorRef, TensorSpec};

pub use crate::error::{Error, Result};
