//! Reading HF `tokenizer.json` files (byte-level BPE subset).
//!
//! Every error names the JSON path of the bad value; `from_file` prefixes
//! the file name. Components mft does not implement are refused by name
//! rather than silently encoding differently from HF.

use super::added::{AddedToken, AddedVocab};
use super::components::{Decoder, Normalizer, PostProcessor, PreStep, PreTokenizer, TemplatePiece};
use super::error::{Error, Result};
use super::model::{BpeModel, BpeOptions};
use super::tokenizer::{RawStages, Tokenizer};
use serde_json::{Map, Value};
use std::path::Path;

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
    for key in ["truncation", "padding"] {
        if !root.get(key).unwrap_or(&Value::Null).is_null() {
            return Err(Error::Unsupported(format!(
                "\"{key}\" is set; mft's tokenizer does not truncate or pad (set it to null)"
            )));
        }
    }
    let model = parse_model(root.get("model").ok_or_else(|| missing("model"))?)?;
    let added = parse_added(root.get("added_tokens").unwrap_or(&Value::Null))?;
    let null = Value::Null;
    let raw = RawStages {
        normalizer: root.get("normalizer").unwrap_or(&null).clone(),
        pre_tokenizer: root.get("pre_tokenizer").unwrap_or(&null).clone(),
        post_processor: root.get("post_processor").unwrap_or(&null).clone(),
        decoder: root.get("decoder").unwrap_or(&null).clone(),
    };
    Ok(Tokenizer {
        normalizer: parse_normalizer(&raw.normalizer)?,
        pre_tokenizer: parse_pre_tokenizer(&raw.pre_tokenizer, "pre_tokenizer")?,
        post_processor: parse_post_processor(&raw.post_processor, "post_processor")?,
        decoder: parse_decoder(&raw.decoder, "decoder")?,
        model,
        added,
        raw,
    })
}

fn missing(what: &str) -> Error {
    Error::Format(format!("missing \"{what}\""))
}

fn bad(at: &str, expected: &str, got: &Value) -> Error {
    let mut shown = got.to_string();
    if shown.len() > 60 {
        let mut cut = 60;
        while !shown.is_char_boundary(cut) {
            cut -= 1;
        }
        shown.truncate(cut);
        shown.push_str("...");
    }
    Error::Format(format!("{at}: expected {expected}, got {shown}"))
}

fn as_object<'a>(v: &'a Value, at: &str) -> Result<&'a Map<String, Value>> {
    v.as_object().ok_or_else(|| bad(at, "an object", v))
}

fn as_array<'a>(v: &'a Value, at: &str) -> Result<&'a Vec<Value>> {
    v.as_array().ok_or_else(|| bad(at, "an array", v))
}

fn as_str<'a>(v: &'a Value, at: &str) -> Result<&'a str> {
    v.as_str().ok_or_else(|| bad(at, "a string", v))
}

fn as_id(v: &Value, at: &str) -> Result<u32> {
    v.as_u64()
        .filter(|&n| n <= u32::MAX as u64)
        .map(|n| n as u32)
        .ok_or_else(|| bad(at, "a token id (integer 0..2^32)", v))
}

/// An optional boolean (missing or null -> default).
fn opt_bool(obj: &Map<String, Value>, key: &str, at: &str, default: bool) -> Result<bool> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(v) => Err(bad(&format!("{at}.{key}"), "true or false", v)),
    }
}

fn opt_string(obj: &Map<String, Value>, key: &str, at: &str) -> Result<Option<String>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v) => Err(bad(&format!("{at}.{key}"), "a string or null", v)),
    }
}

fn type_of<'a>(obj: &'a Map<String, Value>, at: &str) -> Result<&'a str> {
    as_str(
        obj.get("type")
            .ok_or_else(|| missing(&format!("{at}.type")))?,
        &format!("{at}.type"),
    )
}

