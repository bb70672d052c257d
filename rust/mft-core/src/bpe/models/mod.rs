//! The tokenizer's model: BPE (`model.rs`, with its word cache and the
//! byte-level fast path) or one of HF's other models, WordPiece, Unigram and
//! WordLevel, which return each id's byte range in the piece for offsets.

mod unigram;
mod unigram_trie;
mod wordlevel;
mod wordpiece;

pub use unigram::Unigram;
pub use wordlevel::WordLevel;
pub use wordpiece::WordPiece;

use super::model::BpeModel;
use rustc_hash::FxHashMap;

pub enum Model {
    Bpe(BpeModel),
    WordPiece(WordPiece),
    Unigram(Unigram),
    WordLevel(WordLevel),
}

impl Model {
    pub fn as_bpe(&self) -> Option<&BpeModel> {
        match self {
            Model::Bpe(m) => Some(m),
            _ => None,
        }
    }

    /// HF's model type name.
    pub fn type_name(&self) -> &'static str {
        match self {
            Model::Bpe(_) => "BPE",
            Model::WordPiece(_) => "WordPiece",
            Model::Unigram(_) => "Unigram",
            Model::WordLevel(_) => "WordLevel",
        }
    }

    /// Appends the ids of one pre-tokenized piece and, per id, its byte
    /// range in `piece` (BPE: ranges from the token lengths).
    pub fn encode_with_spans(
        &self,
        piece: &str,
        ids: &mut Vec<u32>,
        spans: &mut Vec<(usize, usize)>,
    ) {
        match self {
            Model::Bpe(m) if !m.is_byte_level() => m.encode_char_level_spans(piece, ids, spans),
            Model::Bpe(m) => {
                let first = ids.len();
                m.encode_piece(piece, ids);
                let mut cur = 0;
                for len in m.token_spans(piece, &ids[first..]) {
                    spans.push((cur, cur + len));
                    cur += len;
                }
            }
            Model::WordPiece(m) => m.encode(piece, ids, spans),
            Model::Unigram(m) => m.encode(piece, ids, spans),
            Model::WordLevel(m) => m.encode(piece, ids, spans),
        }
    }

    /// The ids of one piece (no ranges).
    pub fn encode_piece(&self, piece: &str, ids: &mut Vec<u32>) {
        let mut spans = Vec::new();
        self.for_each_cached(&mut |each| each(piece, ids, &mut spans));
    }

    /// Runs `f` with an encoder of pieces (ids only) that goes through this
    /// thread's word cache for the models that keep one; `spans` is scratch.
    #[allow(clippy::type_complexity)]
    pub fn for_each_cached(
        &self,
        f: &mut dyn FnMut(&mut dyn FnMut(&str, &mut Vec<u32>, &mut Vec<(usize, usize)>)),
    ) {
        let cache = match self {
            Model::Bpe(m) => {
                return m.with_cache(|c| {
                    f(&mut |p: &str, ids: &mut Vec<u32>, _: &mut Vec<(usize, usize)>| {
                        m.encode_piece_cached(p, ids, c)
                    })
                })
            }
            Model::WordPiece(m) => &m.cache,
            Model::Unigram(m) => &m.cache,
            Model::WordLevel(m) => {
                return f(&mut |p: &str, ids: &mut Vec<u32>, spans: &mut Vec<(usize, usize)>| {
                    m.encode(p, ids, spans)
                })
            }
        };
        cache.with_local(|c| {
            f(&mut |p: &str, ids: &mut Vec<u32>, spans: &mut Vec<(usize, usize)>| {
                if c.get_into(p, ids) {
                    return;
                }
                let start = ids.len();
                spans.clear();
                self.encode_with_spans(p, ids, spans);
                c.insert(p, &ids[start..]);
            })
        })
    }

    fn map(&self) -> Option<&FxHashMap<String, u32>> {
        match self {
            Model::Bpe(_) => None,
            Model::WordPiece(m) => Some(&m.vocab),
            Model::Unigram(m) => Some(&m.vocab),
            Model::WordLevel(m) => Some(&m.vocab),
        }
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        match self {
            Model::Bpe(m) => m.token_to_id(token),
            other => other.map().and_then(|v| v.get(token).copied()),
        }
    }

    pub fn id_to_token(&self, id: u32) -> Option<&str> {
        match self {
            Model::Bpe(m) => m.id_to_token(id),
            Model::Unigram(m) => m.pieces.get(id as usize).map(|(p, _)| p.as_str()),
            Model::WordPiece(WordPiece { vocab_r, .. })
            | Model::WordLevel(WordLevel { vocab_r, .. }) => vocab_r.get(&id).map(String::as_str),
        }
    }

    pub fn vocab_len(&self) -> usize {
        match self {
            Model::Bpe(m) => m.vocab_len(),
            Model::Unigram(m) => m.pieces.len(),
            other => other.map().map_or(0, |v| v.len()),
        }
    }

    /// One more than the largest model id.
    pub fn id_upper_bound(&self) -> usize {
        match self {
            Model::Bpe(m) => m.id_upper_bound(),
            Model::Unigram(m) => m.pieces.len(),
            other => other
                .map()
                .and_then(|v| v.values().max())
                .map_or(0, |&i| i as usize + 1),
        }
    }

    /// True when the model merges byte-level mapped text (GPT-2 style BPE).
    pub fn is_byte_level(&self) -> bool {
        matches!(self, Model::Bpe(m) if m.is_byte_level())
    }

    /// BPE merges in rank order (empty for the other models).
    pub fn merge_list(&self) -> &[(String, String)] {
        match self {
            Model::Bpe(m) => m.merge_list(),
            _ => &[],
        }
    }
}
