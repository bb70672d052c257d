//! The `truncation` and `padding` sections of tokenizer.json, applied as HF
//! applies them to one text: the text's ids are cut so that they plus the
//! template's special tokens fit `max_length`, then the whole is padded to a
//! fixed length (or, for a batch, to its longest row; see `pad_batch`).
//! A text pair is cut by the section's `strategy` as HF's
//! `truncate_encodings` cuts it (`pair_lengths`). `stride` shapes HF's
//! overflowing windows (`overflow.rs`); it is checked as HF checks it.

use super::error::{Error, Result};
use serde_json::{Map, Value};

/// Which sequence of a pair gives up tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// The longer one (both, once they are equally long).
    LongestFirst,
    OnlyFirst,
    OnlySecond,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Truncation {
    pub max_length: usize,
    /// Keep the last tokens instead of the first.
    pub left: bool,
    pub strategy: Strategy,
    pub stride: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Padding {
    /// `Some(n)`: every text to n ids; None: a batch to its longest text.
    pub fixed: Option<usize>,
    pub multiple_of: Option<usize>,
    pub pad_id: u32,
    /// The type id pads get in a pair encoding.
    pub pad_type_id: u32,
    pub left: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    pub truncation: Option<Truncation>,
    pub padding: Option<Padding>,
}

fn direction(obj: &Map<String, Value>, at: &str) -> Result<bool> {
    match obj.get("direction") {
        None | Some(Value::Null) => Ok(false),
        Some(Value::String(s)) if s == "Right" => Ok(false),
        Some(Value::String(s)) if s == "Left" => Ok(true),
        Some(v) => Err(Error::Format(format!(
            "{at}.direction: expected \"Right\" or \"Left\", got {v}"
        ))),
    }
}

fn count(obj: &Map<String, Value>, key: &str, at: &str) -> Result<Option<usize>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(|n| Some(n as usize)).ok_or_else(|| {
            Error::Format(format!(
                "{at}.{key}: expected a non-negative integer, got {v}"
            ))
        }),
    }
}

fn too_short(t: &Truncation, which: &str, len: usize, to_remove: usize) -> Error {
    Error::Invalid(format!(
        "truncation (strategy {:?}, max_length {}): the {which} sequence has {len} tokens, too few to remove the {to_remove} over the limit (as HF: \"Sequence to truncate too short\")",
        t.strategy, t.max_length
    ))
}

