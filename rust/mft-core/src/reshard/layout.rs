//! The checkpoint layout JSON (`"format": "mft-checkpoint-layout"`):
//! `{"tensors": {name: {"shape", "dtype", "split_axis", "pieces": [{"rank",
//! "file", "offset", "shape"[, "key"]}]}}}`. A piece is the box
//! [offset, offset + shape) of the global tensor, stored under `key` (default:
//! the tensor's name) in `file` (relative to the checkpoint folder). A piece
//! may reach past the global shape on its split axis: that is vocab padding.

use serde_json::Value;

use crate::safetensors::{Dtype, Error, Result};

pub const FORMAT: &str = "mft-checkpoint-layout";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    pub file: String,
    pub key: String,
    pub offset: Vec<u64>,
    pub shape: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorLayout {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<u64>,
    pub pieces: Vec<Piece>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub tensors: Vec<TensorLayout>,
}

fn u64_list(v: Option<&Value>) -> Option<Vec<u64>> {
    v?.as_array()?.iter().map(Value::as_u64).collect()
}

impl Layout {
    /// Parses and checks a layout; `source` names it in errors.
    pub fn from_json(source: &str, text: &str) -> Result<Layout> {
        let bad = |m: String| Error::Invalid(format!("{source}: {m}"));
        let root: Value =
            serde_json::from_str(text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        if root.get("format").and_then(Value::as_str) != Some(FORMAT) {
            return Err(bad(format!("not a layout (\"format\" is not {FORMAT:?})")));
        }
        let Some(tensors) = root.get("tensors").and_then(Value::as_object) else {
            return Err(bad("no \"tensors\" object".into()));
        };
        let mut out = Vec::with_capacity(tensors.len());
        for (name, t) in tensors {
            let tb = |m: String| bad(format!("tensor {name:?}: {m}"));
            let dtype = t
                .get("dtype")
                .and_then(Value::as_str)
                .and_then(Dtype::from_name)
                .ok_or_else(|| tb(format!("missing or unknown dtype {:?}", t.get("dtype"))))?;
            let shape = u64_list(t.get("shape"))
                .ok_or_else(|| tb("shape is not a list of non-negative integers".into()))?;
            let pieces_v = t
                .get("pieces")
                .and_then(Value::as_array)
                .ok_or_else(|| tb("no \"pieces\" list".into()))?;
            let mut pieces = Vec::with_capacity(pieces_v.len());
            for p in pieces_v {
                let file = p
                    .get("file")
                    .and_then(Value::as_str)
                    .ok_or_else(|| tb(format!("piece {p} has no \"file\"")))?;
                if file.is_empty() || file.starts_with('/') || file.split('/').any(|c| c == "..") {
                    return Err(tb(format!(
                        "piece file {file:?} must be a plain name inside the folder"
                    )));
                }
                let offset = u64_list(p.get("offset"))
                    .ok_or_else(|| tb(format!("piece {p}: bad \"offset\"")))?;
                let pshape = u64_list(p.get("shape"))
                    .ok_or_else(|| tb(format!("piece {p}: bad \"shape\"")))?;
                if offset.len() != shape.len() || pshape.len() != shape.len() {
                    return Err(tb(format!(
                        "piece {p}: offset/shape rank differs from the tensor's {shape:?}"
                    )));
                }
                if offset
                    .iter()
                    .zip(&pshape)
                    .any(|(o, s)| o.checked_add(*s).is_none())
                {
                    return Err(tb(format!("piece {p}: offset + shape overflows")));
                }
                let key = p
                    .get("key")
                    .and_then(Value::as_str)
                    .unwrap_or(name)
                    .to_string();
                pieces.push(Piece {
                    file: file.to_string(),
                    key,
                    offset,
                    shape: pshape,
                });
            }
            out.push(TensorLayout {
                name: name.clone(),
                dtype,
                shape,
                pieces,
            });
        }
        Ok(Layout { tensors: out })
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorLayout> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        let ok = r#"{"format":"mft-checkpoint-layout","version":1,"tensors":{"w":{"shape":[4,2],"dtype":"F32","split_axis":0,
            "pieces":[{"rank":0,"file":"a.safetensors","offset":[0,0],"shape":[2,2]},{"rank":1,"file":"b.safetensors","offset":[2,0],"shape":[2,2]}]}}}"#;
        let l = Layout::from_json("l.json", ok).unwrap();
        assert_eq!(l.tensors[0].pieces[1].offset, vec![2, 0]);
        assert_eq!(l.tensors[0].pieces[1].key, "w");
        for (bad, want) in [
            (ok.replace("F32", "F33"), "unknown dtype"),
            (ok.replace("a.safetensors", "../a"), "plain name"),
            (ok.replace("[0,0]", "[0]"), "rank differs"),
            (ok.replace("mft-checkpoint-layout", "x"), "not a layout"),
            ("{".to_string(), "not valid JSON"),
        ] {
            let e = Layout::from_json("l.json", &bad).unwrap_err().to_string();
            assert!(e.contains(want) && e.starts_with("l.json: "), "{e}");
        }
    }
}
