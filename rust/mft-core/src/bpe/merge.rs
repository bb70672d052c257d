//! Applying BPE merges to one word: repeatedly merge the adjacent pair with
//! the lowest rank, leftmost first (HF's priority order), until none applies.

use rustc_hash::FxHashMap;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// (left id, right id) -> (rank, merged id).
pub type Merges = FxHashMap<(u32, u32), (u32, u32)>;

/// Words up to this many symbols use the simple quadratic scan.
const SCAN_LIMIT: usize = 96;

#[cfg(test)]
pub fn merge_word(symbols: &mut Vec<u32>, merges: &Merges) {
    merge_word_with(symbols, &mut Vec::new(), merges)
}

/// `merge_word` with the pair-rank buffer supplied (reused across words).
pub fn merge_word_with(symbols: &mut Vec<u32>, ranks: &mut Vec<(u32, u32)>, merges: &Merges) {
    if symbols.len() < 2 {
        return;
    }
    if symbols.len() <= SCAN_LIMIT {
        scan_with(symbols, ranks, merges);
    } else {
        merge_by_heap(symbols, merges);
    }
}

#[inline]
fn rank_of(merges: &Merges, a: u32, b: u32) -> (u32, u32) {
    merges.get(&(a, b)).copied().unwrap_or((u32::MAX, 0))
}

/// Keeps each adjacent pair's rank in a side vector and rescans for the minimum.
#[cfg(test)]
pub(crate) fn merge_by_scan(symbols: &mut Vec<u32>, merges: &Merges) {
    scan_with(symbols, &mut Vec::new(), merges)
}

fn scan_with(symbols: &mut Vec<u32>, ranks: &mut Vec<(u32, u32)>, merges: &Merges) {
    ranks.clear();
    ranks.extend(symbols.windows(2).map(|w| rank_of(merges, w[0], w[1])));
    scan_from(symbols, ranks, merges)
}

/// `merge_word_with` when `ranks` already holds each adjacent pair's
/// (rank, merged id) as `rank_of` gives it (byte-level words take them
/// from the model's byte-pair table).
pub fn merge_from_ranks(symbols: &mut Vec<u32>, ranks: &mut Vec<(u32, u32)>, merges: &Merges) {
    debug_assert_eq!(ranks.len() + 1, symbols.len().max(1));
    if symbols.len() > SCAN_LIMIT {
        return merge_by_heap(symbols, merges);
    }
    scan_from(symbols, ranks, merges)
}

fn scan_from(symbols: &mut Vec<u32>, ranks: &mut Vec<(u32, u32)>, merges: &Merges) {
    loop {
        let mut best = usize::MAX;
        let mut best_rank = u32::MAX;
        for (i, &(r, _)) in ranks.iter().enumerate() {
            if r < best_rank {
                best_rank = r;
                best = i;
            }
        }
        if best == usize::MAX {
            return;
        }
        let new_id = ranks[best].1;
        symbols[best] = new_id;
        symbols.remove(best + 1);
        ranks.remove(best);
        if best < ranks.len() {
            ranks[best] = rank_of(merges, symbols[best], symbols[best + 1]);
        }
        if best > 0 {
            ranks[best - 1] = rank_of(merges, symbols[best - 1], symbols[best]);
        }
    }
}

/// Linked list + heap of (rank, position): O(n log n) for very long words.
pub(crate) fn merge_by_heap(symbols: &mut Vec<u32>, merges: &Merges) {
    let n = symbols.len();
    let mut next: Vec<usize> = (1..=n).collect(); // n means "none"
    let mut prev: Vec<usize> = (0..n).map(|i| i.wrapping_sub(1)).collect(); // usize::MAX = none
    let mut alive = vec![true; n];
    let mut heap: BinaryHeap<Reverse<(u32, usize, u32)>> = BinaryHeap::with_capacity(n);
    for i in 0..n - 1 {
        if let Some(&(r, id)) = merges.get(&(symbols[i], symbols[i + 1])) {
            heap.push(Reverse((r, i, id)));
        }
    }
    while let Some(Reverse((_, pos, new_id))) = heap.pop() {
        if !alive[pos] || next[pos] >= n {
            continue;
        }
        let right = next[pos];
        // Stale entry: the pair at `pos` changed since it was pushed.
        match merges.get(&(symbols[pos], symbols[right])) {
            Some(&(_, id)) if id == new_id => {}
            _ => continue,
        }
        symbols[pos] = new_id;
        alive[right] = false;
        next[pos] = next[right];
        if next[pos] < n {
            prev[next[pos]] = pos;
        }
        if prev[pos] != usize::MAX {
            let p = prev[pos];
            if let Some(&(r, id)) = merges.get(&(symbols[p], symbols[pos])) {
                heap.push(Reverse((r, p, id)));
            }
        }
        if next[pos] < n {
            if let Some(&(r, id)) = merges.get(&(symbols[pos], symbols[next[pos]])) {
                heap.push(Reverse((r, pos, id)));
            }
        }
    }
    let mut w = 0;
    for i in 0..n {
        if alive[i] {
            symbols[w] = symbols[i];
            w += 1;
        }
    }
    symbols.truncate(w);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merges(list: &[(u32, u32, u32)]) -> Merges {
        list.iter()
            .enumerate()
            .map(|(r, &(a, b, id))| ((a, b), (r as u32, id)))
            .collect()
    }

    #[test]
    fn lowest_rank_first_then_leftmost() {
        // a=0 b=1 c=2; "bc"=3 (rank 0), "ab"=4 (rank 1), "abc"?? none
        let m = merges(&[(1, 2, 3), (0, 1, 4)]);
        let mut w = vec![0, 1, 2];
        merge_word(&mut w, &m);
        assert_eq!(w, vec![0, 3]);
        // "aaa" with "aa": the leftmost pair wins.
        let m = merges(&[(0, 0, 5)]);
        let mut w = vec![0, 0, 0];
        merge_word(&mut w, &m);
        assert_eq!(w, vec![5, 0]);
    }

    #[test]
    fn scan_and_heap_agree() {
        // A small deterministic pseudo-random merge table over 6 base ids.
        let mut list = Vec::new();
        let mut state = 12345u64;
        let mut rnd = |m: u32| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) % m as u64) as u32
        };
        for next_id in 6u32..46 {
            let a = rnd(next_id);
            let b = rnd(next_id);
            list.push((a, b, next_id));
        }
        let m = merges(&list);
        for len in [2usize, 3, 7, 30, 200] {
            for _ in 0..50 {
                let word: Vec<u32> = (0..len).map(|_| rnd(6)).collect();
                let mut a = word.clone();
                let mut b = word.clone();
                merge_by_scan(&mut a, &m);
                merge_by_heap(&mut b, &m);
                assert_eq!(a, b, "word {word:?}");
            }
        }
    }
}
