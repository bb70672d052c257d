//! The BPE model: vocabulary, ranked merges, and word -> ids. This file
//! builds the model and answers vocabulary questions; `encode.rs` turns
//! pieces into ids (word cache, merge loop), `symbols.rs` makes a word's
//! first symbols, `spans.rs` gives ids their byte spans for offsets.

mod encode;
mod spans;
mod symbols;

use super::byte_level::byte_to_char;
use super::cache::WordCache;
use super::error::{Error, Result};
use super::merge::Merges;
use rustc_hash::FxHashMap;
use symbols::CharIds;

/// Options of HF's `BPE` model that mft implements.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BpeOptions {
    pub unk_token: Option<String>,
    pub continuing_subword_prefix: Option<String>,
    pub end_of_word_suffix: Option<String>,
    pub fuse_unk: bool,
    pub byte_fallback: bool,
    pub ignore_merges: bool,
}

pub struct BpeModel {
    vocab: FxHashMap<String, u32>,
    vocab_r: FxHashMap<u32, String>,
    merges: Merges,
    /// Merges in rank order, as strings, for saving.
    merge_list: Vec<(String, String)>,
    pub options: BpeOptions,
    unk_id: Option<u32>,
    /// Id of each byte's single-char token when words can be built byte by
    /// byte (no prefix/suffix, all 256 byte tokens present).
    byte_ids: Option<Box<[u32; 256]>>,
    /// With `byte_ids`: the (rank, merged id) of every pair of bytes, so a
    /// word's first pair ranks come from one compact table (its hot part
    /// stays in cache) instead of a hash lookup each.
    byte_pairs: Option<Box<[(u32, u32)]>>,
    /// Pieces are byte-level mapped before merging (a ByteLevel pre-tokenizer);
    /// false for Metaspace/SentencePiece-style models, which merge raw chars.
    byte_level: bool,
    /// A char before which (at the start of a run of it) no merge ever
    /// reaches across (see `split_safe_char`): long pieces are encoded word
    /// by word through the cache there, with the same ids.
    split_char: Option<char>,
    /// Single-char tokens and `<0xHH>` ids, when there is no subword
    /// prefix/suffix: the start of a word without string lookups.
    char_ids: Option<Box<CharIds>>,
    cache: WordCache,
}

impl BpeModel {
    /// Builds the model; `merges` in rank order. Errors name the bad entry.
    pub fn new(
        vocab: Vec<(String, u32)>,
        merges: Vec<(String, String)>,
        options: BpeOptions,
    ) -> Result<Self> {
        let mut map: FxHashMap<String, u32> = FxHashMap::default();
        let mut rev: FxHashMap<u32, String> = FxHashMap::default();
        for (tok, id) in vocab {
            if let Some(other) = rev.get(&id) {
                return Err(Error::Format(format!(
                    "model.vocab: id {id} is used by both {other:?} and {tok:?}"
                )));
            }
            rev.insert(id, tok.clone());
            map.insert(tok, id);
        }
        let prefix_len = options
            .continuing_subword_prefix
            .as_ref()
            .map_or(0, |p| p.len());
        let mut merge_map = Merges::default();
        for (rank, (a, b)) in merges.iter().enumerate() {
            let id_a = lookup(&map, a, rank)?;
            let id_b = lookup(&map, b, rank)?;
            let b_rest = if prefix_len > 0
                && b.starts_with(options.continuing_subword_prefix.as_deref().unwrap_or(""))
            {
                &b[prefix_len..]
            } else {
                b.as_str()
            };
            let merged = format!("{a}{b_rest}");
            let new_id = *map.get(&merged).ok_or_else(|| {
                Error::Format(format!(
                    "model.merges[{rank}]: merging {a:?} and {b:?} gives {merged:?}, which is not in model.vocab"
                ))
            })?;
            merge_map.insert((id_a, id_b), (rank as u32, new_id));
        }
        let unk_id = match &options.unk_token {
            Some(t) => Some(*map.get(t).ok_or_else(|| {
                Error::Format(format!("model.unk_token {t:?} is not in model.vocab"))
            })?),
            None => None,
        };
        let byte_ids = if options.continuing_subword_prefix.is_none()
            && options.end_of_word_suffix.is_none()
        {
            let mut ids = Box::new([0u32; 256]);
            let mut complete = true;
            for b in 0..=255u8 {
                match map.get(byte_to_char(b).encode_utf8(&mut [0; 4]) as &str) {
                    Some(&id) => ids[b as usize] = id,
                    None => complete = false,
                }
            }
            complete.then_some(ids)
        } else {
            None
        };
        let char_ids = (options.continuing_subword_prefix.is_none()
            && options.end_of_word_suffix.is_none())
        .then(|| Box::new(CharIds::new(&map)));
        let byte_pairs = byte_ids
            .as_ref()
            .map(|ids| byte_pair_table(ids, &merge_map));
        Ok(BpeModel {
            vocab: map,
            vocab_r: rev,
            merges: merge_map,
            merge_list: merges,
            options,
            unk_id,
            byte_pairs,
            byte_ids,
            byte_level: true,
            split_char: None,
            char_ids,
            cache: WordCache::default(),
        })
    }

