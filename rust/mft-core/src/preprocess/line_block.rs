//! Blocks of lines -> token ids for `mft data preprocess`: one document per
//! line, either a JSON object's string field (JSONL) or the line itself
//! (plain text). Checking, field extraction and encoding of every line run in
//! parallel, without Python, so the reader is not the bottleneck. Bad lines
//! come back with their messages (the caller adds file:line and decides skip
//! or fatal).

use crate::bpe::Tokenizer;
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
    format: Format<'a>,
    add_special: bool,
    eod: Option<u32>,
}

/// What one item of input is.
#[derive(Clone, Copy)]
enum Format<'a> {
    /// A JSONL line: the text is this string field.
    Jsonl(&'a str),
    /// A text-file line: the line is the text (a blank line is no document).
    Text,
    /// A string-column value (Parquet): the value is the text, and a blank
    /// one is an empty document.
    Row,
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
        let field = match self.format {
            Format::Row => return self.document(line, run),
            _ if line.trim().is_empty() => return Line::Blank,
            // Plain text: the line is the document (a Windows line end is not).
            Format::Text => return self.document(line.strip_suffix('\r').unwrap_or(line), run),
            Format::Jsonl(field) => field,
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
        if self.tok.limits.truncation.is_some() {
            // The file's truncation may refuse this text as HF refuses it
            // ("Sequence to truncate too short", ...): a bad document, not
            // one silently left uncut.
            match self.tok.try_encode(text, self.add_special) {
                Ok(ids) => run.ids.extend_from_slice(&ids),
                Err(e) => {
                    return Line::Bad(format!("the tokenizer's truncation refuses this text: {e}"))
                }
            }
        } else {
            self.tok.encode_into(text, self.add_special, &mut run.ids);
        }
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
    let format = field.map_or(Format::Text, Format::Jsonl);
    let items: Vec<Item> = split_lines(block)
        .into_iter()
        .map(|raw| Some((raw.strip_suffix(b"\n").unwrap_or(raw), raw.len())))
        .collect();
    let enc = LineEncoder {
        tok,
        format,
        add_special,
        eod,
    };
    encode_items(&enc, &items, max_doc_bytes)
}

/// Encodes the strings of an Arrow-style column: value i is
/// `data[offsets[i]..offsets[i + 1]]`, skipped where `valid[i]` is false
/// (the caller reports nulls). Bad values come back by row index.
/// Runs on the current rayon pool: call it inside the caller's `install`.
pub(crate) fn encode_string_rows(
    tok: &Tokenizer,
    data: &[u8],
    offsets: &[i64],
    valid: Option<&[bool]>,
    add_special: bool,
    eod: Option<u32>,
    max_doc_bytes: usize,
) -> Result<LineBlock, String> {
    let rows = offsets.len().saturating_sub(1);
    if valid.is_some_and(|v| v.len() != rows) {
        return Err(format!(
            "{} validity flags for {rows} rows",
            valid.map_or(0, <[bool]>::len)
        ));
    }
    let mut items: Vec<Item> = Vec::with_capacity(rows);
    for i in 0..rows {
        let (a, b) = (offsets[i], offsets[i + 1]);
        if a < 0 || b < a || b as usize > data.len() {
            return Err(format!(
                "row {i}: offsets {a}..{b} outside the {} data bytes",
                data.len()
            ));
        }
        let value = &data[a as usize..b as usize];
        items.push(valid.is_none_or(|v| v[i]).then_some((value, value.len())));
    }
    let enc = LineEncoder {
        tok,
        format: Format::Row,
        add_special,
        eod,
    };
    Ok(encode_items(&enc, &items, max_doc_bytes))
}

/// One input item: its text bytes and the input bytes it stands for, or
/// None for an item to pass over silently.
type Item<'a> = Option<(&'a [u8], usize)>;

