//! The BPE model: vocabulary, ranked merges, and word -> ids.

use super::byte_level::byte_to_char;
use super::byte_level::bytes_to_mapped;
use super::cache::{LocalCache, WordCache};
use super::error::{Error, Result};
use super::merge::{merge_word_with, Merges};
use rustc_hash::FxHashMap;
use std::borrow::Cow;

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

/// Ids of one-char tokens (ASCII in a table) and of the byte-fallback tokens.
struct CharIds {
    ascii: [u32; 128],
    other: FxHashMap<char, u32>,
    bytes: [u32; 256],
}

const NO_ID: u32 = u32::MAX;

impl CharIds {
    fn new(vocab: &FxHashMap<String, u32>) -> Self {
        let mut ids = CharIds {
            ascii: [NO_ID; 128],
            other: FxHashMap::default(),
            bytes: [NO_ID; 256],
        };
        for (tok, &id) in vocab {
            let mut cs = tok.chars();
            if let (Some(c), None) = (cs.next(), cs.next()) {
                if c.is_ascii() {
                    ids.ascii[c as usize] = id;
                } else {
                    ids.other.insert(c, id);
                }
            }
        }
        for b in 0..256 {
            if let Some(&id) = vocab.get(&format!("<0x{b:02X}>")) {
                ids.bytes[b] = id;
            }
        }
        ids
    }

