//! Encoding a text pair (or one text with its type ids), laid out by the
//! post-processor's `pair` (or `single`) template as HF lays it out.
//!
//! HF applies the template's order and type ids even without special
//! tokens (only the specials are left out), and drops a sequence the
//! template does not name. Without a template, A gets type id 0 and B 1,
//! concatenated.

use super::components::TemplatePiece;
use super::error::{Error, Result};
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

type Body = (Vec<u32>, Option<Vec<(usize, usize)>>);

impl Tokenizer {
    /// `a` (and `b`, if given) encoded and laid out by the template.
    pub fn encode_pair(
        &self,
        a: &str,
        b: Option<&str>,
        add_special_tokens: bool,
        with_offsets: bool,
    ) -> Result<PairEncoding> {
        if !self.limits.is_none() {
            return Err(Error::Unsupported(
                "type ids and text pairs are not supported with the tokenizer.json's own truncation/padding; set them to null in the file".into(),
            ));
        }
        let body = |t: &str| -> Body {
            if with_offsets {
                let (ids, offsets) = self.body_with_offsets(t);
                (ids, Some(offsets))
            } else {
                let mut ids = Vec::with_capacity(t.len() / 3 + 2);
                self.body_ids(t, &mut ids);
                (ids, None)
            }
        };
        let first = body(a);
        let second = b.map(body);
        let mut out = PairEncoding {
            offsets: with_offsets.then(Vec::new),
            ..PairEncoding::default()
        };
        let Some(template) = self.post_processor.template() else {
            push_body(&mut out, first, 0);
            if let Some(s) = second {
                push_body(&mut out, s, 1);
            }
            return Ok(out);
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
                    if let Some(part) = part {
                        push_body(&mut out, part, *type_id);
                    }
                }
            }
        }
        Ok(out)
    }

    /// `encode_pair` over many items on the pool, in order.
    pub fn encode_pair_batch<S: AsRef<str> + Sync>(
        &self,
        items: &[(S, Option<S>)],
        add_special_tokens: bool,
        with_offsets: bool,
    ) -> Result<Vec<PairEncoding>> {
        crate::bpe::pool().install(|| {
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
                .collect()
        })
    }
}

fn push_body(out: &mut PairEncoding, (ids, offsets): Body, type_id: u32) {
    out.type_ids.extend(std::iter::repeat_n(type_id, ids.len()));
    out.ids.extend_from_slice(&ids);
    if let (Some(o), Some(new)) = (out.offsets.as_mut(), offsets) {
        o.extend(new);
    }
}
