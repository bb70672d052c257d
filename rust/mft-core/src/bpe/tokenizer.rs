//! The whole pipeline: added tokens -> normalizer -> added tokens matched
//! after normalization -> pre-tokenizer -> model (BPE, WordPiece, Unigram,
//! WordLevel) -> post-processor, and the reverse for decoding.

use super::added::{AddedVocab, Segment};
use super::components::{Decoder, Normalizer, PostProcessor, PreTokenizer};
use super::error::{Error, Result};
use super::limits::Limits;
use super::models::Model;
use super::split_regex::{digits3_then_cjk, Family};
use super::trim_offsets::trim_offsets;
use serde_json::Value;

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
        let at_start = at_start && self.starts_at_origin(text);
        let normalized = self.normalizer.apply(text);
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

    /// Whether the normalized `text` (which begins the input) still begins at
    /// the input's first char. HF's Metaspace "first" prepends only to a piece
    /// at original offset 0, so when the normalizer drops the leading chars
    /// (Nmt's controls, Strip's spaces) nothing is prepended. Only computed
    /// for files where it matters.
    fn starts_at_origin(&self, text: &str) -> bool {
        if self.normalizer.steps.is_empty() || !self.pre_tokenizer.prepends_first() {
            return true;
        }
        let (_, map) = self.normalizer.apply_aligned(text);
        map.first().is_none_or(|m| m.0 == 0)
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

    /// `encode` plus, per id, the (start, end) char offsets in `text` it
    /// covers (ids added by the post-processor get (0, 0)). A text the
    /// file's truncation cannot cut stays whole (`try_encode_with_offsets` errs).
    pub fn encode_with_offsets(&self, text: &str, add_special_tokens: bool) -> IdsWithOffsets {
        self.offsets_impl(text, add_special_tokens, false)
            .expect("lenient truncation does not fail")
    }

    /// `encode_with_offsets` with `try_encode`'s truncation errors.
    pub fn try_encode_with_offsets(
        &self,
        text: &str,
        add_special_tokens: bool,
    ) -> Result<IdsWithOffsets> {
        self.offsets_impl(text, add_special_tokens, true)
    }

    fn offsets_impl(
        &self,
        text: &str,
        add_special_tokens: bool,
        strict: bool,
    ) -> Result<IdsWithOffsets> {
        let (mut ids, mut offsets) = self.body_with_offsets(text);
        if !(add_special_tokens || !self.limits.is_none()) {
            self.trim_body(text, &ids, &mut offsets);
        } else {
            let (before, after) = if add_special_tokens {
                self.post_processor.added_ids()
            } else {
                (Vec::new(), Vec::new())
            };
            match self
                .limits
                .truncate(&mut ids, Some(&mut offsets), before.len() + after.len())
            {
                Err(e) if strict => return Err(e),
                _ => {}
            }
            self.trim_body(text, &ids, &mut offsets);
            if !before.is_empty() || !after.is_empty() {
                let n = ids.len();
                ids = self.post_processor.apply(ids);
                let mut o = vec![(0, 0); before.len()];
                o.extend(offsets);
                o.extend(std::iter::repeat_n((0, 0), ids.len() - n - before.len()));
                offsets = o;
            }
            if let Some(n) = self.limits.pad_length(ids.len(), 0) {
                self.limits.pad(&mut ids, Some(&mut offsets), n);
            }
        }
        Ok((ids, offsets))
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

    /// `body_ids` with each id's char offsets (untrimmed: see `trim_body`).
    pub(crate) fn body_with_offsets(&self, text: &str) -> IdsWithOffsets {
        // Byte offset -> char offset (Python str indices).
        let mut char_at = vec![0usize; text.len() + 1];
        let mut n = 0;
        for (i, c) in text.char_indices() {
            for k in 0..c.len_utf8() {
                char_at[i + k] = n;
            }
            n += 1;
        }
        char_at[text.len()] = n;
        // A byte range -> the chars it touches.
        let to_chars = |a: usize, b: usize| -> (usize, usize) {
            let end = if b == 0 { 0 } else { char_at[b - 1] + 1 };
            (
                char_at[a.min(text.len())],
                end.max(char_at[a.min(text.len())]),
            )
        };
        let base = text.as_ptr() as usize;
        let mut ids = Vec::new();
        let mut offsets = Vec::new();
        let mut segments = Vec::new();
        self.added.split_raw(text, &mut segments);
        let mut spans = Vec::new();
        for seg in segments {
            match seg {
                Segment::Token(id, s) => {
                    let a = s.as_ptr() as usize - base;
                    ids.push(id);
                    offsets.push(to_chars(a, a + s.len()));
                }
                Segment::Text(t) => {
                    let seg_base = t.as_ptr() as usize - base;
                    let (norm, nmap) = self.normalizer.apply_aligned(t);
                    if norm.is_empty() {
                        continue;
                    }
                    // Normalized bytes [a, b) -> bytes of `text`.
                    let nlast = nmap.len() - 1;
                    let to_text = |a: usize, b: usize| -> (usize, usize) {
                        let ta = nmap[a.min(nlast)].0;
                        let tb = nmap[b.saturating_sub(1).min(nlast)].1.max(ta);
                        (seg_base + ta, seg_base + tb)
                    };
                    let mut inner = Vec::new();
                    self.added.split_normalized(&norm, &mut inner);
                    for part in inner.drain(..) {
                        let (part_text, part_base) = match part {
                            Segment::Token(id, s) => {
                                let a = s.as_ptr() as usize - norm.as_ptr() as usize;
                                let (ta, tb) = to_text(a, a + s.len());
                                ids.push(id);
                                offsets.push(to_chars(ta, tb));
                                continue;
                            }
                            Segment::Text(p) => (p, p.as_ptr() as usize - norm.as_ptr() as usize),
                        };
                        // HF: the piece begins at original offset 0 (see `starts_at_origin`).
                        let at_start = seg_base == 0 && part_base == 0 && nmap[0].0 == 0;
                        for (piece, pmap) in
                            self.pre_tokenizer.pieces_with_spans(part_text, at_start)
                        {
                            spans.clear();
                            self.model.encode_with_spans(&piece, &mut ids, &mut spans);
                            let last = piece.len().saturating_sub(1);
                            for &(a, b) in &spans {
                                let (pa, pb) =
                                    (a.min(last), b.max(a + 1).saturating_sub(1).min(last));
                                let (na, nb) = (pmap[pa].0, pmap[pb].1);
                                let (ta, tb) = to_text(part_base + na, part_base + nb);
                                offsets.push(to_chars(ta, tb));
                            }
                        }
                    }
                }
            }
        }
        (ids, offsets)
    }

    /// Trims the offsets of a body (after truncation: HF trims in its
    /// post-processor, where the first kept token counts as the first),
    /// when the post-processor says so; with or without special tokens, as in HF.
    /// An added token's string is the text it matched (HF's `Token.value`):
    /// with lstrip/rstrip that holds the spaces it ate, which are trimmed too.
    pub(crate) fn trim_body(&self, text: &str, ids: &[u32], offsets: &mut [(usize, usize)]) {
        let Some(add_prefix_space) = self.post_processor.offset_trim() else {
            return;
        };
        let matched = added_token_texts(text, ids, offsets, |id| self.added.by_id(id).is_some());
        let tokens = ids.iter().enumerate().map(|(i, &id)| match &matched[i] {
            Some(s) => s.as_str(),
            None => self.id_to_token(id).unwrap_or(""),
        });
        trim_offsets(tokens, offsets, add_prefix_space);
    }

    /// Ids -> text. Unknown ids are skipped, as HF does. As in HF, a token
    /// is skipped when the string it decodes from is a special token's
    /// content: a `normalized` special token the normalizer changes (Llama-2's
    /// "<s>" -> "▁<s>") decodes from its normalized form and is kept.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> String {
        let mut tokens: Vec<&str> = Vec::with_capacity(ids.len());
        for &id in ids {
            let Some(t) = self
                .added
                .text_of(id)
                .or_else(|| self.model.id_to_token(id))
            else {
                continue;
            };
            if !(skip_special_tokens && self.is_special(t)) {
                tokens.push(t);
            }
        }
        self.decoder.decode(&tokens)
    }

    fn is_special(&self, token: &str) -> bool {
        self.added.by_content(token).is_some_and(|t| t.special)
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.added
            .by_content(token)
            .map(|t| t.id)
            .or_else(|| self.model.token_to_id(token))
    }

    pub fn id_to_token(&self, id: u32) -> Option<&str> {
        self.added
            .text_of(id)
            .or_else(|| self.model.id_to_token(id))
    }

    /// Distinct tokens in the model vocab and the added tokens (HF's
    /// `get_vocab_size(with_added_tokens=True)`).
    pub fn vocab_size(&self) -> usize {
        let extra = self
            .added
            .tokens
            .iter()
            .filter(|t| self.model.token_to_id(&t.content).is_none())
            .count();
        self.model.vocab_len() + extra
    }

    /// One more than the largest id in use (the embedding table size).
    pub fn max_id_plus_one(&self) -> usize {
        let model_max = self.model.id_upper_bound();
        let added_max = self
            .added
            .tokens
            .iter()
            .map(|t| t.id as usize + 1)
            .max()
            .unwrap_or(0);
        model_max.max(added_max)
    }

    pub fn check_ids(&self, ids: &[u32]) -> Result<()> {
        for &id in ids {
            if self.id_to_token(id).is_none() {
                return Err(Error::Invalid(format!("id {id} is not in the vocabulary")));
            }
        }
        Ok(())
    }
}

/// For each id that `is_added`, the chars of `text` its offsets cover.
fn added_token_texts(
    text: &str,
    ids: &[u32],
    offsets: &[(usize, usize)],
    is_added: impl Fn(u32) -> bool,
) -> Vec<Option<String>> {
    let mut out = vec![None; ids.len()];
    if !ids.iter().any(|&id| is_added(id)) {
        return out;
    }
    let chars: Vec<char> = text.chars().collect();
    for (i, (&id, &(a, b))) in ids.iter().zip(offsets).enumerate() {
        if is_added(id) {
            let (a, b) = (a.min(chars.len()), b.min(chars.len()));
            out[i] = Some(chars[a..b.max(a)].iter().collect());
        }
    }
    out
}
