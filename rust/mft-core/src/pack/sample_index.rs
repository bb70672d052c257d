//! Megatron's sample index: entry k = (position in `doc_idx`, token offset)
//! where sample k starts; sample k ends at entry k+1's token *inclusive*, so
//! consecutive samples share one token (the last label of one sample is the
//! first input of the next) and each holds `seq_len + 1` tokens.

/// Returns `num_samples + 1` (doc_idx position, offset) pairs.
/// `sizes[d]` is document d's length; `doc_idx` lists documents in reading
/// order (all epochs). Errors if the documents hold fewer than
/// `num_samples * seq_len + 1` tokens or an id is out of range.
pub fn build_sample_idx(
    sizes: &[i32],
    doc_idx: &[i32],
    seq_len: usize,
    num_samples: usize,
) -> Result<Vec<[i64; 2]>, String> {
    if seq_len == 0 {
        return Err("seq_len must be positive".into());
    }
    for (pos, &d) in doc_idx.iter().enumerate() {
        if d < 0 || d as usize >= sizes.len() {
            return Err(format!(
                "doc_idx[{pos}] = {d} is not a document id in [0, {})",
                sizes.len()
            ));
        }
    }
    if let Some(d) = sizes.iter().position(|&s| s < 0) {
        return Err(format!("document {d} has negative length {}", sizes[d]));
    }
    let mut out = Vec::with_capacity(num_samples + 1);
    let mut pos = 0usize; // position in doc_idx
    let mut offset = 0i64; // token offset inside doc_idx[pos]
    out.push([0, 0]);
    for sample in 0..num_samples {
        // Tokens still needed beyond the shared start token.
        let mut remaining = seq_len as i64 + 1;
        loop {
            let doc_len = sizes[doc_idx[pos] as usize] as i64 - offset;
            remaining -= doc_len;
            if remaining <= 0 {
                // The sample ends inside this document, at the token that
                // the next sample starts from.
                offset += remaining + doc_len - 1;
                break;
            }
            if pos + 1 == doc_idx.len() {
                return Err(format!(
                    "documents run out while building sample {sample} of {num_samples} (seq_len {seq_len})"
                ));
            }
            pos += 1;
            offset = 0;
        }
        out.push([pos as i64, offset]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_share_one_token() {
        // Docs of 3 and 5 tokens, read in order 0, 1: 8 tokens, seq_len 2 -> 3 samples.
        let idx = build_sample_idx(&[3, 5], &[0, 1], 2, 3).unwrap();
        assert_eq!(idx, vec![[0, 0], [0, 2], [1, 1], [1, 3]]);
        assert!(build_sample_idx(&[3, 5], &[0, 1], 2, 4).is_err());
        assert!(build_sample_idx(&[3], &[1], 2, 1).is_err());
    }
}
