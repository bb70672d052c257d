//! Typed access to JSON values; every error names the JSON path.

use crate::bpe::error::{Error, Result};
use serde_json::{Map, Value};

pub(super) fn missing(what: &str) -> Error {
    Error::Format(format!("missing \"{what}\""))
}

pub(super) fn bad(at: &str, expected: &str, got: &Value) -> Error {
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

pub(super) fn as_object<'a>(v: &'a Value, at: &str) -> Result<&'a Map<String, Value>> {
    v.as_object().ok_or_else(|| bad(at, "an object", v))
}

pub(super) fn as_array<'a>(v: &'a Value, at: &str) -> Result<&'a Vec<Value>> {
    v.as_array().ok_or_else(|| bad(at, "an array", v))
}

pub(super) fn as_str<'a>(v: &'a Value, at: &str) -> Result<&'a str> {
    v.as_str().ok_or_else(|| bad(at, "a string", v))
}

pub(super) fn as_id(v: &Value, at: &str) -> Result<u32> {
    v.as_u64()
        .filter(|&n| n <= u32::MAX as u64)
        .map(|n| n as u32)
        .ok_or_else(|| bad(at, "a token id (integer 0..2^32)", v))
}

/// An optional boolean (missing or null -> default).
pub(super) fn opt_bool(
    obj: &Map<String, Value>,
    key: &str,
    at: &str,
    default: bool,
) -> Result<bool> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(v) => Err(bad(&format!("{at}.{key}"), "true or false", v)),
    }
}

pub(super) fn opt_string(obj: &Map<String, Value>, key: &str, at: &str) -> Result<Option<String>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v) => Err(bad(&format!("{at}.{key}"), "a string or null", v)),
    }
}

pub(super) fn type_of<'a>(obj: &'a Map<String, Value>, at: &str) -> Result<&'a str> {
    as_str(
        obj.get("type")
            .ok_or_else(|| missing(&format!("{at}.type")))?,
        &format!("{at}.type"),
    )
}
