//! The `model` (BPE, WordPiece, Unigram, WordLevel) and `added_tokens` sections.

use super::values::*;
use crate::bpe::added::{AddedToken, AddedVocab};
use crate::bpe::components::Normalizer;
use crate::bpe::error::{Error, Result};
use crate::bpe::model::{BpeModel, BpeOptions};
use crate::bpe::models::{Model, Unigram, WordLevel, WordPiece};
use rustc_hash::FxHashMap;
use serde_json::{Map, Value};

pub(super) fn parse_model(v: &Value) -> Result<Model> {
    let obj = as_object(v, "model")?;
    let kind = match obj.get("type") {
        Some(t) => as_str(t, "model.type")?,
        // HF reads an untyped model by its fields.
        None if obj.contains_key("merges") => "BPE",
        None if obj.get("vocab").is_some_and(Value::is_array) => "Unigram",
        None if obj.contains_key("continuing_subword_prefix")
            || obj.contains_key("max_input_chars_per_word") =>
        {
            "WordPiece"
        }
        None if obj.contains_key("vocab") && obj.contains_key("unk_token") => "WordLevel",
        None => "BPE",
    };
    match kind {
        "BPE" => parse_bpe(obj).map(Model::Bpe),
        "WordPiece" => {
            let vocab = id_vocab(obj)?;
            Ok(Model::WordPiece(WordPiece {
                vocab_r: WordPiece::reverse(&vocab),
                vocab,
                unk_token: opt_string(obj, "unk_token", "model")?.unwrap_or_else(|| "[UNK]".into()),
                continuing_subword_prefix: opt_string(obj, "continuing_subword_prefix", "model")?
                    .unwrap_or_else(|| "##".into()),
                max_input_chars_per_word: match obj.get("max_input_chars_per_word") {
                    None | Some(Value::Null) => 100,
                    Some(n) => n.as_u64().ok_or_else(|| {
                        bad("model.max_input_chars_per_word", "a non-negative integer", n)
                    })? as usize,
                },
                cache: Default::default(),
            }))
        }
        "WordLevel" => {
            let vocab = id_vocab(obj)?;
            Ok(Model::WordLevel(WordLevel {
                vocab_r: WordLevel::reverse(&vocab),
                vocab,
                unk_token: opt_string(obj, "unk_token", "model")?.unwrap_or_else(|| "<unk>".into()),
            }))
        }
        "Unigram" => parse_unigram(obj).map(Model::Unigram),
        t => Err(Error::Unsupported(format!(
            "unsupported model type {t:?} at model.type (mft supports BPE, WordPiece, Unigram, WordLevel)"
        ))),
    }
}

/// A `{"token": id}` vocab.
fn id_vocab(obj: &Map<String, Value>) -> Result<FxHashMap<String, u32>> {
    let vocab_obj = as_object(
        obj.get("vocab").ok_or_else(|| missing("model.vocab"))?,
        "model.vocab",
    )?;
    let mut vocab = FxHashMap::default();
    for (tok, id) in vocab_obj {
        vocab.insert(tok.clone(), as_id(id, &format!("model.vocab[{tok:?}]"))?);
    }
    Ok(vocab)
}

fn parse_unigram(obj: &Map<String, Value>) -> Result<Unigram> {
    let list = as_array(
        obj.get("vocab").ok_or_else(|| missing("model.vocab"))?,
        "model.vocab",
    )?;
    let mut pieces = Vec::with_capacity(list.len());
    for (i, e) in list.iter().enumerate() {
        let at = format!("model.vocab[{i}]");
        match e.as_array().map(Vec::as_slice) {
            Some([p, score]) => {
                let score = score
                    .as_f64()
                    .ok_or_else(|| bad(&at, "[piece, score]", e))?;
                pieces.push((as_str(p, &at)?.to_string(), score));
            }
            _ => return Err(bad(&at, "[piece, score]", e)),
        }
    }
    let unk_id = match obj.get("unk_id") {
        None | Some(Value::Null) => None,
        Some(v) => {
            let id = as_id(v, "model.unk_id")?;
            if id as usize >= pieces.len() {
                return Err(Error::Format(format!(
                    "model.unk_id {id} is outside model.vocab ({} pieces)",
                    pieces.len()
                )));
            }
            Some(id)
        }
    };
    Ok(Unigram::new(
        pieces,
        unk_id,
        opt_bool(obj, "byte_fallback", "model", false)?,
    ))
}

fn parse_bpe(obj: &Map<String, Value>) -> Result<BpeModel> {
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

/// The ids HF gives the file's added tokens (tokenizers 0.23; the file's
/// own `id` is only checked by HF, with a warning): a content the model's
/// vocab has gets the model's id; any other gets the next id after the
/// model's vocab size and the added ids so far, in file order. A content
/// listed twice is one token with the later entry's flags (`special` if
/// either is: HF's set of special contents keeps the first); empty
/// contents are dropped. For real files (Llama-3, Qwen2, ... number their
/// added tokens on from the vocab) these are the file's ids.
fn resolve_added_ids(tokens: Vec<AddedToken>, model: &Model) -> Vec<AddedToken> {
    let base = model.vocab_len() as u32;
    let mut out: Vec<AddedToken> = Vec::with_capacity(tokens.len());
    let mut index: FxHashMap<String, usize> = FxHashMap::default();
    let mut max_id: Option<u32> = None;
    for mut t in tokens {
        if t.content.is_empty() {
            continue;
        }
        if let Some(&i) = index.get(&t.content) {
            t.id = out[i].id;
            t.special |= out[i].special;
            out[i] = t;
            continue;
        }
        t.id = match model.token_to_id(&t.content) {
            Some(id) => id,
            None => max_id.map_or(base, |m| m.max(base.saturating_sub(1)) + 1),
        };
        max_id = Some(max_id.map_or(t.id, |m| m.max(t.id)));
        index.insert(t.content.clone(), out.len());
        out.push(t);
    }
    out
}

pub(super) fn parse_added(v: &Value, normalizer: &Normalizer, model: &Model) -> Result<AddedVocab> {
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
    let tokens = resolve_added_ids(tokens, model);
    AddedVocab::with_normalizer(tokens, &|s: &str| normalizer.apply(s).into_owned())
}
