//! The whole pipeline: added tokens -> normalizer -> added tokens matched
//! after normalization -> pre-tokenizer -> model (BPE, WordPiece, Unigram,
//! WordLevel) -> post-processor. The same with offsets: `offsets.rs`;
//! decoding and vocabulary queries: `vocab.rs`; pairs: `pair.rs`; overflow: `overflow.rs`.

use super::added::{AddedVocab, Segment};
use super::components::{Decoder, Normalizer, PostProcessor, PreTokenizer};
use super::error::Result;
use super::limits::Limits;
use super::models::Model;
use super::split_regex::{digits3_then_cjk, Family};
use serde_json::Value;
use std::borrow::Cow;

/// Ids and, per id, its (start, end) char offsets in the text.
pub type IdsWithOffsets = (Vec<u32>, Vec<(usize, usize)>);

pub struct Tokenizer {
    pub model: Model,
    pub added: AddedVocab,
    pub normalizer: Normalizer,
    pub pre_tokenizer: PreTokenizer,
    pub post_processor: PostProcessor,
    pub decoder: Decoder,
    /// The file's `truncation` and `padding` (HF applies them to every encode).
    pub limits: Limits,
    /// The file's own JSON for the non-model stages, written back verbatim by `save`.
    pub raw: RawStages,
}

#[derive(Clone, Debug, Default)]
pub struct RawStages {
    pub normalizer: Value,
    pub pre_tokenizer: Value,
    pub post_processor: Value,
    pub decoder: Value,
    /// The `model` section of a non-BPE model (BPE is written from its parts).
    pub model: Value,
    pub truncation: Value,
    pub padding: Value,
}

impl Tokenizer {
    /// Text -> ids; `add_special_tokens` applies the post-processor (HF's default).
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Vec<u32> {
        let mut ids = Vec::with_capacity(text.len() / 3 + 2);
        self.encode_into(text, add_special_tokens, &mut ids);
        ids
    }

    /// `encode`, appending to `out` (many texts share one buffer). A file
    /// whose truncation HF would refuse for this text (see `try_encode`)
    /// leaves it uncut here.
    pub fn encode_into(&self, text: &str, add_special_tokens: bool, out: &mut Vec<u32>) {
        if !self.limits.is_none() {
            if let Ok(ids) = self.encode_limited(text, add_special_tokens, false) {
                out.extend_from_slice(&ids);
            }
            return;
        }
        let (before, after) = if add_special_tokens {
            self.post_processor.added_ids()
        } else {
            (Vec::new(), Vec::new())
        };
        out.extend_from_slice(&before);
        let mut segments = Vec::new();
        self.added.split_raw(text, &mut segments);
        for seg in segments {
            match seg {
                Segment::Token(id, _) => out.push(id),
                Segment::Text(t) => {
                    let at_start = t.as_ptr() == text.as_ptr();
                    self.encode_text(t, at_start, out)
                }
            }
        }
        out.extend_from_slice(&after);
    }

