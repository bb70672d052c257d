//! Reading HF `tokenizer.json` files (the BPE subset real checkpoints use).
//!
//! Every error names the JSON path of the bad value; `from_file` prefixes
//! the file name. Components mft does not implement are refused by name
//! rather than silently encoding differently from HF.

mod model;
mod post_stages;
mod pre_stages;
mod values;

use super::error::{Error, Result};
use super::limits::Limits;
use super::models::Model;
use super::tokenizer::{RawStages, Tokenizer};
use model::{parse_added, parse_model};
use post_stages::{parse_decoder, parse_post_processor};
use pre_stages::{parse_normalizer, parse_pre_tokenizer};
use serde_json::Value;
use std::path::Path;
use values::{as_object, missing};

pub fn from_file(path: &Path) -> Result<Tokenizer> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Io(format!("cannot read tokenizer file {shown}: {e}")))?;
    from_json_str(&text).map_err(|e| match e {
        Error::Format(m) => Error::Format(format!("{shown}: {m}")),
        Error::Unsupported(m) => Error::Unsupported(format!("{shown}: {m}")),
        other => other,
    })
}

pub fn from_json_str(text: &str) -> Result<Tokenizer> {
    let root: Value =
        serde_json::from_str(text).map_err(|e| Error::Format(format!("not valid JSON: {e}")))?;
    let root = as_object(&root, "the top level")?;
    let model_v = root.get("model").ok_or_else(|| missing("model"))?;
    let mut model = parse_model(model_v)?;
    let null = Value::Null;
    let raw = RawStages {
        normalizer: root.get("normalizer").unwrap_or(&null).clone(),
        pre_tokenizer: root.get("pre_tokenizer").unwrap_or(&null).clone(),
        post_processor: root.get("post_processor").unwrap_or(&null).clone(),
        decoder: root.get("decoder").unwrap_or(&null).clone(),
        model: if matches!(model, Model::Bpe(_)) {
            Value::Null
        } else {
            model_v.clone()
        },
        truncation: root.get("truncation").unwrap_or(&null).clone(),
        padding: root.get("padding").unwrap_or(&null).clone(),
    };
    let normalizer = parse_normalizer(&raw.normalizer)?;
    let added = parse_added(
        root.get("added_tokens").unwrap_or(&Value::Null),
        &normalizer,
        &model,
    )?;
    let pre_tokenizer = parse_pre_tokenizer(&raw.pre_tokenizer, "pre_tokenizer")?;
    if let Model::Bpe(m) = &mut model {
        m.set_byte_level(pre_tokenizer.is_byte_level());
    }
    let limits = Limits::parse(&raw.truncation, &raw.padding)?;
    Ok(Tokenizer {
        limits,
        normalizer,
        pre_tokenizer,
        post_processor: parse_post_processor(&raw.post_processor, "post_processor")?,
        decoder: parse_decoder(&raw.decoder, "decoder")?,
        model,
        added,
        raw,
    })
}
