//! HF's Unigram model (SentencePiece unigram): the segmentation with the
//! highest total score (Viterbi over every vocab piece that starts at each
//! char), unknown chars scored `min_score - 10` and runs of them fused, then
//! byte fallback (`<0xHH>` tokens) for what is not in the vocab.

use super::unigram_trie::Trie;
use crate::bpe::cache::WordCache;
use rustc_hash::FxHashMap;

const UNK_PENALTY: f64 = 10.0;

pub struct Unigram {
    pub pieces: Vec<(String, f64)>,
    pub vocab: FxHashMap<String, u32>,
    pub unk_id: Option<u32>,
    pub byte_fallback: bool,
    min_score: f64,
    trie: Trie,
    /// The id of `<0xHH>` per byte (byte fallback).
    byte_ids: [Option<u32>; 256],
    /// Some piece appears twice (the vocab map then decides which id a text gets).
    duplicates: bool,
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
        let duplicates = vocab.len() != pieces.len();
        let byte_ids = std::array::from_fn(|b| vocab.get(&format!("<0x{b:02X}>")).copied());
        Unigram {
            pieces,
            vocab,
            unk_id,
            byte_fallback,
            min_score,
            trie,
            byte_ids,
            duplicates,
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
        let mut best: Vec<(f64, u32, u32)> = vec![(0.0, u32::MAX, 0); n + 1];
        let bytes = s.as_bytes();
        let mut start = 0;
        while start < n {
            let here = best[start].0;
            let char_len = utf8_len(bytes[start]);
            let mut single = false;
            self.trie.prefixes(&bytes[start..], |len, id| {
                let cand = here + self.pieces[id as usize].1;
                let node = &mut best[start + len];
                if node.1 == u32::MAX || cand > node.0 {
                    *node = (cand, start as u32, id);
                }
                single |= len == char_len;
            });
            if !single {
                if let Some(unk) = self.unk_id {
                    let cand = here + unk_score;
                    let node = &mut best[start + char_len];
                    if node.1 == u32::MAX || cand > node.0 {
                        *node = (cand, start as u32, unk);
                    }
                }
            }
            start += char_len;
        }
        // Walk back; consecutive unknown pieces fuse into one.
        let mut pieces: Vec<(usize, usize, u32)> = Vec::new();
        let mut end = n;
        while end > 0 {
            let (_, a, id) = best[end];
            if a == u32::MAX {
                // No path (no unknown token): HF raises; skip this char.
                let c = s[..end].chars().next_back().map_or(1, char::len_utf8);
                end -= c;
                continue;
            }
            let a = a as usize;
            let is_unk = Some(id) == self.unk_id;
            match pieces.last_mut() {
                Some(last) if is_unk && Some(last.2) == self.unk_id => last.0 = a,
                _ => pieces.push((a, end, id)),
            }
            end = a;
        }
        for &(a, b, id) in pieces.iter().rev() {
            let is_unk = Some(id) == self.unk_id;
            if !is_unk && !self.duplicates {
                ids.push(id);
                spans.push((a, b));
                continue;
            }
            let text = &s[a..b];
            if let Some(&id) = self.vocab.get(text) {
                ids.push(id);
                spans.push((a, b));
                continue;
            }
            if self.byte_fallback && text.bytes().all(|x| self.byte_ids[x as usize].is_some()) {
                for x in text.bytes() {
                    ids.push(self.byte_ids[x as usize].unwrap_or_default());
                    spans.push((a, b));
                }
                continue;
            }
            if let Some(unk) = self.unk_id {
                ids.push(unk);
                spans.push((a, b));
            }
        }
    }
}

/// The byte length of the UTF-8 char that starts with `b`.
#[inline]
fn utf8_len(b: u8) -> usize {
    match b {
        0..0xC0 => 1,
        0xC0..0xE0 => 2,
        0xE0..0xF0 => 3,
        _ => 4,
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
