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
    /// The good documents, as runs of consecutive ones encoded by one thread
    /// (in file order): writing the runs needs no concatenation copy.
    pub runs: Vec<DocRun>,
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

/// Consecutive documents: their ids end to end (each followed by `eod` when
/// given) and each one's id count.
#[derive(Debug, Default)]
pub struct DocRun {
    pub ids: Vec<u32>,
    pub lengths: Vec<u64>,
}

impl LineBlock {
    pub fn documents(&self) -> usize {
        self.runs.iter().map(|r| r.lengths.len()).sum()
    }
}

/// One line's fate; a good line's ids went straight into the run.
enum Line {
    Blank,
    Empty,
    Bad(String),
    Good,
}

/// How lines become documents.
struct LineEncoder<'a> {
    tok: &'a Tokenizer,
    field: Option<&'a str>,
    add_special: bool,
    eod: Option<u32>,
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

impl LineEncoder<'_> {
    /// Checks one line (without its newline) and appends its document to `run`.
    fn line(&self, raw: &[u8], run: &mut DocRun) -> Line {
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
        let Some(field) = self.field else {
            // Plain text: the line is the document (a Windows line end is not).
            return self.document(line.strip_suffix('\r').unwrap_or(line), run);
        };
        match super::json_field::string_field(line, field) {
            Some(text) => self.document(&text, run),
            None => self.slow_line(line, field, run),
        }
    }

    /// The exact path: a full `Value`, so a bad line gets a message naming what is wrong.
    fn slow_line(&self, line: &str, field: &str, run: &mut DocRun) -> Line {
        let v: Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => return Line::Bad(format!("malformed JSON: {e}")),
        };
        let Value::Object(obj) = v else {
            return Line::Bad(format!("expected a JSON object, got {}", py_type(&v)));
        };
        match obj.get(field) {
            Some(Value::String(text)) => self.document(text, run),
            Some(other) => Line::Bad(format!(
                "field '{field}' is {}, not a string",
                py_type(other)
            )),
            None => {
                let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
                keys.sort_unstable();
                keys.truncate(8);
                Line::Bad(format!(
                    "missing field '{field}' (keys: {})",
                    keys.join(", ")
                ))
            }
        }
    }

    fn document(&self, text: &str, run: &mut DocRun) -> Line {
        if text.trim().is_empty() {
            return Line::Empty;
        }
        let start = run.ids.len();
        self.tok.encode_into(text, self.add_special, &mut run.ids);
        run.ids.extend(self.eod);
        run.lengths.push((run.ids.len() - start) as u64);
        Line::Good
    }
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
    let enc = LineEncoder {
        tok,
        field,
        add_special,
        eod,
    };
    let lines = split_lines(block);
    // Each thread encodes a run of consecutive lines into one buffer; the
    // runs come back in order (rayon's collect keeps the iterator's order).
    let parts: Vec<LineBlock> = lines
        .par_iter()
        .enumerate()
        .fold(LineBlock::default, |mut part, (i, raw)| {
            if part.runs.is_empty() {
                part.runs.push(DocRun::default());
            }
            let run = part.runs.last_mut().expect("just pushed");
            let outcome = if raw.len() > max_doc_bytes {
                Line::Bad(format!(
                    "document of {} bytes exceeds --max-doc-bytes {max_doc_bytes}",
                    raw.len()
                ))
            } else {
                enc.line(raw.strip_suffix(b"\n").unwrap_or(raw), run)
            };
            match outcome {
                Line::Blank => {}
                Line::Empty => part.empty += 1,
                Line::Bad(m) => part.bad.push((i, m)),
                Line::Good => part.good_bytes += raw.len(),
            }
            part
        })
        .collect();
    let mut out = LineBlock {
        lines: lines.len(),
        ..LineBlock::default()
    };
    for part in parts {
        out.runs
            .extend(part.runs.into_iter().filter(|r| !r.lengths.is_empty()));
        out.bad.extend(part.bad);
        out.empty += part.empty;
        out.good_bytes += part.good_bytes;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bpe::from_json_str;

    #[test]
    fn runs_keep_line_order_across_threads() {
        let json = r#"{"version":"1.0","added_tokens":[],"normalizer":null,
            "pre_tokenizer":{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":true},
            "post_processor":null,"decoder":null,
            "model":{"type":"BPE","vocab":{"a":0,"b":1,"c":2,"d":3},"merges":[]}}"#;
        let tok = from_json_str(json).unwrap();
        // Line i holds i % 7 + 1 letters: every document's length tells its line.
        let text: String = (0..5000)
            .map(|i| "abc".repeat(3)[..i % 7 + 1].to_string() + "\n")
            .collect();
        let block = crate::bpe::pool()
            .install(|| encode_line_block(&tok, text.as_bytes(), None, false, Some(3), 100));
        let lengths: Vec<u64> = block
            .runs
            .iter()
            .flat_map(|r| r.lengths.iter().copied())
            .collect();
        assert_eq!(
            lengths,
            (0..5000).map(|i| (i % 7 + 2) as u64).collect::<Vec<_>>()
        );
        assert_eq!(block.documents(), 5000);
        let ids: Vec<u32> = block
            .runs
            .iter()
            .flat_map(|r| r.ids.iter().copied())
            .collect();
        assert_eq!(&ids[..5], &[0, 3, 0, 1, 3]);
    }
}