impl Limits {
    pub fn parse(truncation: &Value, padding: &Value) -> Result<Limits> {
        let mut out = Limits::default();
        if let Some(obj) = truncation.as_object() {
            let at = "truncation";
            let max_length = count(obj, "max_length", at)?
                .ok_or_else(|| Error::Format("missing \"truncation.max_length\"".into()))?;
            let strategy = match obj.get("strategy") {
                None | Some(Value::Null) => Strategy::LongestFirst,
                Some(Value::String(s)) if s == "LongestFirst" => Strategy::LongestFirst,
                Some(Value::String(s)) if s == "OnlyFirst" => Strategy::OnlyFirst,
                Some(Value::String(s)) if s == "OnlySecond" => Strategy::OnlySecond,
                Some(v) => {
                    return Err(Error::Format(format!(
                        "truncation.strategy: expected \"LongestFirst\", \"OnlyFirst\" or \"OnlySecond\", got {v}"
                    )))
                }
            };
            out.truncation = Some(Truncation {
                max_length,
                left: direction(obj, at)?,
                strategy,
                stride: count(obj, "stride", at)?.unwrap_or(0),
            });
        } else if !truncation.is_null() {
            return Err(Error::Format(format!(
                "truncation: expected an object or null, got {truncation}"
            )));
        }
        if let Some(obj) = padding.as_object() {
            let at = "padding";
            let fixed = match obj.get("strategy") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) if s == "BatchLongest" => None,
                Some(Value::Object(f)) if f.contains_key("Fixed") => {
                    count(f, "Fixed", "padding.strategy")?
                }
                Some(v) => {
                    return Err(Error::Format(format!(
                        "padding.strategy: expected \"BatchLongest\" or {{\"Fixed\": n}}, got {v}"
                    )))
                }
            };
            let pad_id = count(obj, "pad_id", at)?.unwrap_or(0);
            let pad_type_id = count(obj, "pad_type_id", at)?.unwrap_or(0);
            out.padding = Some(Padding {
                fixed,
                multiple_of: count(obj, "pad_to_multiple_of", at)?.filter(|&m| m > 0),
                pad_id: u32::try_from(pad_id).map_err(|_| {
                    Error::Format(format!("padding.pad_id: {pad_id} is not a token id"))
                })?,
                pad_type_id: u32::try_from(pad_type_id).map_err(|_| {
                    Error::Format(format!("padding.pad_type_id: {pad_type_id} is too large"))
                })?,
                left: direction(obj, at)?,
            });
        } else if !padding.is_null() {
            return Err(Error::Format(format!(
                "padding: expected an object or null, got {padding}"
            )));
        }
        Ok(out)
    }

    pub fn is_none(&self) -> bool {
        self.truncation.is_none() && self.padding.is_none()
    }

    /// Cuts `body` (the text's ids, `n_added` template ids around it) to fit
    /// `max_length`; `offsets` (if any) follow. Errors as HF's do (an
    /// "OnlySecond" file given one text that needs cutting; `stride` not
    /// below what is kept).
    pub fn truncate<T>(
        &self,
        body: &mut Vec<u32>,
        offsets: Option<&mut Vec<T>>,
        n_added: usize,
    ) -> Result<()> {
        if let Some((keep, _)) = self.pair_lengths(body.len(), None, n_added)? {
            self.cut(body, offsets, keep);
        }
        Ok(())
    }

    /// Keeps `keep` items of `v` (and of `offsets`), from the truncation's side.
    pub fn cut<T>(&self, v: &mut Vec<u32>, offsets: Option<&mut Vec<T>>, keep: usize) {
        let left = self.truncation.as_ref().is_some_and(|t| t.left);
        fn cut_one<X>(v: &mut Vec<X>, keep: usize, left: bool) {
            if v.len() <= keep {
                return;
            }
            if left {
                v.drain(..v.len() - keep);
            } else {
                v.truncate(keep);
            }
        }
        cut_one(v, keep, left);
        if let Some(o) = offsets {
            cut_one(o, keep, left);
        }
    }

    /// What HF's `truncate_encodings` leaves of a text of `a` ids and its
    /// pair's `b` ids, `n_added` template ids around them: None when nothing
    /// is cut, else the lengths to keep. A template longer than
    /// `max_length` leaves both whole (HF subtracts and skips); a budget of
    /// 0 empties both, whatever the strategy.
    pub fn pair_lengths(
        &self,
        a: usize,
        b: Option<usize>,
        n_added: usize,
    ) -> Result<Option<(usize, Option<usize>)>> {
        let Some(t) = &self.truncation else {
            return Ok(None);
        };
        let Some(max) = t.max_length.checked_sub(n_added) else {
            return Ok(None);
        };
        if max == 0 {
            return Ok(Some((0, b.map(|_| 0))));
        }
        let total = a + b.unwrap_or(0);
        if total <= max {
            return Ok(None);
        }
        let to_remove = total - max;
        let (ka, kb) = match (t.strategy, b) {
            (Strategy::LongestFirst, None) => (max, None),
            (Strategy::LongestFirst, Some(b)) => {
                let swap = a > b;
                // n1: the shorter; the longer keeps what the shorter leaves
                // (at least as much as the shorter), both halve if that is too much.
                let mut n1 = a.min(b);
                let mut n2 = if n1 > max { n1 } else { n1.max(max - n1) };
                if n1 + n2 > max {
                    n1 = max / 2;
                    n2 = n1 + max % 2;
                }
                if swap {
                    (n2, Some(n1))
                } else {
                    (n1, Some(n2))
                }
            }
            (Strategy::OnlyFirst, b) => {
                if a <= to_remove {
                    return Err(too_short(t, "first", a, to_remove));
                }
                (a - to_remove, b)
            }
            (Strategy::OnlySecond, None) => {
                return Err(Error::Invalid(format!(
                    "truncation.strategy \"OnlySecond\" (max_length {}): the text needs cutting but there is no second sequence (as HF: \"Second sequence not provided\")",
                    t.max_length
                )))
            }
            (Strategy::OnlySecond, Some(b)) => {
                if b <= to_remove {
                    return Err(too_short(t, "second", b, to_remove));
                }
                (a, Some(b - to_remove))
            }
        };
        for (len, keep) in [(a, ka), (b.unwrap_or(0), kb.unwrap_or(usize::MAX))] {
            if keep > 0 && keep < len && t.stride >= keep {
                return Err(Error::Invalid(format!(
                    "truncation.stride {} must be below the {keep} tokens a sequence keeps (max_length {} minus the template's {n_added}; HF fails the same way)",
                    t.stride, t.max_length
                )));
            }
        }
        Ok(Some((ka, kb)))
    }

    /// The length one text is padded to (`len` ids after truncation and the
    /// template), or None when it stays as it is.
    pub fn pad_length(&self, len: usize, batch_longest: usize) -> Option<usize> {
        let p = self.padding.as_ref()?;
        let mut n = p.fixed.unwrap_or(batch_longest).max(len);
        if let Some(m) = p.multiple_of {
            n = n.div_ceil(m) * m;
        }
        (n > len).then_some(n)
    }

    /// Pads `ids` (and `offsets` with (0, 0)) to `n`.
    pub fn pad(&self, ids: &mut Vec<u32>, offsets: Option<&mut Vec<(usize, usize)>>, n: usize) {
        let Some(p) = &self.padding else { return };
        let extra = n.saturating_sub(ids.len());
        if extra == 0 {
            return;
        }
        if p.left {
            ids.splice(0..0, std::iter::repeat_n(p.pad_id, extra));
            if let Some(o) = offsets {
                o.splice(0..0, std::iter::repeat_n((0, 0), extra));
            }
        } else {
            ids.extend(std::iter::repeat_n(p.pad_id, extra));
            if let Some(o) = offsets {
                o.extend(std::iter::repeat_n((0, 0), extra));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(strategy: Strategy, max_length: usize, stride: usize) -> Limits {
        Limits {
            truncation: Some(Truncation {
                max_length,
                left: false,
                strategy,
                stride,
            }),
            padding: None,
        }
    }

    #[test]
    fn longest_first_cuts_as_hf() {
        let l = |m| limits(Strategy::LongestFirst, m, 0);
        // (a, b, max) -> kept, from HF tokenizers 0.23 (truncation.cases.json).
        assert_eq!(
            l(7).pair_lengths(7, Some(8), 0).unwrap(),
            Some((3, Some(4)))
        );
        assert_eq!(
            l(7).pair_lengths(8, Some(7), 0).unwrap(),
            Some((4, Some(3)))
        );
        assert_eq!(
            l(12).pair_lengths(7, Some(8), 0).unwrap(),
            Some((6, Some(6)))
        );
        // The shorter fits in half: it stays whole, the longer takes the rest.
        assert_eq!(
            l(10).pair_lengths(2, Some(20), 0).unwrap(),
            Some((2, Some(8)))
        );
        assert_eq!(
            l(10).pair_lengths(20, Some(30), 0).unwrap(),
            Some((5, Some(5)))
        );
        assert_eq!(l(20).pair_lengths(7, Some(8), 0).unwrap(), None);
        assert_eq!(l(5).pair_lengths(9, None, 0).unwrap(), Some((5, None)));
        // Template ids count against max_length; a template longer than it
        // turns truncation off, one exactly as long empties both texts.
        assert_eq!(
            l(10).pair_lengths(7, Some(8), 3).unwrap(),
            Some((3, Some(4)))
        );
        assert_eq!(l(2).pair_lengths(7, Some(8), 3).unwrap(), None);
        assert_eq!(
            l(3).pair_lengths(7, Some(8), 3).unwrap(),
            Some((0, Some(0)))
        );
    }

    #[test]
    fn only_first_and_only_second_and_their_errors() {
        let first = limits(Strategy::OnlyFirst, 12, 0);
        assert_eq!(
            first.pair_lengths(7, Some(8), 3).unwrap(),
            Some((1, Some(8)))
        );
        let e = first.pair_lengths(7, Some(8), 5).unwrap_err().to_string();
        assert!(e.contains("first sequence has 7 tokens"), "{e}");
        let second = limits(Strategy::OnlySecond, 12, 0);
        assert_eq!(
            second.pair_lengths(7, Some(8), 3).unwrap(),
            Some((7, Some(2)))
        );
        let e = second.pair_lengths(15, None, 0).unwrap_err().to_string();
        assert!(e.contains("no second sequence"), "{e}");
        assert_eq!(second.pair_lengths(5, None, 0).unwrap(), None); // nothing to cut: no error
        let strided = limits(Strategy::LongestFirst, 4, 1);
        let e = strided.pair_lengths(7, Some(8), 3).unwrap_err().to_string();
        assert!(e.contains("stride 1"), "{e}");
        assert!(strided.pair_lengths(7, Some(8), 0).is_ok());
    }
}
