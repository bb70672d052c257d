//! The `post_processor` and `decoder` sections.

use super::pre_stages::any_pattern;
use super::values::*;
use crate::bpe::components::{
    DecStep, Decoder, OverflowTypes, PostProcessor, Template, TemplatePiece,
};
use crate::bpe::error::{Error, Result};
use serde_json::{Map, Value};

pub(super) fn parse_post_processor(v: &Value, at: &str) -> Result<PostProcessor> {
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
            let single_v = obj.get("single").ok_or_else(|| missing(&single_at))?;
            let single = parse_template(single_v, &single_at, &specials, &specials_at, false)?;
            let pair_at = format!("{at}.pair");
            let pair = match obj.get("pair") {
                None | Some(Value::Null) => {
                    let mut p = single.clone();
                    p.push(TemplatePiece::Sequence { second: true, type_id: 1 });
                    p
                }
                Some(v) => parse_template(v, &pair_at, &specials, &specials_at, true)?,
            };
            Ok(PostProcessor::Template(Template {
                single,
                pair,
                overflow_types: OverflowTypes::Raw,
            }))
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
            let roberta = type_of(obj, at)? == "RobertaProcessing";
            let special = |id: u32, type_id: u32| TemplatePiece::Special(vec![id], type_id);
            let seq = |second: bool, type_id: u32| TemplatePiece::Sequence { second, type_id };
            let single = vec![special(cls, 0), seq(false, 0), special(sep, 0)];
            // Bert: [CLS] A [SEP] B [SEP], B's part with type id 1;
            // Roberta: <s> A </s> </s> B </s>, every type id 0.
            let pair = if roberta {
                vec![special(cls, 0), seq(false, 0), special(sep, 0), special(sep, 0), seq(true, 0), special(sep, 0)]
            } else {
                vec![special(cls, 0), seq(false, 0), special(sep, 0), seq(true, 1), special(sep, 1)]
            };
            let template = PostProcessor::Template(Template {
                single,
                pair,
                overflow_types: if roberta {
                    OverflowTypes::RawWithoutSpecials
                } else {
                    OverflowTypes::Raw
                },
            });
            // RobertaProcessing trims offsets (by default) before adding cls/sep.
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

/// A `single` or `pair` template: `{"SpecialToken": {"id", "type_id"}}` and
/// `{"Sequence": {"id": "A"|"B", "type_id"}}` items.
fn parse_template(
    v: &Value,
    t_at: &str,
    specials: &Map<String, Value>,
    specials_at: &str,
    pair: bool,
) -> Result<Vec<TemplatePiece>> {
    let items = as_array(v, t_at)?;
    let mut pieces = Vec::new();
    for (i, p) in items.iter().enumerate() {
        let p_at = format!("{t_at}[{i}]");
        let p_obj = as_object(p, &p_at)?;
        let type_id = |inner: &Value, key: &str| -> Result<u32> {
            match as_object(inner, &p_at)?.get("type_id") {
                None | Some(Value::Null) => Ok(0),
                Some(t) => as_id(t, &format!("{p_at}.{key}.type_id")),
            }
        };
        if let Some(seq) = p_obj.get("Sequence") {
            let id = as_str(
                as_object(seq, &p_at)?.get("id").unwrap_or(&Value::Null),
                &format!("{p_at}.Sequence.id"),
            )?;
            let second = match id {
                "A" => false,
                "B" if pair => true,
                _ if pair => {
                    return Err(Error::Format(format!(
                        "{p_at}: a pair template uses sequences \"A\" and \"B\", not {id:?}"
                    )))
                }
                _ => {
                    return Err(Error::Format(format!(
                    "{p_at}: the single-sequence template can only use sequence \"A\", not {id:?}"
                )))
                }
            };
            pieces.push(TemplatePiece::Sequence {
                second,
                type_id: type_id(seq, "Sequence")?,
            });
        } else if let Some(sp) = p_obj.get("SpecialToken") {
            let name = as_str(
                as_object(sp, &p_at)?.get("id").unwrap_or(&Value::Null),
                &format!("{p_at}.SpecialToken.id"),
            )?;
            let entry = specials.get(name).ok_or_else(|| {
                Error::Format(format!(
                    "{p_at}: special token {name:?} is not listed in {specials_at}"
                ))
            })?;
            let e_at = format!("{specials_at}[{name:?}].ids");
            let ids = as_array(
                as_object(entry, &e_at)?
                    .get("ids")
                    .ok_or_else(|| missing(&e_at))?,
                &e_at,
            )?
            .iter()
            .map(|x| as_id(x, &e_at))
            .collect::<Result<Vec<u32>>>()?;
            pieces.push(TemplatePiece::Special(ids, type_id(sp, "SpecialToken")?));
        } else {
            return Err(bad(
                &p_at,
                "{\"SpecialToken\": ...} or {\"Sequence\": ...}",
                p,
            ));
        }
    }
    Ok(pieces)
}

pub(super) fn parse_decoder(v: &Value, at: &str) -> Result<Decoder> {
    if v.is_null() {
        return Ok(Decoder::None);
    }
    let mut steps = Vec::new();
    parse_dec_step(v, at, &mut steps)?;
    Ok(Decoder::Chain(steps))
}

pub(super) fn one_char(
    obj: &Map<String, Value>,
    key: &str,
    at: &str,
    default: char,
) -> Result<char> {
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

pub(super) fn count(obj: &Map<String, Value>, key: &str, at: &str) -> Result<usize> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(0),
        Some(v) => v
            .as_u64()
            .map(|n| n as usize)
            .ok_or_else(|| bad(&format!("{at}.{key}"), "a non-negative integer", v)),
    }
}

pub(super) fn parse_dec_step(v: &Value, at: &str, steps: &mut Vec<DecStep>) -> Result<()> {
    let obj = as_object(v, at)?;
    match type_of(obj, at)? {
        "ByteLevel" => steps.push(DecStep::ByteLevel),
        "ByteFallback" => steps.push(DecStep::ByteFallback),
        "Fuse" => steps.push(DecStep::Fuse),
        "Replace" => {
            let content = as_str(obj.get("content").ok_or_else(|| missing(&format!("{at}.content")))?, &format!("{at}.content"))?.to_string();
            steps.push(match any_pattern(obj, at)? {
                Ok(pattern) => DecStep::Replace { pattern, content },
                Err(re) => DecStep::ReplaceRegex { re, content },
            });
        }
        "WordPiece" => steps.push(DecStep::WordPiece {
            prefix: opt_string(obj, "prefix", at)?.unwrap_or_else(|| "##".into()),
            cleanup: opt_bool(obj, "cleanup", at, true)?,
        }),
        "BPEDecoder" => steps.push(DecStep::BpeSuffix(
            opt_string(obj, "suffix", at)?.unwrap_or_else(|| "</w>".into()),
        )),
        "CTC" => steps.push(DecStep::Ctc {
            pad: opt_string(obj, "pad_token", at)?.unwrap_or_else(|| "<pad>".into()),
            delimiter: opt_string(obj, "word_delimiter_token", at)?.unwrap_or_else(|| "|".into()),
            cleanup: opt_bool(obj, "cleanup", at, true)?,
        }),
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
                "unsupported {at} type {t:?} (mft supports ByteLevel, Metaspace, WordPiece, BPEDecoder, CTC, Replace, ByteFallback, Fuse, Strip, Sequence of these, or null)"
            )))
        }
    }
    Ok(())
}
