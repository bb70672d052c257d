//! Encoding with offsets: per id, the (start, end) chars of the text it
//! covers, through the normalizer's and pre-tokenizer's alignments; the
//! post-processor's `trim_offsets`; truncation and the template on top.

use super::added::Segment;
use super::error::Result;
use super::tokenizer::{IdsWithOffsets, Tokenizer};
use super::trim_offsets::trim_offsets;

impl Tokenizer {
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