    /// `encode`, with the errors HF gives when the file's truncation cannot
    /// cut this text (strategy "OnlySecond" without a pair, `stride` too large).
    pub fn try_encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        if self.limits.is_none() {
            return Ok(self.encode(text, add_special_tokens));
        }
        self.encode_limited(text, add_special_tokens, true)
    }

    /// The ids of a file with truncation or padding (`strict`: truncation
    /// errors are returned, else the text stays uncut).
    fn encode_limited(
        &self,
        text: &str,
        add_special_tokens: bool,
        strict: bool,
    ) -> Result<Vec<u32>> {
        let mut body = Vec::new();
        self.body_ids(text, &mut body);
        let (mut all, after) = if add_special_tokens {
            self.post_processor.added_ids()
        } else {
            (Vec::new(), Vec::new())
        };
        let n_added = all.len() + after.len();
        match self
            .limits
            .truncate(&mut body, None::<&mut Vec<()>>, n_added)
        {
            Err(e) if strict => return Err(e),
            _ => {}
        }
        all.extend_from_slice(&body);
        all.extend_from_slice(&after);
        if let Some(n) = self.limits.pad_length(all.len(), 0) {
            self.limits.pad(&mut all, None, n);
        }
        Ok(all)
    }

    /// Pads a batch to its longest row when the file's padding says "BatchLongest"
    /// (`encode` already padded each row to a fixed length, if one is set).
    pub fn pad_batch(&self, rows: &mut [Vec<u32>]) {
        let longest = rows.iter().map(Vec::len).max().unwrap_or(0);
        for row in rows.iter_mut() {
            if let Some(n) = self.limits.pad_length(row.len(), longest) {
                self.limits.pad(row, None, n);
            }
        }
    }

    /// `pad_batch` for rows with offsets (pads get (0, 0)).
    pub fn pad_batch_with_offsets(&self, rows: &mut [IdsWithOffsets]) {
        let longest = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
        for (ids, offsets) in rows.iter_mut() {
            if let Some(n) = self.limits.pad_length(ids.len(), longest) {
                self.limits.pad(ids, Some(offsets), n);
            }
        }
    }

    fn encode_text(&self, text: &str, at_start: bool, ids: &mut Vec<u32>) {
        let (normalized, at_start) = self.normalize_at(text, at_start);
        if normalized.is_empty() {
            return;
        }
        if !self.added.has_normalized() {
            return self.encode_pieces(&normalized, at_start, ids);
        }
        let mut segments = Vec::new();
        self.added.split_normalized(&normalized, &mut segments);
        for seg in segments {
            match seg {
                Segment::Token(id, _) => ids.push(id),
                Segment::Text(t) => {
                    let first = at_start && t.as_ptr() == normalized.as_ptr();
                    self.encode_pieces(t, first, ids)
                }
            }
        }
    }

    /// `text` normalized, and whether it still begins the input (`at_start`
    /// and its first char comes from the input's first char). HF's Metaspace
    /// "first" prepends only to a piece at original offset 0, so when the
    /// normalizer drops the leading chars (Nmt's controls, Strip's spaces)
    /// nothing is prepended. The aligned (slower) normalization runs only for
    /// files where it matters.
    fn normalize_at<'a>(&self, text: &'a str, at_start: bool) -> (Cow<'a, str>, bool) {
        if !at_start || self.normalizer.steps.is_empty() || !self.pre_tokenizer.prepends_first() {
            return (self.normalizer.apply(text), at_start);
        }
        let (normalized, map) = self.normalizer.apply_aligned(text);
        let at_origin = map.first().is_none_or(|m| m.0 == 0);
        (Cow::Owned(normalized), at_origin)
    }

    fn encode_pieces(&self, text: &str, at_start: bool, ids: &mut Vec<u32>) {
        match &self.model {
            Model::Bpe(model) => model.with_cache(|cache| match self.pre_tokenizer.split_chain() {
                // The same pieces as `for_each_piece` (empty ones dropped),
                // without its per-piece step dispatch.
                Some(([re, _, _], 1)) => re.isolated_with(text, |a, b| {
                    if b > a {
                        model.encode_piece_cached(&text[a..b], ids, cache)
                    }
                }),
                Some(([r0, r1, _], 2)) => r0.isolated_with(text, |a, b| {
                    let t = &text[a..b];
                    r1.isolated_with(t, |c, d| {
                        if d > c {
                            model.encode_piece_cached(&t[c..d], ids, cache)
                        }
                    })
                }),
                // DeepSeek-V3: its first two splits in one pass.
                Some(([r0, r1, r2], _))
                    if r0.family() == Some(Family::Digits3)
                        && r1.family() == Some(Family::DeepSeekCjk) =>
                {
                    digits3_then_cjk(text, |a, b| {
                        let t = &text[a..b];
                        r2.isolated_with(t, |c, d| {
                            if d > c {
                                model.encode_piece_cached(&t[c..d], ids, cache)
                            }
                        })
                    })
                }
                Some(([r0, r1, r2], _)) => r0.isolated_with(text, |a, b| {
                    let t = &text[a..b];
                    r1.isolated_with(t, |c, d| {
                        let u = &t[c..d];
                        r2.isolated_with(u, |e, f| {
                            if f > e {
                                model.encode_piece_cached(&u[e..f], ids, cache)
                            }
                        })
                    })
                }),
                None if self.pre_tokenizer.is_plain_gpt2() => {
                    super::pretokenize::for_each_piece(text, |piece| {
                        model.encode_piece_cached(piece, ids, cache)
                    })
                }
                None => self
                    .pre_tokenizer
                    .for_each_piece(text, at_start, &mut |piece| {
                        model.encode_piece_cached(piece, ids, cache)
                    }),
            }),
            other => {
                let mut spans = Vec::new();
                other.for_each_cached(&mut |encode| {
                    self.pre_tokenizer
                        .for_each_piece(text, at_start, &mut |piece| encode(piece, ids, &mut spans))
                })
            }
        }
    }

    /// The text's own ids (no template, truncation or padding).
    pub(crate) fn body_ids(&self, text: &str, out: &mut Vec<u32>) {
        let mut segments = Vec::new();
        self.added.split_raw(text, &mut segments);
        for seg in segments {
            match seg {
                Segment::Token(id, _) => out.push(id),
                Segment::Text(t) => self.encode_text(t, t.as_ptr() == text.as_ptr(), out),
            }
        }
    }
}