fn encode_items(enc: &LineEncoder, items: &[Item], max_doc_bytes: usize) -> LineBlock {
    // Each thread encodes a run of consecutive items into one buffer; the
    // runs come back in order (rayon's collect keeps the iterator's order).
    let parts: Vec<LineBlock> = items
        .par_iter()
        .enumerate()
        .fold(LineBlock::default, |mut part, (i, item)| {
            let Some((body, bytes)) = *item else {
                return part;
            };
            if part.runs.is_empty() {
                part.runs.push(DocRun::default());
            }
            let run = part.runs.last_mut().expect("just pushed");
            let outcome = if bytes > max_doc_bytes {
                Line::Bad(format!(
                    "document of {bytes} bytes exceeds --max-doc-bytes {max_doc_bytes}"
                ))
            } else {
                enc.line(body, run)
            };
            match outcome {
                Line::Blank => {}
                Line::Empty => part.empty += 1,
                Line::Bad(m) => part.bad.push((i, m)),
                Line::Good => part.good_bytes += bytes,
            }
            part
        })
        .collect();
    let mut out = LineBlock {
        lines: items.len(),
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

    #[test]
    fn runs_keep_line_order_across_threads() {
        let tok = crate::bpe::merge_free_tokenizer(r#"{"a":0,"b":1,"c":2,"d":3}"#);
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

    #[test]
    fn string_rows_skip_invalid_count_blank_and_report_bad() {
        let tok = crate::bpe::merge_free_tokenizer(r#"{"a":0,"b":1,"Ġ":2,"Ċ":3}"#);
        // rows: "ab", null, "  " (blank), "a\nb" (newline kept), "\xff", "aaaaaa" (too long)
        let data = b"ab  a\nb\xffaaaaaa";
        let offsets = [0i64, 2, 2, 4, 7, 8, 14];
        let valid = [true, false, true, true, true, true];
        let block = crate::bpe::pool()
            .install(|| encode_string_rows(&tok, data, &offsets, Some(&valid), false, Some(9), 5))
            .unwrap();
        let docs: Vec<u32> = block
            .runs
            .iter()
            .flat_map(|r| r.ids.iter().copied())
            .collect();
        assert_eq!(docs, [0, 1, 9, 0, 3, 1, 9]);
        assert_eq!(
            (block.documents(), block.empty, block.good_bytes),
            (2, 1, 5)
        );
        let bad_rows: Vec<usize> = block.bad.iter().map(|(i, _)| *i).collect();
        assert_eq!(bad_rows, [4, 5]);
        assert!(block.bad[0].1.contains("not UTF-8") && block.bad[1].1.contains("max-doc-bytes 5"));
        assert!(encode_string_rows(&tok, data, &[0, 99], None, false, None, 5).is_err());
    }
    #[test]
    fn truncation_the_file_refuses_is_a_bad_line() {
        // OnlySecond with one text: HF refuses any text that needs cutting.
        let json = r#"{"version":"1.0","added_tokens":[],"normalizer":null,
            "truncation":{"direction":"Right","max_length":2,"strategy":"OnlySecond","stride":0},
            "padding":null,
            "pre_tokenizer":{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":true},
            "post_processor":null,"decoder":null,"model":{"type":"BPE","vocab":{"a":0,"b":1,"c":2},"merges":[]}}"#;
        let tok = crate::bpe::from_json_str(json).unwrap();
        let block = crate::bpe::pool()
            .install(|| encode_line_block(&tok, b"ab\nabc\nba\n", None, false, Some(9), 100));
        let docs: Vec<u32> = block
            .runs
            .iter()
            .flat_map(|r| r.ids.iter().copied())
            .collect();
        assert_eq!(docs, [0, 1, 9, 1, 0, 9]);
        assert_eq!(block.bad.len(), 1);
        assert_eq!(block.bad[0].0, 1);
        assert!(
            block.bad[0].1.contains("no second sequence"),
            "{}",
            block.bad[0].1
        );
    }
}
