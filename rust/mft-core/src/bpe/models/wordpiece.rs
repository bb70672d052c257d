//! HF's WordPiece model: greedy longest-match-first, "##" continuations, a
//! word that cannot be covered (or is too long) becomes the unknown token.

use crate::bpe::cache::WordCache;
use rustc_hash::FxHashMap;

pub struct WordPiece {
    pub vocab: FxHashMap<String, u32>,
    /// id -> token, for decoding.
    pub vocab_r: FxHashMap<u32, String>,
    pub unk_token: String,
    pub continuing_subword_prefix: String,
    pub max_input_chars_per_word: usize,
    /// Piece -> ids, per thread (encoding without offsets).
    pub cache: WordCache,
}

impl WordPiece {
    /// The reverse map of `vocab` (for decoding).
    pub fn reverse(vocab: &FxHashMap<String, u32>) -> FxHashMap<u32, String> {
        let mut r = FxHashMap::default();
        for (t, &i) in vocab {
            r.entry(i).or_insert_with(|| t.clone());
        }
        r
    }

    /// Appends the ids of `word` and, per id, its byte range in `word`.
    /// Without an unknown token in the vocab an uncoverable word gives nothing
    /// (HF raises an error there).
    pub fn encode(&self, word: &str, ids: &mut Vec<u32>, spans: &mut Vec<(usize, usize)>) {
        let unk = |ids: &mut Vec<u32>, spans: &mut Vec<(usize, usize)>| {
            if let Some(&id) = self.vocab.get(&self.unk_token) {
                ids.push(id);
                spans.push((0, word.len()));
            }
        };
        if word.chars().count() > self.max_input_chars_per_word {
            return unk(ids, spans);
        }
        let (first_id, first_span) = (ids.len(), spans.len());
        let mut buf = String::with_capacity(word.len() + self.continuing_subword_prefix.len());
        let mut start = 0;
        while start < word.len() {
            let mut end = word.len();
            let mut found = None;
            while start < end {
                buf.clear();
                if start > 0 {
                    buf.push_str(&self.continuing_subword_prefix);
                }
                buf.push_str(&word[start..end]);
                if let Some(&id) = self.vocab.get(&buf) {
                    found = Some(id);
                    break;
                }
                end -= word[..end].chars().next_back().map_or(1, char::len_utf8);
            }
            match found {
                Some(id) => {
                    ids.push(id);
                    spans.push((start, end));
                    start = end;
                }
                None => {
                    ids.truncate(first_id);
                    spans.truncate(first_span);
                    return unk(ids, spans);
                }
            }
        }
    }
}
