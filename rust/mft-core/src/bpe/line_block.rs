//! Blocks of lines -> token ids for `mft data preprocess`: one document per
//! line, either a JSON object's string field (JSONL) or the line itself
//! (plain text). Checking, field extraction and encoding of every line run in
//! parallel, without Python, so the reader is not the bottleneck. Bad lines
//! come back with their messages (the caller adds file:line and decides skip
//! or fatal).

use super::tokenizer::Tokenizer;
use rayon::prelude::*;
use serde_json::Value;

/// What one block of lines produced.
#[derive(Debug, Default)]
pub struct LineBlock {
    /// All good documents' ids, each followed by `eod` when given.
    pub ids: Vec<u32>,
    /// Per good document, its id count (EOD included).
    pub lengths: Vec<u64>,
    /// (0-based line in the block, message) per bad line, in order.
    pub bad: Vec<(usize, String)>,
    /// Documents whose text is empty or whitespace.
    pub empty: usize,
    /// Bytes of the good documents' lines (newline included).
    pub good_bytes: usize,
    /// Lines in the block, so the caller can number the next block's lines
    /// without scanning the bytes again.
    pub lines: usize,
}

enum Line {
    Blank,
    Empty,
    Bad(String),
    Good(Vec<u32>, usize),
}

fn py_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

fn one_line(
    tok: &Tokenizer,
    raw: &[u8],
    field: Option<&str>,
    add_special: bool,
    eod: Option<u32>,
) -> Line {
    let line = match std::str::from_utf8(raw) {
        Ok(s) => s,
        Err(e) => {
            return Line::Bad(format!(
                "not UTF-8 (invalid byte at byte {} of the line)",
                e.valid_up_to()
            ))
        }
    };
    if line.trim().is_empty() {
        return Line::Blank;
    }
    let Some(field) = field else {
        // Plain text: the line is the document (a Windows line end is not).
        let text = line.strip_suffix('\r').unwrap_or(line);
        return encode_text(tok, text, raw.len(), add_special, eod);
    };
    match super::json_field::string_field(line, field) {
        Some(text) => encode_text(tok, &text, raw.len(), add_special, eod),
        None => slow_line(tok, line, raw.len(), field, add_special, eod),
    }
}

/// The exact path: a full `Value`, so a bad line gets a message naming what is wrong.
fn slow_line(
    tok: &Tokenizer,
    line: &str,
    raw_len: usize,
    field: &str,
    add_special: bool,
    eod: Option<u32>,
) -> Line {
    let v: Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(e) => return Line::Bad(format!("malformed JSON: {e}")),
    };
    let Value::Object(obj) = v else {
        return Line::Bad(format!("expected a JSON object, got {}", py_type(&v)));
    };
    let text = match obj.get(field) {
        Some(Value::String(s)) => s,
        Some(other) => {
            return Line::Bad(format!(
                "field '{field}' is {}, not a string",
                py_type(other)
            ))
        }
        None => {
            let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
            keys.sort_unstable();
            keys.truncate(8);
            return Line::Bad(format!(
                "missing field '{field}' (keys: {})",
                keys.join(", ")
            ));
        }
    };
    encode_text(tok, text, raw_len, add_special, eod)
}

fn encode_text(
    tok: &Tokenizer,
    text: &str,
    raw_len: usize,
    add_special: bool,
    eod: Option<u32>,
) -> Line {
    if text.trim().is_empty() {
        return Line::Empty;
    }
    let mut ids = tok.encode(text, add_special);
    if let Some(e) = eod {
        ids.push(e);
    }
    Line::Good(ids, raw_len)
}

/// The lines of `block`, each with its newline (the last may lack one).
fn split_lines(block: &[u8]) -> Vec<&[u8]> {
    let mut lines = Vec::with_capacity(block.len() / 256 + 1);
    let mut start = 0;
    for nl in memchr::memchr_iter(b'\n', block) {
        lines.push(&block[start..=nl]);
        start = nl + 1;
    }
    if start < block.len() {
        lines.push(&block[start..]);
    }
    lines
}

/// Encodes every line of `block` (complete lines; a trailing newline
/// optional): JSONL with the text under `field`, or plain text when None.
/// Runs on the current rayon pool: call it inside the caller's `install`.
pub(crate) fn encode_line_block(
    tok: &Tokenizer,
    block: &[u8],
    field: Option<&str>,
    add_special: bool,
    eod: Option<u32>,
    max_doc_bytes: usize,
) -> LineBlock {
    let lines = split_lines(block);
    let results: Vec<Line> = {
        lines
            .par_iter()
            .map(|raw| {
                if raw.len() > max_doc_bytes {
                    return Line::Bad(format!(
                        "document of {} bytes exceeds --max-doc-bytes {max_doc_bytes}",
                        raw.len()
                    ));
                }
                let body = raw.strip_suffix(b"\n").unwrap_or(raw);
                match one_line(tok, body, field, add_special, eod) {
                    Line::Good(ids, _) => Line::Good(ids, raw.len()),
                    other => other,
                }
            })
            .collect()
    };
    let mut out = LineBlock {
        lines: lines.len(),
        ..LineBlock::default()
    };
    let mut good: Vec<&[u32]> = Vec::with_capacity(results.len());
    for (i, r) in results.iter().enumerate() {
        match r {
            Line::Blank => {}
            Line::Empty => out.empty += 1,
            Line::Bad(m) => out.bad.push((i, m.clone())),
            Line::Good(ids, n) => {
                out.lengths.push(ids.len() as u64);
                good.push(ids);
                out.good_bytes += n;
            }
        }
    }
    out.ids = super::batch::concat_in_parallel(&good);
    out
}
