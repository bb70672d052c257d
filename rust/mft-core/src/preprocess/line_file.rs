//! A whole file of lines -> documents, pipelined on the pool: while block k
//! goes to the sink (the .bin writer), block k+1 is being encoded. Lines are
//! numbered here, so bad ones come back as (1-based line, message); they are
//! fatal (the first one stops the run) or skipped and counted.

use super::line_block::{encode_line_block, LineBlock};
use crate::bpe::Tokenizer;

/// How the lines are read.
#[derive(Debug, Clone)]
pub struct LineOptions<'a> {
    /// JSONL with the text under this key, or plain text when None.
    pub field: Option<&'a str>,
    pub add_special_tokens: bool,
    /// Appended after every document (the EOD separator).
    pub eod: Option<u32>,
    /// Longer lines are bad (never encoded, never held whole).
    pub max_doc_bytes: usize,
    /// Bytes per block of lines (a longer line is a block by itself).
    pub block_bytes: usize,
    pub skip_bad: bool,
    /// Threads to encode with; 0 for the process's shared pool.
    pub threads: usize,
}

/// Counts for a whole file.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LinesReport {
    pub documents: usize,
    pub bad: usize,
    /// The first few bad lines: (1-based line number, message).
    pub bad_examples: Vec<(usize, String)>,
    pub empty: usize,
    /// Bytes of the good documents' lines.
    pub good_bytes: usize,
}

#[derive(Debug)]
pub enum LinesError<E> {
    /// The first bad line, when bad lines are fatal.
    BadLine { line: usize, message: String },
    /// The sink's own error.
    Sink(E),
}

const BAD_EXAMPLES: usize = 5;

enum Piece {
    Encoded(LineBlock),
    TooLong(usize),
}

/// Encodes every line of `data` (a whole file) and hands each block's
/// documents to `sink(block, bytes consumed)` in file order.
pub fn encode_lines<E, S>(
    tok: &Tokenizer,
    data: &[u8],
    opts: &LineOptions,
    mut sink: S,
) -> Result<LinesReport, LinesError<E>>
where
    E: Send,
    S: FnMut(&LineBlock, usize) -> Result<(), E> + Send,
{
    let pool = crate::bpe::pool_of(opts.threads);
    let mut report = LinesReport::default();
    let mut next_line = 1usize;
    let mut pending: Option<(Piece, usize)> = None;
    let mut pos = 0usize;
    loop {
        let next = (pos < data.len()).then(|| (pos, block_end(data, pos, opts.block_bytes)));
        if next.is_none() && pending.is_none() {
            return Ok(report);
        }
        let taking = pending.take();
        let (encoded, taken) = pool.install(|| {
            rayon::join(
                || {
                    next.map(|(start, end)| {
                        (encode_piece(tok, &data[start..end], opts), end - start)
                    })
                },
                || match taking {
                    Some((piece, bytes)) => {
                        take(piece, bytes, opts, &mut report, &mut next_line, &mut sink)
                    }
                    None => Ok(()),
                },
            )
        });
        taken?;
        pending = encoded;
        if let Some((_, end)) = next {
            pos = end;
        }
    }
}

fn encode_piece(tok: &Tokenizer, block: &[u8], opts: &LineOptions) -> Piece {
    // Only a single line makes a block longer than block_bytes.
    if block.len() > opts.block_bytes && block.len() > opts.max_doc_bytes {
        return Piece::TooLong(block.len());
    }
    Piece::Encoded(encode_line_block(
        tok,
        block,
        opts.field,
        opts.add_special_tokens,
        opts.eod,
        opts.max_doc_bytes,
    ))
}

