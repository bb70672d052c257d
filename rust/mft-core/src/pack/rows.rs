//! Packed fine-tuning rows: the samples of each best-fit bin laid end to end
//! in one `seq_len` row, with position ids restarting at every sample and a
//! segment id per sample (0 on padding), so attention can stay inside samples.

use super::best_fit::{best_fit_decreasing, Bins};
use rayon::prelude::*;

/// Row-major (rows, seq_len) arrays plus the bins they came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rows {
    pub input_ids: Vec<i32>,
    pub position_ids: Vec<i32>,
    pub segment_ids: Vec<i32>,
    pub bins: Bins,
}

/// Packs samples given as one flat id array (int32 or int64) and their lengths.
pub fn pack_rows<T>(flat: &[T], lengths: &[u64], seq_len: u64, pad_id: i32) -> Result<Rows, String>
where
    T: Copy + Into<i64> + Sync,
{
    let total: u64 = lengths.iter().sum();
    if total != flat.len() as u64 {
        return Err(format!(
            "lengths sum to {total} but {} tokens were given",
            flat.len()
        ));
    }
    if let Some(at) = flat.iter().position(|&t| i32::try_from(t.into()).is_err()) {
        return Err(format!(
            "token {} at flat position {at} does not fit int32",
            flat[at].into()
        ));
    }
    let bins = best_fit_decreasing(lengths, seq_len)?;
    let mut starts = Vec::with_capacity(lengths.len());
    let mut at = 0usize;
    for &n in lengths {
        starts.push(at);
        at += n as usize;
    }
    let width = seq_len as usize;
    let cells = bins.bins.len() * width;
    let (mut ids, mut pos, mut seg) = (vec![pad_id; cells], vec![0; cells], vec![0; cells]);
    // Rows are independent: filled in parallel (most of the cost is first
    // touching the output pages).
    crate::bpe::pool().install(|| {
        ids.par_chunks_mut(width)
            .zip(pos.par_chunks_mut(width))
            .zip(seg.par_chunks_mut(width))
            .zip(bins.bins.par_iter())
            .for_each(|(((ids, pos), seg), bin)| {
                let mut col = 0;
                for (k, &i) in bin.iter().enumerate() {
                    let n = lengths[i] as usize;
                    let src = &flat[starts[i]..starts[i] + n];
                    for (dst, &t) in ids[col..col + n].iter_mut().zip(src) {
                        *dst = t.into() as i32;
                    }
                    for (j, p) in pos[col..col + n].iter_mut().enumerate() {
                        *p = j as i32;
                    }
                    seg[col..col + n].fill(k as i32 + 1);
                    col += n;
                }
            })
    });
    Ok(Rows {
        input_ids: ids,
        position_ids: pos,
        segment_ids: seg,
        bins,
    })
}

#[cfg(test)]
mod tests {
    use super::pack_rows;

    #[test]
    fn lays_out_bins_with_restarting_positions() {
        let flat: [i64; 9] = [1, 2, 3, 4, 5, 6, 7, 8, 9];
        let r = pack_rows(&flat, &[3, 2, 4], 6, -1).unwrap();
        assert_eq!(r.input_ids, [6, 7, 8, 9, 4, 5, 1, 2, 3, -1, -1, -1]);
        assert_eq!(r.position_ids, [0, 1, 2, 3, 0, 1, 0, 1, 2, 0, 0, 0]);
        assert_eq!(r.segment_ids, [1, 1, 1, 1, 2, 2, 1, 1, 1, 0, 0, 0]);
        assert_eq!(r.bins.actual_seq_len, vec![vec![4, 6], vec![3]]);
    }

    #[test]
    fn bad_input_is_named() {
        assert!(pack_rows(&[1i64, 2], &[3], 4, 0)
            .unwrap_err()
            .contains("lengths sum to 3"));
        assert!(pack_rows(&[1i64 << 40], &[1], 4, 0)
            .unwrap_err()
            .contains("flat position 0"));
        assert!(pack_rows(&[1i32, 2], &[2], 1, 0)
            .unwrap_err()
            .contains("sample 0 has 2 tokens"));
    }
}
