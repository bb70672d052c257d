//! Reading HF `tokenizer.json` files (the BPE subset real checkpoints use).
//!
//! Every error names the JSON path of the bad value; `from_file` prefixes
//! the file name. Components mft does not implement are refused by name
//! rather than silently encoding differently from HF.

use super::added::{AddedToken, AddedVocab};
use super::components::{
    DecStep, Decoder, NormStep, Normalizer, PostProcessor, PreStep, PreTokenizer, PrependScheme,
    TemplatePiece,
};
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
    let mut model = parse_model(root.get("model").ok_or_else(|| missing("model"))?)?;
    let added = parse_added(root.get("added_tokens").unwrap_or(&Value::Null))?;
    let null = Value::Null;
    let raw = RawStages {
        normalizer: root.get("normalizer").unwrap_or(&null).clone(),
        pre_tokenizer: root.get("pre_tokenizer").unwrap_or(&null).clone(),
        post_processor: root.get("post_processor").unwrap_or(&null).clone(),
        decoder: root.get("decoder").unwrap_or(&null).clone(),
    };
    let pre_tokenizer = parse_pre_tokenizer(&raw.pre_tokenizer, "pre_tokenizer")?;
    model.set_byte_level(pre_tokenizer.is_byte_level());
    Ok(Tokenizer {
        normalizer: parse_normalizer(&raw.normalizer)?,
        pre_tokenizer,
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
    let mut steps = Vec::new();
    if !v.is_null() {
        parse_norm_step(v, "normalizer", &mut steps)?;
    }
    Ok(Normalizer { steps })
}

/// A `{"String": s}` pattern (HF's Replace/Split); regex patterns are refused.
fn string_pattern(obj: &Map<String, Value>, at: &str) -> Result<String> {
    let pat_at = format!("{at}.pattern");
    let pattern = as_object(obj.get("pattern").ok_or_else(|| missing(&pat_at))?, &pat_at)?;
    match pattern.get("String") {
        Some(s) => Ok(as_str(s, &format!("{pat_at}.String"))?.to_string()),
        None => Err(Error::Unsupported(format!(
            "{pat_at}: only {{\"String\": ...}} patterns are supported here"
        ))),
    }
}

fn parse_norm_step(v: &Value, at: &str, steps: &mut Vec<NormStep>) -> Result<()> {
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

fn parse_pre_tokenizer(v: &Value, at: &str) -> Result<PreTokenizer> {
    let mut steps = Vec::new();
    if !v.is_null() {
        parse_pre_step(v, at, &mut steps)?;
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
        // HF's defaults: trim_offsets and add_prefix_space both on.
        "ByteLevel" => Ok(if opt_bool(obj, "trim_offsets", at, true)? {
            PostProcessor::TrimOffsets {
                add_prefix_space: opt_bool(obj, "add_prefix_space", at, true)?,
            }
        } else {
            PostProcessor::Identity
        }),
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
            let template = PostProcessor::Template(vec![
                TemplatePiece::Special(vec![cls]),
                TemplatePiece::Sequence,
                TemplatePiece::Special(vec![sep]),
            ]);
            // RobertaProcessing trims offsets (by default) before adding cls/sep.
            let roberta = type_of(obj, at)? == "RobertaProcessing";
            Ok(if roberta && opt_bool(obj, "trim_offsets", at, true)? {
                PostProcessor::Sequence(vec![
                    PostProcessor::TrimOffsets {
                        add_prefix_space: opt_bool(obj, "add_prefix_space", at, true)?,
                    },
                    template,
                ])
            } else {
                template
            })
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
    let mut steps = Vec::new();
    parse_dec_step(v, at, &mut steps)?;
    Ok(Decoder::Chain(steps))
}

fn one_char(obj: &Map<String, Value>, key: &str, at: &str, default: char) -> Result<char> {
    let k_at = format!("{at}.{key}");
    match obj.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => {
            let s = as_str(v, &k_at)?;
            let mut cs = s.chars();
            match (cs.next(), cs.next()) {
                (Some(c), None) => Ok(c),
                _ => Err(Error::Unsupported(format!(
                    "{k_at}: {s:?} must be one character"
                ))),
            }
        }
    }
}

fn count(obj: &Map<String, Value>, key: &str, at: &str) -> Result<usize> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(0),
        Some(v) => v
            .as_u64()
            .map(|n| n as usize)
            .ok_or_else(|| bad(&format!("{at}.{key}"), "a non-negative integer", v)),
    }
}

fn parse_dec_step(v: &Value, at: &str, steps: &mut Vec<DecStep>) -> Result<()> {
    let obj = as_object(v, at)?;
    match type_of(obj, at)? {
        "ByteLevel" => steps.push(DecStep::ByteLevel),
        "ByteFallback" => steps.push(DecStep::ByteFallback),
        "Fuse" => steps.push(DecStep::Fuse),
        "Replace" => {
            let content = as_str(obj.get("content").ok_or_else(|| missing(&format!("{at}.content")))?, &format!("{at}.content"))?;
            steps.push(DecStep::Replace {
                pattern: string_pattern(obj, at)?,
                content: content.to_string(),
            });
        }
        "Strip" => steps.push(DecStep::Strip {
            content: one_char(obj, "content", at, ' ')?,
            start: count(obj, "start", at)?,
            stop: count(obj, "stop", at)?,
        }),
        "Metaspace" => {
            let never = match obj.get("prepend_scheme") {
                Some(Value::String(s)) => s == "never",
                _ => !opt_bool(obj, "add_prefix_space", at, true)?,
            };
            steps.push(DecStep::Metaspace {
                replacement: one_char(obj, "replacement", at, '\u{2581}')?,
                strip_first: !never,
            });
        }
        "Sequence" => {
            let key = format!("{at}.decoders");
            let list = as_array(obj.get("decoders").ok_or_else(|| missing(&key))?, &key)?;
            for (i, d) in list.iter().enumerate() {
                parse_dec_step(d, &format!("{key}[{i}]"), steps)?;
            }
        }
        t => {
            return Err(Error::Unsupported(format!(
                "unsupported {at} type {t:?} (mft supports ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip, Sequence of these, or null)"
            )))
        }
    }
    Ok(())
}
