//! Batch encoding and decoding on this process's pool (`pool.rs`), results
//! in input order.

use crate::bpe::{IdsWithOffsets, Tokenizer};
use rayon::prelude::*;

/// All texts' ids concatenated, and `texts.len() + 1` offsets into them.
pub type FlatIds = (Vec<u32>, Vec<i64>);

impl Tokenizer {
    pub fn encode_batch<S: AsRef<str> + Sync>(
        &self,
        texts: &[S],
        add_special_tokens: bool,
    ) -> Vec<Vec<u32>> {
        crate::bpe::pool().install(|| {
            texts
                .par_iter()
                .map(|t| self.encode(t.as_ref(), add_special_tokens))
                .collect()
        })
    }

    /// `encode_batch` with `try_encode`'s truncation errors (the first one).
    pub fn try_encode_batch<S: AsRef<str> + Sync>(
        &self,
        texts: &[S],
        add_special_tokens: bool,
    ) -> crate::bpe::Result<Vec<Vec<u32>>> {
        crate::bpe::pool().install(|| {
            texts
                .par_iter()
                .map(|t| self.try_encode(t.as_ref(), add_special_tokens))
                .collect()
        })
    }

    /// `encode_batch` as one flat array (text i is `ids[off[i]..off[i+1]]`).
    pub fn encode_batch_flat<S: AsRef<str> + Sync>(
        &self,
        texts: &[S],
        add_special_tokens: bool,
    ) -> FlatIds {
        let per_text = self.encode_batch(texts, add_special_tokens);
        let mut offsets = Vec::with_capacity(per_text.len() + 1);
        offsets.push(0i64);
        let mut total = 0i64;
        for v in &per_text {
            total += v.len() as i64;
            offsets.push(total);
        }
        let parts: Vec<&[u32]> = per_text.iter().map(Vec::as_slice).collect();
        let ids = crate::bpe::pool().install(|| concat_in_parallel(&parts));
        (ids, offsets)
    }

    pub fn encode_batch_with_offsets<S: AsRef<str> + Sync>(
        &self,
        texts: &[S],
        add_special_tokens: bool,
    ) -> crate::bpe::Result<Vec<IdsWithOffsets>> {
        crate::bpe::pool().install(|| {
            texts
                .par_iter()
                .map(|t| self.try_encode_with_offsets(t.as_ref(), add_special_tokens))
                .collect()
        })
    }

    pub fn decode_batch<I: AsRef<[u32]> + Sync>(
        &self,
        batch: &[I],
        skip_special_tokens: bool,
    ) -> Vec<String> {
        crate::bpe::pool().install(|| {
            batch
                .par_iter()
                .map(|ids| self.decode(ids.as_ref(), skip_special_tokens))
                .collect()
        })
    }
}

/// The parts end to end, copied in parallel on the current pool (call it
/// inside `install`): done serially the copy (and first touch of the output
/// pages) cost ~10% of the two-thread encode speed.
pub(crate) fn concat_in_parallel(parts: &[&[u32]]) -> Vec<u32> {
    let total = parts.iter().map(|p| p.len()).sum();
    let mut out = vec![0u32; total];
    let mut chunks = Vec::with_capacity(parts.len());
    let mut rest = out.as_mut_slice();
    for p in parts {
        let (head, tail) = rest.split_at_mut(p.len());
        chunks.push(head);
        rest = tail;
    }
    chunks
        .into_par_iter()
        .zip(parts.par_iter())
        .for_each(|(dst, src)| dst.copy_from_slice(src));
    out
}
