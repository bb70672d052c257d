//! The `truncation` and `padding` sections of tokenizer.json, applied as HF
//! applies them to one text: the text's ids are cut so that they plus the
//! template's special tokens fit `max_length`, then the whole is padded to a
//! fixed length (or, for a batch, to its longest row; see `pad_batch`).

use super::error::{Error, Result};
use serde_json::{Map, Value};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Truncation {
    pub max_length: usize,
    /// Keep the last tokens instead of the first.
    pub left: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Padding {
    /// `Some(n)`: every text to n ids; None: a batch to its longest text.
    pub fixed: Option<usize>,
    pub multiple_of: Option<usize>,
    pub pad_id: u32,
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
            Error::Format(format!("{at}.{key}: expected a non-negative integer, got {v}"))
        }),
    }
}

impl Limits {
    pub fn parse(truncation: &Value, padding: &Value) -> Result<Limits> {
        let mut out = Limits::default();
        if let Some(obj) = truncation.as_object() {
            let at = "truncation";
            let max_length = count(obj, "max_length", at)?
                .ok_or_else(|| Error::Format("missing \"truncation.max_length\"".into()))?;
            if let Some(Value::String(s)) = obj.get("strategy") {
                if s == "OnlySecond" {
                    return Err(Error::Unsupported(
                        "truncation.strategy \"OnlySecond\" needs a text pair; mft encodes single texts (use \"LongestFirst\" or \"OnlyFirst\")".into(),
                    ));
                }
            }
            out.truncation = Some(Truncation {
                max_length,
                left: direction(obj, at)?,
            });
        } else if !truncation.is_null() {
            return Err(Error::Format(format!("truncation: expected an object or null, got {truncation}")));
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
            out.padding = Some(Padding {
                fixed,
                multiple_of: count(obj, "pad_to_multiple_of", at)?.filter(|&m| m > 0),
                pad_id: u32::try_from(pad_id)
                    .map_err(|_| Error::Format(format!("padding.pad_id: {pad_id} is not a token id")))?,
                left: direction(obj, at)?,
            });
        } else if !padding.is_null() {
            return Err(Error::Format(format!("padding: expected an object or null, got {padding}")));
        }
        Ok(out)
    }

    pub fn is_none(&self) -> bool {
        self.truncation.is_none() && self.padding.is_none()
    }

    /// Cuts `body` (the text's ids, `n_added` template ids around it) to fit
    /// `max_length`; `offsets` (if any) follow.
    pub fn truncate<T>(&self, body: &mut Vec<u32>, offsets: Option<&mut Vec<T>>, n_added: usize) {
        let Some(t) = &self.truncation else { return };
        let keep = t.max_length.saturating_sub(n_added);
        if body.len() <= keep {
            return;
        }
        let cut = |v: &mut Vec<_>| {
            if t.left {
                v.drain(..v.len() - keep);
            } else {
                v.truncate(keep);
            }
        };
        cut(body);
        if let Some(o) = offsets {
            if t.left {
                o.drain(..o.len() - keep);
            } else {
                o.truncate(keep);
            }
        }
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
