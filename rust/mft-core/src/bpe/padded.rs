//! A rectangular batch for `encode_batch(..., max_length=, padding=)`: each
//! text's ids cut to fit `max_length` with the template's special tokens
//! (HF's default right truncation), then padded to `pad_to` or the longest row.

use super::error::{Error, Result};
use super::tokenizer::Tokenizer;

/// Row-major `ids` and `mask` (1 = real token) of `lengths.len()` rows of
/// `width`, and each row's length before padding.
pub struct PaddedRows {
    pub ids: Vec<i32>,
    pub mask: Vec<i8>,
    pub lengths: Vec<i64>,
    pub width: usize,
}

impl Tokenizer {
    pub fn encode_batch_padded<S: AsRef<str> + Sync>(
        &self,
        texts: &[S],
        add_special_tokens: bool,
        max_length: Option<usize>,
        pad_to: Option<usize>,
        pad_id: u32,
        pad_left: bool,
    ) -> Result<PaddedRows> {
        let (before, after) = if add_special_tokens {
            self.post_processor.added_ids()
        } else {
            (vec![], vec![])
        };
        let extra = before.len() + after.len();
        if let Some(m) = max_length {
            if m < extra {
                return Err(Error::Invalid(format!(
                    "max_length {m} cannot hold the {extra} tokens the template adds"
                )));
            }
        }
        let mut rows = self.encode_batch(texts, false);
        for r in rows.iter_mut() {
            if let Some(m) = max_length {
                r.truncate(m - extra);
            }
            if extra > 0 {
                let body = std::mem::take(r);
                *r = self.post_processor.apply(body);
            }
        }
        let longest = rows.iter().map(Vec::len).max().unwrap_or(0);
        let width = pad_to.unwrap_or(longest).max(longest);
        let mut ids = vec![pad_id as i32; rows.len() * width];
        let mut mask = vec![0i8; rows.len() * width];
        let mut lengths = Vec::with_capacity(rows.len());
        for (i, r) in rows.iter().enumerate() {
            let start = i * width + if pad_left { width - r.len() } else { 0 };
            for (k, &t) in r.iter().enumerate() {
                ids[start + k] = t as i32;
            }
            mask[start..start + r.len()].fill(1);
            lengths.push(r.len() as i64);
        }
        Ok(PaddedRows {
            ids,
            mask,
            lengths,
            width,
        })
    }
}
