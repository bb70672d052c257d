//! Strict parsing of the JSON header: every rule a reader relies on is checked
//! here once, so the rest of the code can index the data without re-checking.

use std::collections::HashSet;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;

use super::dtype::{byte_len, Dtype};
use super::{Error, Result};

/// Headers above this size are refused (the same limit as the reference).
pub const MAX_HEADER_BYTES: u64 = 100 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<u64>,
    /// [begin, end) relative to the start of the data region.
    pub begin: u64,
    pub end: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Tensors in the order the header lists them.
    pub tensors: Vec<TensorInfo>,
    pub metadata: Vec<(String, String)>,
    /// Absolute file offset of the first data byte (8 + header length).
    pub data_start: u64,
}

/// The top-level object as ordered (key, value) pairs, so duplicate keys are
/// caught instead of silently overwritten.
struct OrderedObject(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for OrderedObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OrderedObject;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<OrderedObject, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = map.next_entry::<String, Value>()? {
                    out.push(entry);
                }
                Ok(OrderedObject(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// Parses and validates a whole header given the first bytes of the file
/// (at least the 8-byte length and the JSON) and the total file size.
/// `path` is only used in error messages.
pub fn parse_header(path: &str, bytes: &[u8], file_size: u64) -> Result<Header> {
    let bad = |msg: String| Error::Invalid(format!("{path}: {msg}"));
    if bytes.len() < 8 || file_size < 8 {
        return Err(bad(
            "not a safetensors file (shorter than its 8-byte header length)".into(),
        ));
    }
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap());
    if n > MAX_HEADER_BYTES || n > file_size - 8 {
        return Err(bad(format!(
            "header length {n} exceeds the file size {file_size} or the limit {MAX_HEADER_BYTES}"
        )));
    }
    let json = bytes
        .get(8..8 + n as usize)
        .ok_or_else(|| bad(format!("header length {n} runs past the bytes read")))?;
    let text = std::str::from_utf8(json)
        .map_err(|e| bad(format!("header is not valid UTF-8 JSON: {e}")))?;
    let object: OrderedObject = serde_json::from_str(text)
        .map_err(|e| bad(format!("header is not valid UTF-8 JSON object: {e}")))?;

    let data_len = file_size - 8 - n;
    let mut seen = HashSet::new();
    for (key, _) in &object.0 {
        if !seen.insert(key.as_str()) {
            return Err(bad(format!("key {key:?} appears twice in the header")));
        }
    }
    let mut tensors = Vec::new();
    let mut metadata = Vec::new();
    for (key, value) in object.0 {
        if key == "__metadata__" {
            metadata = parse_metadata(&value).map_err(|m| bad(format!("__metadata__: {m}")))?;
        } else {
            let t = parse_entry(key, &value)
                .map_err(|(name, m)| bad(format!("tensor {name:?}: {m}")))?;
            tensors.push(t);
        }
    }
    check_layout(&tensors, data_len).map_err(bad)?;
    Ok(Header {
        tensors,
        metadata,
        data_start: 8 + n,
    })
}

fn parse_metadata(value: &Value) -> std::result::Result<Vec<(String, String)>, String> {
    let obj = value.as_object().ok_or("must be an object of strings")?;
    obj.iter()
        .map(|(k, v)| match v.as_str() {
            Some(s) => Ok((k.clone(), s.to_string())),
            None => Err(format!("value of {k:?} is not a string")),
        })
        .collect()
}

fn parse_entry(name: String, value: &Value) -> std::result::Result<TensorInfo, (String, String)> {
    let fail = |m: String| Err((name.clone(), m));
    let Some(obj) = value.as_object() else {
        return fail(format!("malformed header entry {value}"));
    };
    let dtype = match obj.get("dtype").and_then(Value::as_str) {
        Some(s) => match Dtype::from_name(s) {
            Some(d) => d,
            None => return fail(format!("unknown dtype {s:?}")),
        },
        None => return fail(format!("malformed header entry {value}: no string 'dtype'")),
    };
    let shape: Option<Vec<u64>> = obj
        .get("shape")
        .and_then(Value::as_array)
        .and_then(|a| a.iter().map(Value::as_u64).collect());
    let Some(shape) = shape else {
        return fail(format!(
            "malformed header entry {value}: 'shape' is not a list of non-negative integers"
        ));
    };
    let offsets: Option<Vec<u64>> = obj
        .get("data_offsets")
        .and_then(Value::as_array)
        .and_then(|a| a.iter().map(Value::as_u64).collect());
    let (begin, end) = match offsets.as_deref() {
        Some(&[b, e]) => (b, e),
        _ => {
            return fail(format!(
                "malformed header entry {value}: 'data_offsets' is not [begin, end]"
            ))
        }
    };
    let Some(nbytes) = byte_len(dtype, &shape) else {
        return fail(format!("shape {shape:?} overflows"));
    };
    if end < begin || end - begin != nbytes {
        return fail(format!(
            "offsets [{begin}, {end}) do not fit dtype {} x shape {shape:?} ({nbytes} bytes)",
            dtype.name()
        ));
    }
    Ok(TensorInfo {
        name,
        dtype,
        shape,
        begin,
        end,
    })
}

/// Offsets must tile [0, data_len) exactly: in bounds, no overlap, no gaps.
fn check_layout(tensors: &[TensorInfo], data_len: u64) -> std::result::Result<(), String> {
    let mut order: Vec<&TensorInfo> = tensors.iter().collect();
    order.sort_by_key(|t| (t.begin, t.end));
    let mut pos = 0u64;
    for t in order {
        if t.end > data_len {
            return Err(format!(
                "tensor {:?}: offsets [{}, {}) run past the end of the {data_len} data bytes",
                t.name, t.begin, t.end
            ));
        }
        if t.begin < pos {
            return Err(format!(
                "tensor {:?}: offsets [{}, {}) overlap another tensor",
                t.name, t.begin, t.end
            ));
        }
        if t.begin > pos {
            return Err(format!(
                "tensor {:?}: gap of unused bytes before offset {}",
                t.name, t.begin
            ));
        }
        pos = t.end;
    }
    if pos != data_len {
        return Err(format!(
            "tensors cover {pos} of the {data_len} data bytes (trailing bytes)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(json: &str, data_len: usize) -> Vec<u8> {
        let mut v = (json.len() as u64).to_le_bytes().to_vec();
        v.extend_from_slice(json.as_bytes());
        v.extend(std::iter::repeat(0u8).take(data_len));
        v
    }

    fn parse(bytes: &[u8]) -> Result<Header> {
        parse_header("t.safetensors", bytes, bytes.len() as u64)
    }

    #[test]
    fn good_header_in_file_order() {
        let b = file(
            r#"{"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"__metadata__":{"k":"v"},"a":{"dtype":"U8","shape":[],"data_offsets":[8,9]}}"#,
            9,
        );
        let h = parse(&b).unwrap();
        assert_eq!(
            h.tensors
                .iter()
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>(),
            ["b", "a"]
        );
        assert_eq!(h.metadata, vec![("k".to_string(), "v".to_string())]);
    }

    #[test]
    fn rejects_bad_layouts() {
        let cases = [
            (
                r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
                4,
                "run past",
            ),
            (
                r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
                8,
                "does not fit",
            ),
            (
                r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[2,6]}}"#,
                6,
                "overlap",
            ),
            (
                r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#,
                8,
                "trailing",
            ),
            (
                r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#,
                8,
                "do not fit",
            ),
            (
                r#"{"a":{"dtype":"X","shape":[3],"data_offsets":[0,8]}}"#,
                8,
                "unknown dtype",
            ),
            (r#"{"a":1,"a":2}"#, 0, "twice"),
            (r#"[1]"#, 0, "object"),
            (r#"{"__metadata__":{"k":1}}"#, 0, "not a string"),
        ];
        for (json, n, want) in cases {
            let err = parse(&file(json, n)).unwrap_err().to_string();
            assert!(
                err.contains(want) || (want == "does not fit" && err.contains("overlap")),
                "{json}: {err}"
            );
            assert!(err.starts_with("t.safetensors: "), "{err}");
        }
    }

    #[test]
    fn rejects_short_and_lying_lengths() {
        assert!(parse(&[1, 2, 3]).is_err());
        let mut b = file("{}", 0);
        b[0] = 200;
        assert!(parse(&b).unwrap_err().to_string().contains("exceeds"));
        let mut b = file("{\"\u{e9}\":1}", 0);
        b[10] = 0xff;
        assert!(parse(&b).unwrap_err().to_string().contains("UTF-8"));
    }
}
