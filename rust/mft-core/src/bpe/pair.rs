//! Encoding a text pair (or one text with its type ids), laid out by the
//! post-processor's `pair` (or `single`) template as HF lays it out.
//!
//! HF applies the template's order and type ids even without special
//! tokens (only the specials are left out), and drops a sequence the
//! template does not name. Without a template, A gets type id 0 and B 1,
//! concatenated. The file's `truncation` cuts A and B by its strategy
//! before the layout (`Limits::pair_lengths`) and its `padding` pads the
//! result (pads get `pad_type_id`), as HF's `post_process` does.

use super::components::TemplatePiece;
use super::error::Result;
use super::tokenizer::Tokenizer;
use rayon::prelude::*;

/// One encoded text or pair: ids, their type ids and, if asked for, their
/// char offsets (into A or into B; special tokens get (0, 0)).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PairEncoding {
    pub ids: Vec<u32>,
    pub type_ids: Vec<u32>,
    pub offsets: Option<Vec<(usize, usize)>>,
}

/// One sequence's ids and, if asked for, their offsets.
pub(super) type Body = (Vec<u32>, Option<Vec<(usize, usize)>>);

impl Tokenizer {
    /// `a` (and `b`, if given) encoded, cut by the file's truncation, laid
    /// out by the template and padded by the file's padding.
    pub fn encode_pair(
        &self,
        a: &str,
        b: Option<&str>,
        add_special_tokens: bool,
        with_offsets: bool,
    ) -> Result<PairEncoding> {
        let mut first = self.pair_body(a, with_offsets);
        let mut second = b.map(|t| self.pair_body(t, with_offsets));
        let n_added = if add_special_tokens {
            self.post_processor.n_added(second.is_some())
        } else {
            0
        };
        let lengths =
            self.limits
                .pair_lengths(first.0.len(), second.as_ref().map(|s| s.0.len()), n_added)?;
        if let Some((ka, kb)) = lengths {
            self.limits.cut(&mut first.0, first.1.as_mut(), ka);
            if let (Some(s), Some(kb)) = (second.as_mut(), kb) {
                self.limits.cut(&mut s.0, s.1.as_mut(), kb);
            }
        }
        for (part, text) in std::iter::once((&mut first, a)).chain(second.as_mut().zip(b)) {
            if let Some(o) = part.1.as_mut() {
                self.trim_body(text, &part.0, o);
            }
        }
        let mut out = self.lay_out(first, second, add_special_tokens, with_offsets, [false; 2]);
        if let Some(n) = self.limits.pad_length(out.ids.len(), 0) {
            self.pad_pair(&mut out, n);
        }
        Ok(out)
    }

    /// One sequence's ids (and untrimmed offsets), before any template.
    pub(super) fn pair_body(&self, t: &str, with_offsets: bool) -> Body {
        if with_offsets {
            let (ids, offsets) = self.body_with_offsets(t);
            (ids, Some(offsets))
        } else {
            let mut ids = Vec::with_capacity(t.len() / 3 + 2);
            self.body_ids(t, &mut ids);
            (ids, None)
        }
    }

    /// Pads one encoding to `n` ids (type ids `pad_type_id`, offsets (0, 0)).
    pub(super) fn pad_pair(&self, out: &mut PairEncoding, n: usize) {
        let Some(p) = &self.limits.padding else {
            return;
        };
        let extra = n.saturating_sub(out.ids.len());
        let at = if p.left { 0 } else { out.type_ids.len() };
        out.type_ids
            .splice(at..at, std::iter::repeat_n(p.pad_type_id, extra));
        self.limits.pad(&mut out.ids, out.offsets.as_mut(), n);
    }

    /// The bodies of A (and B) with the template's special tokens around them.
    /// `raw[k]`: sequence k keeps the encoder's type id (A 0, B 1) instead
    /// of the template's (an overflowing window, see `OverflowTypes`).
    pub(super) fn lay_out(
        &self,
        first: Body,
        second: Option<Body>,
        add_special_tokens: bool,
        with_offsets: bool,
        raw: [bool; 2],
    ) -> PairEncoding {
        let mut out = PairEncoding {
            offsets: with_offsets.then(Vec::new),
            ..PairEncoding::default()
        };
        let Some(template) = self.post_processor.template() else {
            push_body(&mut out, first, 0);
            if let Some(s) = second {
                push_body(&mut out, s, 1);
            }
            return out;
        };
        let pieces = if second.is_some() {
            &template.pair
        } else {
            &template.single
        };
        let (mut first, mut second) = (Some(first), second);
        for piece in pieces {
            match piece {
                TemplatePiece::Special(ids, type_id) => {
                    if add_special_tokens {
                        out.ids.extend_from_slice(ids);
                        out.type_ids
                            .extend(std::iter::repeat_n(*type_id, ids.len()));
                        if let Some(o) = out.offsets.as_mut() {
                            o.extend(std::iter::repeat_n((0, 0), ids.len()));
                        }
                    }
                }
                TemplatePiece::Sequence {
                    second: is_b,
                    type_id,
                } => {
                    let part = if *is_b { second.take() } else { first.take() };
                    let type_id = if raw[usize::from(*is_b)] {
                        u32::from(*is_b)
                    } else {
                        *type_id
                    };
                    if let Some(part) = part {
                        push_body(&mut out, part, type_id);
                    }
                }
            }
        }
        out
    }

    /// `encode_pair` over many items on the pool, in order; "BatchLongest"
    /// padding then pads them to the longest.
    pub fn encode_pair_batch<S: AsRef<str> + Sync>(
        &self,
        items: &[(S, Option<S>)],
        add_special_tokens: bool,
        with_offsets: bool,
    ) -> Result<Vec<PairEncoding>> {
        let mut rows: Vec<PairEncoding> = crate::bpe::pool().install(|| {
            items
                .par_iter()
                .map(|(a, b)| {
                    self.encode_pair(
                        a.as_ref(),
                        b.as_ref().map(|s| s.as_ref()),
                        add_special_tokens,
                        with_offsets,
                    )
                })
                .collect::<Result<_>>()
        })?;
        let longest = rows.iter().map(|r| r.ids.len()).max().unwrap_or(0);
        for r in rows.iter_mut() {
            if let Some(n) = self.limits.pad_length(r.ids.len(), longest) {
                self.pad_pair(r, n);
            }
        }
        Ok(rows)
    }
}

fn push_body(out: &mut PairEncoding, (ids, offsets): Body, type_id: u32) {
    out.type_ids.extend(std::iter::repeat_n(type_id, ids.len()));
    out.ids.extend_from_slice(&ids);
    if let (Some(o), Some(new)) = (out.offsets.as_mut(), offsets) {
        o.extend(new);
    }
}
