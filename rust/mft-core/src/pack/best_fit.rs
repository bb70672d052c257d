//! Best-fit-decreasing bin packing for fine-tuning samples.
//!
//! Samples are taken longest first (ties: lower index first) and each goes
//! into the open bin with the least room that still fits it (ties: the
//! earliest bin); if none fits, a new bin opens. Deterministic, O(n log n).

use std::collections::BTreeSet;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bins {
    /// Sample indices per bin, in the order they were placed.
    pub bins: Vec<Vec<usize>>,
    /// Per bin, the cumulative end position of each sample (`actual_seq_len`).
    pub actual_seq_len: Vec<Vec<u64>>,
}

pub fn best_fit_decreasing(lengths: &[u64], capacity: u64) -> Result<Bins, String> {
    if capacity == 0 {
        return Err("seq_len must be positive".into());
    }
    if let Some(i) = lengths.iter().position(|&l| l > capacity) {
        return Err(format!(
            "sample {i} has {} tokens, more than seq_len {capacity}",
            lengths[i]
        ));
    }
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by(|&a, &b| lengths[b].cmp(&lengths[a]).then(a.cmp(&b)));

    let mut bins: Vec<Vec<usize>> = Vec::new();
    let mut used: Vec<u64> = Vec::new();
    // (room left, bin number): the first entry with room >= len is the best fit.
    let mut open: BTreeSet<(u64, usize)> = BTreeSet::new();
    for i in order {
        let len = lengths[i];
        let found = open.range((len, 0)..).next().copied();
        let b = match found {
            Some(key) => {
                open.remove(&key);
                key.1
            }
            None => {
                bins.push(Vec::new());
                used.push(0);
                bins.len() - 1
            }
        };
        bins[b].push(i);
        used[b] += len;
        open.insert((capacity - used[b], b));
    }
    let actual_seq_len = bins
        .iter()
        .map(|bin| {
            let mut end = 0;
            bin.iter()
                .map(|&i| {
                    end += lengths[i];
                    end
                })
                .collect()
        })
        .collect();
    Ok(Bins {
        bins,
        actual_seq_len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_best_fit() {
        let b = best_fit_decreasing(&[5, 3, 4, 2, 6], 8).unwrap();
        // 6 -> bin0 (room 2); 5 -> bin1 (3); 4 -> bin2 (4); 3 -> bin1 (0); 2 -> bin0 (0).
        assert_eq!(b.bins, vec![vec![4, 3], vec![0, 1], vec![2]]);
        assert_eq!(b.actual_seq_len, vec![vec![6, 8], vec![5, 8], vec![4]]);
        assert!(best_fit_decreasing(&[9], 8).is_err());
    }
}
