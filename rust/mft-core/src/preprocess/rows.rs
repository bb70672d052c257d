//! A string column (Parquet via Arrow) -> documents: the column's data and
//! offsets buffers are read in place and encoded on a pool of the asked size.

use super::line_block::LineBlock;
use crate::bpe::Tokenizer;

/// Encodes value i = `data[offsets[i]..offsets[i + 1]]` of a string column
/// on `threads` threads (0: the shared pool), skipping rows whose `valid`
/// flag is false (the caller reports nulls). Bad values come back by row.
#[allow(clippy::too_many_arguments)]
pub fn encode_string_rows(
    tok: &Tokenizer,
    data: &[u8],
    offsets: &[i64],
    valid: Option<&[bool]>,
    add_special_tokens: bool,
    eod: Option<u32>,
    max_doc_bytes: usize,
    threads: usize,
) -> Result<LineBlock, String> {
    crate::bpe::pool_of(threads).install(|| {
        super::line_block::encode_string_rows(
            tok,
            data,
            offsets,
            valid,
            add_special_tokens,
            eod,
            max_doc_bytes,
        )
    })
}