/// Accounts for one piece, in file order, and passes its documents on.
fn take<E, S>(
    piece: Piece,
    bytes: usize,
    opts: &LineOptions,
    report: &mut LinesReport,
    next_line: &mut usize,
    sink: &mut S,
) -> Result<(), LinesError<E>>
where
    S: FnMut(&LineBlock, usize) -> Result<(), E>,
{
    let mut bad = |line: usize, message: String| {
        if !opts.skip_bad {
            return Err(LinesError::BadLine { line, message });
        }
        report.bad += 1;
        if report.bad_examples.len() < BAD_EXAMPLES {
            report.bad_examples.push((line, message));
        }
        Ok(())
    };
    let block = match piece {
        Piece::TooLong(size) => {
            let max = opts.max_doc_bytes;
            bad(
                *next_line,
                format!("document of {size} bytes exceeds --max-doc-bytes {max}"),
            )?;
            *next_line += 1;
            LineBlock::default()
        }
        Piece::Encoded(block) => {
            for (i, message) in &block.bad {
                bad(*next_line + i, message.clone())?;
            }
            *next_line += block.lines;
            block
        }
    };
    report.empty += block.empty;
    report.good_bytes += block.good_bytes;
    report.documents += block.documents();
    sink(&block, bytes).map_err(LinesError::Sink)
}

/// The end of the block starting at `start`: after the last newline within
/// `block_bytes`, or after the one line that is longer than that.
fn block_end(data: &[u8], start: usize, block_bytes: usize) -> usize {
    let limit = (start + block_bytes.max(1)).min(data.len());
    if limit == data.len() {
        return limit;
    }
    match memchr::memrchr(b'\n', &data[start..limit]) {
        Some(i) => start + i + 1,
        None => memchr::memchr(b'\n', &data[limit..]).map_or(data.len(), |i| limit + i + 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok() -> Tokenizer {
        crate::bpe::merge_free_tokenizer(r#"{"a":0,"b":1,"c":2,"\n":3}"#)
    }

    fn run(
        data: &[u8],
        block_bytes: usize,
        skip_bad: bool,
    ) -> (Result<LinesReport, LinesError<()>>, Vec<Vec<u32>>) {
        let opts = LineOptions {
            field: None,
            add_special_tokens: false,
            eod: Some(3),
            max_doc_bytes: 6,
            block_bytes,
            skip_bad,
            threads: 0,
        };
        let mut docs = Vec::new();
        let res = encode_lines(&tok(), data, &opts, |b: &LineBlock, _| {
            for run in &b.runs {
                let mut at = 0;
                for &n in &run.lengths {
                    docs.push(run.ids[at..at + n as usize].to_vec());
                    at += n as usize;
                }
            }
            Ok(())
        });
        (res, docs)
    }

    #[test]
    fn same_documents_and_line_numbers_for_any_block_size() {
        let data = b"ab\n\ncab\naaaaaaaaaa\nbb\n\xff\nc";
        for block_bytes in [1, 2, 3, 5, 8, 64] {
            let (res, docs) = run(data, block_bytes, true);
            let report = res.unwrap();
            assert_eq!(
                docs,
                vec![vec![0, 1, 3], vec![2, 0, 1, 3], vec![1, 1, 3], vec![2, 3]],
                "block {block_bytes}"
            );
            assert_eq!(report.bad, 2);
            assert_eq!(report.bad_examples[0].0, 4, "block {block_bytes}");
            assert!(report.bad_examples[0]
                .1
                .contains("exceeds --max-doc-bytes 6"));
            assert_eq!(report.bad_examples[1].0, 6);
            assert!(report.bad_examples[1].1.contains("not UTF-8"));
        }
    }

    #[test]
    fn the_first_bad_line_stops_a_strict_run() {
        for block_bytes in [2, 64] {
            match run(b"ab\n\xff\naaaaaaaaaaaa\n", block_bytes, false).0 {
                Err(LinesError::BadLine { line, message }) => {
                    assert_eq!(line, 2);
                    assert!(message.contains("not UTF-8"), "{message}");
                }
                other => panic!("expected a bad line, got {other:?}"),
            }
        }
    }
}
