//! Pieces -> ids: the per-thread word cache first, else the piece's
//! first symbols and the merge loop.

use super::BpeModel;
use crate::bpe::byte_level::bytes_to_mapped;
use crate::bpe::cache::LocalCache;
use crate::bpe::merge::{merge_from_ranks, merge_word_with};
use std::borrow::Cow;

impl BpeModel {
    /// Appends the ids of one pre-tokenized piece (raw text, not yet byte-mapped).
    pub fn encode_piece(&self, piece: &str, out: &mut Vec<u32>) {
        self.cache
            .with_local(|cache| self.encode_piece_cached(piece, out, cache))
    }

    /// Runs `f` with this thread's word cache (take it once per text).
    pub(crate) fn with_cache<R>(&self, f: impl FnOnce(&mut LocalCache) -> R) -> R {
        self.cache.with_local(f)
    }

    /// `encode_piece` with the cache already in hand.
    #[inline]
    pub(crate) fn encode_piece_cached(
        &self,
        piece: &str,
        out: &mut Vec<u32>,
        cache: &mut LocalCache,
    ) {
        if let Some(c) = self.split_char {
            return self.encode_split(piece, c, out, cache);
        }
        self.encode_word_cached(piece, out, cache);
    }

    #[inline]
    fn encode_word_cached(&self, piece: &str, out: &mut Vec<u32>, cache: &mut LocalCache) {
        if cache.get_into(piece, out) {
            return;
        }
        let start = out.len();
        self.encode_uncached(piece, out, cache);
        cache.insert(piece, &out[start..]);
    }

    /// The piece cut before every run of `c` (`split_char`), word by word.
    fn encode_split(&self, piece: &str, c: char, out: &mut Vec<u32>, cache: &mut LocalCache) {
        let (mut start, mut run_end) = (0, 0);
        for (i, m) in piece.match_indices(c) {
            if i > start && i != run_end {
                self.encode_word_cached(&piece[start..i], out, cache);
                start = i;
            }
            run_end = i + m.len();
        }
        self.encode_word_cached(&piece[start..], out, cache);
    }

    fn encode_uncached(&self, piece: &str, out: &mut Vec<u32>, cache: &mut LocalCache) {
        let mapped = || -> Cow<str> {
            if self.byte_level {
                Cow::Owned(bytes_to_mapped(piece.as_bytes()))
            } else {
                Cow::Borrowed(piece)
            }
        };
        if self.options.ignore_merges {
            if let Some(&id) = self.vocab.get(mapped().as_ref()) {
                out.push(id);
                return;
            }
        }
        let symbols = &mut cache.symbols;
        symbols.clear();
        match (&self.byte_ids, &self.char_ids) {
            (Some(ids), _) => {
                symbols.extend(piece.bytes().map(|b| ids[b as usize]));
                if let Some(pairs) = &self.byte_pairs {
                    let ranks = &mut cache.ranks;
                    ranks.clear();
                    ranks.extend(
                        piece
                            .as_bytes()
                            .windows(2)
                            .map(|w| pairs[(w[0] as usize) << 8 | w[1] as usize]),
                    );
                    merge_from_ranks(symbols, ranks, &self.merges);
                    out.extend_from_slice(symbols);
                    return;
                }
            }
            (None, Some(chars)) => self.initial_symbols_fast(&mapped(), chars, symbols),
            (None, None) => symbols.extend(self.initial_symbols(&mapped())),
        }
        merge_word_with(symbols, &mut cache.ranks, &self.merges);
        out.extend_from_slice(symbols);
    }
}

#[cfg(test)]
mod split_tests {
    use super::*;
    use crate::bpe::model::BpeOptions;

    fn model(merges: &[(&str, &str)]) -> BpeModel {
        let mut vocab: Vec<(String, u32)> = ["▁", "a", "b", "▁a", "▁▁", "a▁", "ab", "▁ab"]
            .iter()
            .enumerate()
            .map(|(i, t)| (t.to_string(), i as u32))
            .collect();
        vocab.push(("<unk>".into(), 99));
        let merges = merges
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        let options = BpeOptions {
            unk_token: Some("<unk>".into()),
            ..BpeOptions::default()
        };
        let mut m = BpeModel::new(vocab, merges, options).unwrap();
        m.set_byte_level(false);
        m
    }

    #[test]
    fn cuts_only_where_no_merge_crosses() {
        let safe = model(&[("▁", "a"), ("a", "b"), ("▁", "ab"), ("▁", "▁")]);
        assert_eq!(safe.split_char, Some('▁'));
        // "a" + "▁" would join across a cut before "▁": no cutting then.
        let crossing = model(&[("a", "▁"), ("▁", "a")]);
        assert_eq!(crossing.split_char, None);
        let text = "▁ab▁▁ab▁a▁▁▁bxa▁";
        let (mut cut, mut whole) = (vec![], vec![]);
        safe.encode_piece(text, &mut cut);
        safe.with_cache(|c| {
            c.symbols.clear();
            safe.encode_uncached(text, &mut whole, c)
        });
        assert_eq!(cut, whole);
        // ▁ab | ▁▁ab | ▁a | ▁▁▁bxa | ▁ (rank order: ▁+a before a+b).
        assert_eq!(cut, vec![3, 2, 0, 3, 2, 3, 4, 0, 2, 99, 1, 0]);
    }
}