    /// Makes the model merge the raw chars of each piece (no byte-level
    /// mapping), as SentencePiece-style (Metaspace) tokenizers do.
    pub fn set_byte_level(&mut self, byte_level: bool) {
        self.byte_level = byte_level;
        if !byte_level {
            self.byte_ids = None;
            self.byte_pairs = None;
        }
        self.split_char = if byte_level {
            None
        } else {
            self.split_safe_char('\u{2581}')
        };
    }

    /// `Some(c)` when cutting a piece before every run of `c` cannot change
    /// its ids: a merge crossing such a cut would join a symbol ending in
    /// another char with one starting with `c`, so none may exist; `c` must
    /// be a token (an unknown `c` could fuse with unknowns before it); and
    /// no option may look at the whole piece (ignore_merges, prefix/suffix).
    fn split_safe_char(&self, c: char) -> Option<char> {
        let o = &self.options;
        if o.ignore_merges
            || o.continuing_subword_prefix.is_some()
            || o.end_of_word_suffix.is_some()
        {
            return None;
        }
        if !self.vocab.contains_key(c.encode_utf8(&mut [0; 4]) as &str) {
            return None;
        }
        let crosses = self
            .merge_list
            .iter()
            .any(|(a, b)| b.starts_with(c) && !a.ends_with(c));
        (!crosses).then_some(c)
    }

    pub fn is_byte_level(&self) -> bool {
        self.byte_level
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.vocab.get(token).copied()
    }

    pub fn id_to_token(&self, id: u32) -> Option<&str> {
        self.vocab_r.get(&id).map(|s| s.as_str())
    }

    /// One more than the largest model id (0 for an empty vocab).
    pub fn id_upper_bound(&self) -> usize {
        self.vocab_r.keys().max().map_or(0, |&i| i as usize + 1)
    }

    pub fn vocab_len(&self) -> usize {
        self.vocab.len()
    }

    /// (token, id) sorted by id.
    pub fn vocab_sorted(&self) -> Vec<(&str, u32)> {
        let mut v: Vec<(&str, u32)> = self.vocab.iter().map(|(t, &i)| (t.as_str(), i)).collect();
        v.sort_unstable_by_key(|&(_, i)| i);
        v
    }

    pub fn merge_list(&self) -> &[(String, String)] {
        &self.merge_list
    }
}

/// (rank, merged id) of each byte pair, indexed by `first << 8 | second`;
/// `(u32::MAX, 0)` where no merge applies (as `merge::rank_of` gives).
fn byte_pair_table(ids: &[u32; 256], merges: &Merges) -> Box<[(u32, u32)]> {
    let mut table = vec![(u32::MAX, 0); 1 << 16];
    for (a, &ia) in ids.iter().enumerate() {
        for (b, &ib) in ids.iter().enumerate() {
            if let Some(&v) = merges.get(&(ia, ib)) {
                table[a << 8 | b] = v;
            }
        }
    }
    table.into_boxed_slice()
}

fn lookup(map: &FxHashMap<String, u32>, tok: &str, rank: usize) -> Result<u32> {
    map.get(tok).copied().ok_or_else(|| {
        Error::Format(format!(
            "model.merges[{rank}]: token {tok:?} is not in model.vocab"
        ))
    })
}
