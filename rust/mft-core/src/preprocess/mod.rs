//! The preprocessing pipeline that feeds the tokenizer (`bpe/`) for
//! `mft data preprocess`: JSONL field extraction (`json_field`), blocks of
//! lines encoded in parallel (`line_block`), whole files read and encoded
//! block by block (`line_file`), Arrow string columns (`rows`), and the
//! tokenizer's batch API on the shared pool (`batch`).

mod batch;
mod json_field;
mod line_block;
mod line_file;
mod rows;

pub use batch::FlatIds;
pub use line_block::{DocRun, LineBlock};
pub use line_file::{encode_lines, LineOptions, LinesError, LinesReport};
pub use rows::encode_string_rows;
