//! HF's WordLevel model: each piece is one vocab entry or the unknown token.

use rustc_hash::FxHashMap;

pub struct WordLevel {
    pub vocab: FxHashMap<String, u32>,
    /// id -> token, for decoding.
    pub vocab_r: FxHashMap<u32, String>,
    pub unk_token: String,
}

impl WordLevel {
    /// The reverse map of `vocab` (for decoding).
    pub fn reverse(vocab: &FxHashMap<String, u32>) -> FxHashMap<u32, String> {
        let mut r = FxHashMap::default();
        for (t, &i) in vocab {
            r.entry(i).or_insert_with(|| t.clone());
        }
        r
    }

    /// Without an unknown token in the vocab an unknown piece gives nothing
    /// (HF raises an error there).
    pub fn encode(&self, piece: &str, ids: &mut Vec<u32>, spans: &mut Vec<(usize, usize)>) {
        if let Some(&id) = self
            .vocab
            .get(piece)
            .or_else(|| self.vocab.get(&self.unk_token))
        {
            ids.push(id);
            spans.push((0, piece.len()));
        }
    }
}