fn parse_model(v: &Value) -> Result<BpeModel> {
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

fn parse_added(v: &Value) -> Result<AddedVocab> {
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

fn parse_normalizer(v: &Value) -> Result<Normalizer> {
    if v.is_null() {
        return Ok(Normalizer::None);
    }
    let obj = as_object(v, "normalizer")?;
    match type_of(obj, "normalizer")? {
        "NFC" => Ok(Normalizer::Nfc),
        "Sequence" => {
            let list = as_array(
                obj.get("normalizers")
                    .ok_or_else(|| missing("normalizer.normalizers"))?,
                "normalizer.normalizers",
            )?;
            match list.len() {
                0 => Ok(Normalizer::None),
                1 => parse_normalizer(&list[0]),
                _ => Err(Error::Unsupported("normalizer: a Sequence of several normalizers is not supported (only null or NFC)".into())),
            }
        }
        t => Err(Error::Unsupported(format!(
            "unsupported normalizer type {t:?} (mft supports null or \"NFC\")"
        ))),
    }
}

fn parse_pre_tokenizer(v: &Value, at: &str) -> Result<PreTokenizer> {
    if v.is_null() {
        return Err(Error::Unsupported(format!(
            "{at} is null; mft's byte-level BPE needs a ByteLevel pre-tokenizer"
        )));
    }
    let mut steps = Vec::new();
    parse_pre_step(v, at, &mut steps)?;
    if !steps.iter().any(|s| matches!(s, PreStep::ByteLevel { .. })) {
        return Err(Error::Unsupported(format!(
            "{at} has no ByteLevel step; mft implements byte-level BPE only"
        )));
    }
    Ok(PreTokenizer { steps })
}

fn parse_pre_step(v: &Value, at: &str, steps: &mut Vec<PreStep>) -> Result<()> {
    let obj = as_object(v, at)?;
    match type_of(obj, at)? {
        "ByteLevel" => steps.push(PreStep::ByteLevel {
            add_prefix_space: opt_bool(obj, "add_prefix_space", at, true)?,
            trim_offsets: opt_bool(obj, "trim_offsets", at, true)?,
            use_regex: opt_bool(obj, "use_regex", at, true)?,
        }),
        "Split" => steps.push(parse_split(obj, at)?),
        "Sequence" => {
            let key = format!("{at}.pretokenizers");
            let list = as_array(obj.get("pretokenizers").ok_or_else(|| missing(&key))?, &key)?;
            for (i, p) in list.iter().enumerate() {
                parse_pre_step(p, &format!("{key}[{i}]"), steps)?;
            }
        }
        t => {
            return Err(Error::Unsupported(format!(
                "unsupported {at} type {t:?} (mft supports ByteLevel, Split with behavior Isolated, and Sequence of these)"
            )))
        }
    }
    Ok(())
}

fn parse_split(obj: &Map<String, Value>, at: &str) -> Result<PreStep> {
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

fn parse_post_processor(v: &Value, at: &str) -> Result<PostProcessor> {
    if v.is_null() {
        return Ok(PostProcessor::Identity);
    }
    let obj = as_object(v, at)?;
    match type_of(obj, at)? {
        "ByteLevel" => Ok(PostProcessor::Identity),
        "TemplateProcessing" => {
            let specials_at = format!("{at}.special_tokens");
            let specials = match obj.get("special_tokens") {
                None | Some(Value::Null) => Map::new(),
                Some(s) => as_object(s, &specials_at)?.clone(),
            };
            let single_at = format!("{at}.single");
            let single = as_array(obj.get("single").ok_or_else(|| missing(&single_at))?, &single_at)?;
            let mut pieces = Vec::new();
            for (i, p) in single.iter().enumerate() {
                let p_at = format!("{single_at}[{i}]");
                let p_obj = as_object(p, &p_at)?;
                if let Some(seq) = p_obj.get("Sequence") {
                    let id = as_str(as_object(seq, &p_at)?.get("id").unwrap_or(&Value::Null), &format!("{p_at}.Sequence.id"))?;
                    if id != "A" {
                        return Err(Error::Format(format!("{p_at}: the single-sequence template can only use sequence \"A\", not {id:?}")));
                    }
                    pieces.push(TemplatePiece::Sequence);
                } else if let Some(sp) = p_obj.get("SpecialToken") {
                    let name = as_str(as_object(sp, &p_at)?.get("id").unwrap_or(&Value::Null), &format!("{p_at}.SpecialToken.id"))?;
                    let entry = specials.get(name).ok_or_else(|| {
                        Error::Format(format!("{p_at}: special token {name:?} is not listed in {specials_at}"))
                    })?;
                    let e_at = format!("{specials_at}[{name:?}].ids");
                    let ids = as_array(as_object(entry, &e_at)?.get("ids").ok_or_else(|| missing(&e_at))?, &e_at)?
                        .iter()
                        .map(|x| as_id(x, &e_at))
                        .collect::<Result<Vec<u32>>>()?;
                    pieces.push(TemplatePiece::Special(ids));
                } else {
                    return Err(bad(&p_at, "{\"SpecialToken\": ...} or {\"Sequence\": ...}", p));
                }
            }
            Ok(PostProcessor::Template(pieces))
        }
        "RobertaProcessing" | "BertProcessing" => {
            let pair = |key: &str| -> Result<u32> {
                let k_at = format!("{at}.{key}");
                let arr = as_array(obj.get(key).ok_or_else(|| missing(&k_at))?, &k_at)?;
                match arr.as_slice() {
                    [name, id] => {
                        as_str(name, &k_at)?;
                        as_id(id, &k_at)
                    }
                    _ => Err(bad(&k_at, "[token, id]", &Value::Array(arr.clone()))),
                }
            };
            let (cls, sep) = (pair("cls")?, pair("sep")?);
            Ok(PostProcessor::Template(vec![
                TemplatePiece::Special(vec![cls]),
                TemplatePiece::Sequence,
                TemplatePiece::Special(vec![sep]),
            ]))
        }
        "Sequence" => {
            let key = format!("{at}.processors");
            let list = as_array(obj.get("processors").ok_or_else(|| missing(&key))?, &key)?;
            let steps = list
                .iter()
                .enumerate()
                .map(|(i, p)| parse_post_processor(p, &format!("{key}[{i}]")))
                .collect::<Result<Vec<_>>>()?;
            Ok(PostProcessor::Sequence(steps))
        }
        t => Err(Error::Unsupported(format!(
            "unsupported {at} type {t:?} (mft supports ByteLevel, TemplateProcessing, RobertaProcessing, BertProcessing, Sequence)"
        ))),
    }
}

fn parse_decoder(v: &Value, at: &str) -> Result<Decoder> {
    if v.is_null() {
        return Ok(Decoder::None);
    }
    let obj = as_object(v, at)?;
    match type_of(obj, at)? {
        "ByteLevel" => Ok(Decoder::ByteLevel),
        "Sequence" => {
            let key = format!("{at}.decoders");
            let list = as_array(obj.get("decoders").ok_or_else(|| missing(&key))?, &key)?;
            match list.as_slice() {
                [one] => parse_decoder(one, &format!("{key}[0]")),
                _ => Err(Error::Unsupported(format!(
                    "unsupported {at}: a Sequence of {} decoders (mft supports ByteLevel)",
                    list.len()
                ))),
            }
        }
        t => Err(Error::Unsupported(format!(
            "unsupported {at} type {t:?} (mft supports ByteLevel or null)"
        ))),
    }
}
