//! Turning documents into training samples.
//!
//! `sample_index`: pretraining samples of `seq_len + 1` tokens cut from the
//! concatenation of documents in a (shuffled) document order, as Megatron's
//! `build_sample_idx`. `best_fit`: packing variable-length fine-tuning samples
//! into `seq_len` bins, best-fit-decreasing; `rows` lays the bins out as
//! training rows. `blend`: Megatron's weighted
//! blending of several datasets.

mod best_fit;
mod blend;
mod rows;
mod sample_index;

pub use best_fit::{best_fit_decreasing, Bins};
pub use blend::build_blending_indices;
pub use rows::{pack_rows, Rows};
pub use sample_index::build_sample_idx;
