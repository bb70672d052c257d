//! A word's first symbols before merging: one per char (or per byte),
//! with the prefix/suffix, byte-fallback and (fused) unknown rules of HF's
//! `merge_word`.

use super::BpeModel;
use rustc_hash::FxHashMap;

/// Ids of one-char tokens (ASCII in a table) and of the byte-fallback tokens.
pub(super) struct CharIds {
    ascii: [u32; 128],
    other: FxHashMap<char, u32>,
    bytes: [u32; 256],
}

const NO_ID: u32 = u32::MAX;

impl CharIds {
    pub(super) fn new(vocab: &FxHashMap<String, u32>) -> Self {
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
    /// `initial_symbols` without prefix/suffix, from the char table: the
    /// same symbols (a pending unknown is not flushed before byte-fallback
    /// tokens, as in HF and `initial_symbols_spanned`).
    pub(super) fn initial_symbols_fast(&self, word: &str, chars: &CharIds, out: &mut Vec<u32>) {
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
    pub(super) fn initial_symbols(&self, word: &str) -> Vec<u32> {
        self.initial_symbols_spanned(word)
            .into_iter()
            .map(|(id, _)| id)
            .collect()
    }

    /// `initial_symbols` with each symbol's byte range in `word` (a byte
    /// fallback token covers its whole char, as HF reports it). Without an
    /// unknown token a char the vocab lacks is dropped, and, as in HF (whose
    /// word offsets add up the kept symbols' lengths), the spans after it
    /// move left by its length.
    pub(super) fn initial_symbols_spanned(&self, word: &str) -> Vec<(u32, (usize, usize))> {
        let mut symbols = Vec::with_capacity(word.len());
        let mut pending_unk: Option<(usize, usize)> = None;
        let unk = self.unk_id.unwrap_or(0);
        let n_chars = word.chars().count();
        let mut buf = String::new();
        let mut dropped = 0;
        for (i, (at, c)) in word.char_indices().enumerate() {
            let span = (at - dropped, at + c.len_utf8() - dropped);
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
            } else {
                dropped += c.len_utf8();
            }
        }
        if let Some(u) = pending_unk {
            symbols.push((unk, u));
        }
        symbols
    }
}