    #[inline]
    fn get(&self, c: char) -> Option<u32> {
        if c.is_ascii() {
            let id = self.ascii[c as usize];
            (id != NO_ID).then_some(id)
        } else {
            self.other.get(&c).copied()
        }
    }
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
        Ok(BpeModel {
            vocab: map,
            vocab_r: rev,
            merges: merge_map,
            merge_list: merges,
            options,
            unk_id,
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

    /// Byte length in the source text of each of `ids` (the ids of `piece`),
    /// for offsets. Byte-level tokens: one byte per char; byte-fallback
    /// tokens: one byte; unknown tokens: the chars they stand for.
    pub fn token_spans(&self, piece: &str, ids: &[u32]) -> Vec<usize> {
        let mut out = Vec::with_capacity(ids.len());
        let mut pos = 0usize;
        for &id in ids {
            let tok = self.id_to_token(id).unwrap_or("");
            let n = if self.byte_level {
                tok.chars().count()
            } else if Some(id) == self.unk_id && !piece[pos.min(piece.len())..].starts_with(tok) {
                // The unknown chars it replaced (several when fused).
                let mut n = 0;
                for c in piece[pos.min(piece.len())..].chars() {
                    let known = self.vocab.contains_key(c.encode_utf8(&mut [0; 4]) as &str);
                    if known || (n > 0 && !self.options.fuse_unk) {
                        break;
                    }
                    n += c.len_utf8();
                }
                n.max(1)
            } else if tok.len() == 6
                && tok.starts_with("<0x")
                && tok.ends_with('>')
                && self.options.byte_fallback
            {
                1
            } else {
                let mut t = tok;
                if pos > 0 {
                    if let Some(p) = &self.options.continuing_subword_prefix {
                        t = t.strip_prefix(p.as_str()).unwrap_or(t);
                    }
                }
                if let Some(s) = &self.options.end_of_word_suffix {
                    t = t.strip_suffix(s.as_str()).unwrap_or(t);
                }
                t.len()
            };
            out.push(n);
            pos += n;
        }
        out
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
            (Some(ids), _) => symbols.extend(piece.bytes().map(|b| ids[b as usize])),
            (None, Some(chars)) => self.initial_symbols_fast(&mapped(), chars, symbols),
            (None, None) => symbols.extend(self.initial_symbols(&mapped())),
        }
        merge_word_with(symbols, &mut cache.ranks, &self.merges);
        out.extend_from_slice(symbols);
    }

    /// `initial_symbols` without prefix/suffix, from the char table: the
    /// same symbols (a pending unknown is not flushed before byte-fallback
    /// tokens, as in HF and `initial_symbols_spanned`).
    fn initial_symbols_fast(&self, word: &str, chars: &CharIds, out: &mut Vec<u32>) {
        let unk = self.unk_id;
        let mut pending = false;
        for c in word.chars() {
            if let Some(id) = chars.get(c) {
                if pending {
                    out.push(unk.unwrap_or(0));
                    pending = false;
                }
                out.push(id);
                continue;
            }
            if self.options.byte_fallback {
                let mut buf = [0u8; 4];
                let bytes = c.encode_utf8(&mut buf).as_bytes();
                if bytes.iter().all(|&b| chars.bytes[b as usize] != NO_ID) {
                    out.extend(bytes.iter().map(|&b| chars.bytes[b as usize]));
                    continue;
                }
            }
            if unk.is_some() {
                if pending && !self.options.fuse_unk {
                    out.push(unk.unwrap_or(0));
                }
                pending = true;
            }
        }
        if pending {
            out.push(unk.unwrap_or(0));
        }
    }

    /// HF's `merge_word` start: one symbol per char, with prefix/suffix,
    /// byte fallback and (fused) unknown tokens.
    fn initial_symbols(&self, word: &str) -> Vec<u32> {
        self.initial_symbols_spanned(word)
            .into_iter()
            .map(|(id, _)| id)
            .collect()
    }

    /// `initial_symbols` with each symbol's byte range in `word` (a byte
    /// fallback token covers its whole char, as HF reports it).
    fn initial_symbols_spanned(&self, word: &str) -> Vec<(u32, (usize, usize))> {
        let mut symbols = Vec::with_capacity(word.len());
        let mut pending_unk: Option<(usize, usize)> = None;
        let unk = self.unk_id.unwrap_or(0);
        let n_chars = word.chars().count();
        let mut buf = String::new();
        for (i, (at, c)) in word.char_indices().enumerate() {
            let span = (at, at + c.len_utf8());
            buf.clear();
            if i > 0 {
                if let Some(p) = &self.options.continuing_subword_prefix {
                    buf.push_str(p);
                }
            }
            buf.push(c);
            if i + 1 == n_chars {
                if let Some(s) = &self.options.end_of_word_suffix {
                    buf.push_str(s);
                }
            }
            if let Some(&id) = self.vocab.get(&buf) {
                if let Some(u) = pending_unk.take() {
                    symbols.push((unk, u));
                }
                symbols.push((id, span));
                continue;
            }
            if self.options.byte_fallback {
                let ids: Option<Vec<u32>> = buf
                    .bytes()
                    .map(|b| self.vocab.get(&format!("<0x{b:02X}>")).copied())
                    .collect();
                if let Some(ids) = ids {
                    symbols.extend(ids.into_iter().map(|id| (id, span)));
                    continue;
                }
            }
            if self.unk_id.is_some() {
                pending_unk = match pending_unk {
                    Some(u) if self.options.fuse_unk => Some((u.0, span.1)),
                    Some(u) => {
                        symbols.push((unk, u));
                        Some(span)
                    }
                    None => Some(span),
                };
            }
        }
        if let Some(u) = pending_unk {
            symbols.push((unk, u));
        }
        symbols
    }

    /// Char-level (not byte-level) BPE of one piece with each id's byte
    /// range in `piece`: the same merges as `encode_piece`, ranges merged along.
    pub fn encode_char_level_spans(
        &self,
        piece: &str,
        ids: &mut Vec<u32>,
        spans: &mut Vec<(usize, usize)>,
    ) {
        if self.options.ignore_merges {
            if let Some(&id) = self.vocab.get(piece) {
                ids.push(id);
                spans.push((0, piece.len()));
                return;
            }
        }
        let mut syms = self.initial_symbols_spanned(piece);
        loop {
            let mut best: Option<(u32, usize, u32)> = None;
            for i in 0..syms.len().saturating_sub(1) {
                if let Some(&(rank, id)) = self.merges.get(&(syms[i].0, syms[i + 1].0)) {
                    if best.is_none_or(|b| rank < b.0) {
                        best = Some((rank, i, id));
                    }
                }
            }
            let Some((_, i, id)) = best else { break };
            let end = syms[i + 1].1 .1;
            syms[i] = (id, (syms[i].1 .0, end));
            syms.remove(i + 1);
        }
        for (id, span) in syms {
            ids.push(id);
            spans.push(span);
        }
    }
}

fn lookup(map: &FxHashMap<String, u32>, tok: &str, rank: usize) -> Result<u32> {
    map.get(tok).copied().ok_or_else(|| {
        Error::Format(format!(
            "model.merges[{rank}]: token {tok:?} is not in model.vocab"
        ))
    })
}

#[cfg(test)]
mod split_tests {
    use super::*;

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
