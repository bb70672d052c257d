//! The `model` (BPE vocab, merges, options) and `added_tokens` sections.

use super::values::*;
use crate::bpe::added::{AddedToken, AddedVocab};
use crate::bpe::error::{Error, Result};
use crate::bpe::model::{BpeModel, BpeOptions};
use serde_json::Value;

pub(super) fn parse_model(v: &Value) -> Result<BpeModel> {
    let obj = as_object(v, "model")?;
    if let Some(t) = obj.get("type") {
        let t = as_str(t, "model.type")?;
        if t != "BPE" {
            return Err(Error::Unsupported(format!(
                "unsupported model type {t:?} (mft implements only \"BPE\")"
            )));
        }
    }
    match obj.get("dropout") {
        None | Some(Value::Null) => {}
        Some(Value::Number(n)) if n.as_f64() == Some(0.0) => {}
        Some(v) => {
            return Err(Error::Unsupported(format!(
                "model.dropout is {v}; mft supports only null (no BPE dropout)"
            )))
        }
    }
    let options = BpeOptions {
        unk_token: opt_string(obj, "unk_token", "model")?,
        continuing_subword_prefix: opt_string(obj, "continuing_subword_prefix", "model")?,
        end_of_word_suffix: opt_string(obj, "end_of_word_suffix", "model")?,
        fuse_unk: opt_bool(obj, "fuse_unk", "model", false)?,
        byte_fallback: opt_bool(obj, "byte_fallback", "model", false)?,
        ignore_merges: opt_bool(obj, "ignore_merges", "model", false)?,
    };
    let vocab_obj = as_object(
        obj.get("vocab").ok_or_else(|| missing("model.vocab"))?,
        "model.vocab",
    )?;
    let mut vocab = Vec::with_capacity(vocab_obj.len());
    for (tok, id) in vocab_obj {
        vocab.push((tok.clone(), as_id(id, &format!("model.vocab[{tok:?}]"))?));
    }
    let no_merges = Value::Array(vec![]);
    let merges_v = as_array(obj.get("merges").unwrap_or(&no_merges), "model.merges")?;
    let mut merges = Vec::with_capacity(merges_v.len());
    for (i, m) in merges_v.iter().enumerate() {
        let at = format!("model.merges[{i}]");
        let pair = match m {
            Value::String(s) => {
                let parts: Vec<&str> = s.split(' ').collect();
                if parts.len() != 2 {
                    return Err(bad(
                        &at,
                        "\"left right\" (two tokens separated by one space)",
                        m,
                    ));
                }
                (parts[0].to_string(), parts[1].to_string())
            }
            Value::Array(a) if a.len() == 2 => (
                as_str(&a[0], &at)?.to_string(),
                as_str(&a[1], &at)?.to_string(),
            ),
            _ => return Err(bad(&at, "\"left right\" or [\"left\", \"right\"]", m)),
        };
        merges.push(pair);
    }
    BpeModel::new(vocab, merges, options)
}

pub(super) fn parse_added(v: &Value) -> Result<AddedVocab> {
    let mut tokens = Vec::new();
    if !v.is_null() {
        for (i, t) in as_array(v, "added_tokens")?.iter().enumerate() {
            let at = format!("added_tokens[{i}]");
            let obj = as_object(t, &at)?;
            let content = as_str(
                obj.get("content")
                    .ok_or_else(|| missing(&format!("{at}.content")))?,
                &format!("{at}.content"),
            )?;
            tokens.push(AddedToken {
                id: as_id(
                    obj.get("id").ok_or_else(|| missing(&format!("{at}.id")))?,
                    &format!("{at}.id"),
                )?,
                content: content.to_string(),
                single_word: opt_bool(obj, "single_word", &at, false)?,
                lstrip: opt_bool(obj, "lstrip", &at, false)?,
                rstrip: opt_bool(obj, "rstrip", &at, false)?,
                normalized: opt_bool(obj, "normalized", &at, true)?,
                special: opt_bool(obj, "special", &at, false)?,
            });
        }
    }
    AddedVocab::new(tokens)
}
