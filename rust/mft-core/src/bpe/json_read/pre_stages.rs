//! The `normalizer` and `pre_tokenizer` sections.

use super::values::*;
use crate::bpe::components::{NormStep, Normalizer, PreStep, PreTokenizer, PrependScheme};
use crate::bpe::error::{Error, Result};
use serde_json::{Map, Value};

pub(super) fn parse_normalizer(v: &Value) -> Result<Normalizer> {
    let mut steps = Vec::new();
    if !v.is_null() {
        parse_norm_step(v, "normalizer", &mut steps)?;
    }
    Ok(Normalizer { steps })
}

pub(super) fn parse_norm_step(v: &Value, at: &str, steps: &mut Vec<NormStep>) -> Result<()> {
    let obj = as_object(v, at)?;
    match type_of(obj, at)? {
        "NFC" => steps.push(NormStep::Nfc),
        "Prepend" => {
            let p = as_str(obj.get("prepend").ok_or_else(|| missing(&format!("{at}.prepend")))?, &format!("{at}.prepend"))?;
            steps.push(NormStep::Prepend(p.to_string()));
        }
        "Replace" => {
            let content = as_str(obj.get("content").ok_or_else(|| missing(&format!("{at}.content")))?, &format!("{at}.content"))?;
            steps.push(NormStep::Replace {
                pattern: string_pattern(obj, at)?,
                content: content.to_string(),
            });
        }
        "Sequence" => {
            let key = format!("{at}.normalizers");
            let list = as_array(obj.get("normalizers").ok_or_else(|| missing(&key))?, &key)?;
            for (i, n) in list.iter().enumerate() {
                parse_norm_step(n, &format!("{key}[{i}]"), steps)?;
            }
        }
        t => {
            return Err(Error::Unsupported(format!(
                "unsupported {at} type {t:?} (mft supports NFC, Prepend, Replace with a string pattern, Sequence of these, or null)"
            )))
        }
    }
    Ok(())
}

pub(super) fn parse_pre_tokenizer(v: &Value, at: &str) -> Result<PreTokenizer> {
    let mut steps = Vec::new();
    if !v.is_null() {
        parse_pre_step(v, at, &mut steps)?;
    }
    Ok(PreTokenizer { steps })
}

pub(super) fn parse_pre_step(v: &Value, at: &str, steps: &mut Vec<PreStep>) -> Result<()> {
    let obj = as_object(v, at)?;
    match type_of(obj, at)? {
        "ByteLevel" => steps.push(PreStep::ByteLevel {
            add_prefix_space: opt_bool(obj, "add_prefix_space", at, true)?,
            trim_offsets: opt_bool(obj, "trim_offsets", at, true)?,
            use_regex: opt_bool(obj, "use_regex", at, true)?,
        }),
        "Split" => steps.push(parse_split(obj, at)?),
        "Metaspace" => {
            let rep_at = format!("{at}.replacement");
            let rep = as_str(obj.get("replacement").unwrap_or(&Value::String("\u{2581}".into())), &rep_at)?.to_string();
            let mut chars = rep.chars();
            let replacement = match (chars.next(), chars.next()) {
                (Some(c), None) => c,
                _ => return Err(Error::Unsupported(format!("{rep_at}: {rep:?} must be one character"))),
            };
            let prepend = match obj.get("prepend_scheme") {
                Some(Value::String(s)) => match s.as_str() {
                    "always" => PrependScheme::Always,
                    "first" => PrependScheme::First,
                    "never" => PrependScheme::Never,
                    other => return Err(bad(&format!("{at}.prepend_scheme"), "\"always\", \"first\" or \"never\"", &Value::String(other.into()))),
                },
                _ => {
                    if opt_bool(obj, "add_prefix_space", at, true)? {
                        PrependScheme::Always
                    } else {
                        PrependScheme::Never
                    }
                }
            };
            steps.push(PreStep::Metaspace {
                replacement,
                prepend,
                split: opt_bool(obj, "split", at, true)?,
            });
        }
        "Sequence" => {
            let key = format!("{at}.pretokenizers");
            let list = as_array(obj.get("pretokenizers").ok_or_else(|| missing(&key))?, &key)?;
            for (i, p) in list.iter().enumerate() {
                parse_pre_step(p, &format!("{key}[{i}]"), steps)?;
            }
        }
        t => {
            return Err(Error::Unsupported(format!(
                "unsupported {at} type {t:?} (mft supports ByteLevel, Metaspace, Split with behavior Isolated, Sequence of these, or null)"
            )))
        }
    }
    Ok(())
}

pub(super) fn parse_split(obj: &Map<String, Value>, at: &str) -> Result<PreStep> {
    let behavior = as_str(
        obj.get("behavior").unwrap_or(&Value::Null),
        &format!("{at}.behavior"),
    )?;
    if behavior != "Isolated" || opt_bool(obj, "invert", at, false)? {
        return Err(Error::Unsupported(format!(
            "unsupported {at}: Split with behavior {behavior:?} (mft supports \"Isolated\" without invert)"
        )));
    }
    let pat_at = format!("{at}.pattern");
    let pattern = as_object(obj.get("pattern").ok_or_else(|| missing(&pat_at))?, &pat_at)?;
    let source = if let Some(r) = pattern.get("Regex") {
        as_str(r, &format!("{pat_at}.Regex"))?.to_string()
    } else if let Some(s) = pattern.get("String") {
        fancy_regex::escape(as_str(s, &format!("{pat_at}.String"))?).into_owned()
    } else {
        return Err(bad(
            &pat_at,
            "{\"Regex\": ...} or {\"String\": ...}",
            &Value::Object(pattern.clone()),
        ));
    };
    let re = fancy_regex::Regex::new(&source).map_err(|e| {
        Error::Unsupported(format!("{pat_at}: cannot compile regex {source:?}: {e}"))
    })?;
    Ok(PreStep::SplitIsolated(Box::new(re)))
}
