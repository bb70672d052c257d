//! HF's Unigram model (SentencePiece unigram): the segmentation with the
//! highest total score (Viterbi over every vocab piece that starts at each
//! char), unknown chars scored `min_score - 10` and runs of them fused, then
//! byte fallback (`<0xHH>` tokens) for what is not in the vocab.

use crate::bpe::cache::WordCache;
use rustc_hash::FxHashMap;

const UNK_PENALTY: f64 = 10.0;

/// A byte trie over the vocab pieces: node -> (byte -> child), node -> id.
struct Trie {
    children: FxHashMap<(u32, u8), u32>,
    ids: FxHashMap<u32, u32>,
}

impl Trie {
    fn build<'a>(pieces: impl Iterator<Item = (&'a str, u32)>) -> Self {
        let mut t = Trie {
            children: FxHashMap::default(),
            ids: FxHashMap::default(),
        };
        let mut next = 1u32;
        for (p, id) in pieces {
            let mut node = 0u32;
            for b in p.bytes() {
                node = *t.children.entry((node, b)).or_insert_with(|| {
                    next += 1;
                    next - 1
                });
            }
            t.ids.entry(node).or_insert(id);
        }
        t
    }

    /// (byte length, id) of every vocab piece that `s` starts with, shortest first.
    fn prefixes(&self, s: &[u8], out: &mut Vec<(usize, u32)>) {
        out.clear();
        let mut node = 0u32;
        for (i, &b) in s.iter().enumerate() {
            match self.children.get(&(node, b)) {
                Some(&n) => node = n,
                None => return,
            }
            if let Some(&id) = self.ids.get(&node) {
                out.push((i + 1, id));
            }
        }
    }
}

pub struct Unigram {
    pub pieces: Vec<(String, f64)>,
    pub vocab: FxHashMap<String, u32>,
    pub unk_id: Option<u32>,
    pub byte_fallback: bool,
    min_score: f64,
    trie: Trie,
    /// Piece -> ids, per thread (encoding without offsets).
    pub cache: WordCache,
}

impl Unigram {
    pub fn new(pieces: Vec<(String, f64)>, unk_id: Option<u32>, byte_fallback: bool) -> Self {
        let mut vocab = FxHashMap::default();
        let mut min_score = f64::INFINITY;
        for (i, (p, s)) in pieces.iter().enumerate() {
            vocab.insert(p.clone(), i as u32);
            min_score = min_score.min(*s);
        }
        let trie = Trie::build(
            pieces
                .iter()
                .enumerate()
                .map(|(i, (p, _))| (p.as_str(), i as u32)),
        );
        Unigram {
            pieces,
            vocab,
            unk_id,
            byte_fallback,
            min_score,
            trie,
            cache: WordCache::default(),
        }
    }

    /// Appends the ids of `s` and, per id, its byte range in `s`.
    pub fn encode(&self, s: &str, ids: &mut Vec<u32>, spans: &mut Vec<(usize, usize)>) {
        if s.is_empty() {
            return;
        }
        let unk_score = self.min_score - UNK_PENALTY;
        // Per end position: (best score, start of the last piece, its id).
        let n = s.len();
        let mut best: Vec<(f64, usize, u32)> = vec![(0.0, usize::MAX, 0); n + 1];
        let bytes = s.as_bytes();
        let mut hits = Vec::new();
        let mut start = 0;
        while start < n {
            let here = best[start].0;
            let char_len = s[start..].chars().next().map_or(1, char::len_utf8);
            self.trie.prefixes(&bytes[start..], &mut hits);
            let mut single = false;
            for &(len, id) in &hits {
                let cand = here + self.pieces[id as usize].1;
                let node = &mut best[start + len];
                if node.1 == usize::MAX || cand > node.0 {
                    *node = (cand, start, id);
                }
                single |= len == char_len;
            }
            if !single {
                if let Some(unk) = self.unk_id {
                    let cand = here + unk_score;
                    let node = &mut best[start + char_len];
                    if node.1 == usize::MAX || cand > node.0 {
                        *node = (cand, start, unk);
                    }
                }
            }
            start += char_len;
        }
        // Walk back; consecutive unknown pieces fuse into one.
        let mut pieces: Vec<(usize, usize, bool)> = Vec::new();
        let mut end = n;
        while end > 0 {
            let (_, a, id) = best[end];
            if a == usize::MAX {
                // No path (no unknown token): HF raises; skip this char.
                let c = s[..end].chars().next_back().map_or(1, char::len_utf8);
                end -= c;
                continue;
            }
            let is_unk = Some(id) == self.unk_id;
            match pieces.last_mut() {
                Some(last) if is_unk && last.2 => last.0 = a,
                _ => pieces.push((a, end, is_unk)),
            }
            end = a;
        }
        for &(a, b, _) in pieces.iter().rev() {
            let text = &s[a..b];
            if let Some(&id) = self.vocab.get(text) {
                ids.push(id);
                spans.push((a, b));
                continue;
            }
            if self.byte_fallback {
                let byte_ids: Option<Vec<u32>> = text
                    .bytes()
                    .map(|x| self.vocab.get(&format!("<0x{x:02X}>")).copied())
                    .collect();
                if let Some(byte_ids) = byte_ids {
                    for id in byte_ids {
                        ids.push(id);
                        spans.push((a, b));
                    }
                    continue;
                }
            }
            if let Some(unk) = self.unk_id {
                ids.push(unk);
                spans.push((a, b));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_segmentation_and_fused_unknowns() {
        let v = vec![
            ("<unk>".to_string(), 0.0),
            ("a".to_string(), -1.0),
            ("b".to_string(), -1.0),
            ("ab".to_string(), -1.5),
            ("abc".to_string(), -4.0),
            ("c".to_string(), -1.0),
        ];
        let m = Unigram::new(v, Some(0), false);
        let (mut ids, mut spans) = (vec![], vec![]);
        m.encode("abcxyab", &mut ids, &mut spans);
        assert_eq!(ids, vec![3, 5, 0, 3]);
        assert_eq!(spans, vec![(0, 2), (2, 3), (3, 5), (5, 7)]);
    }
}
