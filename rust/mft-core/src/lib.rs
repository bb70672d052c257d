//! mft-core: the pure-Rust half of mft. No Python here; `mft-py` wraps it.
pub mod bpe;
pub mod error;
pub mod indexed;
pub mod pack;
pub mod preprocess;
pub mod reshard;
pub mod safetensors;
pub mod writeback;
