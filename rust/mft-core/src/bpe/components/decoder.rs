//! Decoders: HF's `decode_chain` steps over token strings.

use super::super::byte_level::token_to_bytes;

/// One decoder step over the token strings (HF's `decode_chain`).
#[derive(Clone, Debug)]
pub enum DecStep {
    /// Byte-level chars back to bytes; all tokens become one string.
    ByteLevel,
    Replace {
        pattern: String,
        content: String,
    },
    /// Runs of `<0xHH>` tokens become the UTF-8 text of their bytes (U+FFFD per byte if invalid).
    ByteFallback,
    /// All tokens joined into one.
    Fuse,
    /// Removes up to `start` leading / `stop` trailing `content` chars from every token.
    Strip {
        content: char,
        start: usize,
        stop: usize,
    },
    /// Markers back to spaces; the first token loses its markers unless `prepend` is Never.
    Metaspace {
        replacement: char,
        strip_first: bool,
    },
    /// Replace with a regex pattern (`content` taken literally).
    ReplaceRegex {
        re: Box<fancy_regex::Regex>,
        content: String,
    },
    /// WordPiece: tokens without `prefix` get a leading space; `cleanup`
    /// removes spaces before punctuation and contractions.
    WordPiece {
        prefix: String,
        cleanup: bool,
    },
    /// BPEDecoder: `suffix` becomes a space (nothing on the last token).
    BpeSuffix(String),
    /// CTC: repeats collapsed, `pad` removed, `delimiter` becomes a space (with cleanup).
    Ctc {
        pad: String,
        delimiter: String,
        cleanup: bool,
    },
}

#[derive(Clone, Debug)]
pub enum Decoder {
    /// No decoder: HF joins the tokens with spaces.
    None,
    Chain(Vec<DecStep>),
}

impl Decoder {
    pub fn byte_level() -> Self {
        Decoder::Chain(vec![DecStep::ByteLevel])
    }

    pub fn decode(&self, tokens: &[&str]) -> String {
        let steps = match self {
            Decoder::None => return tokens.join(" "),
            Decoder::Chain(steps) => steps,
        };
        if let [DecStep::ByteLevel] = steps.as_slice() {
            let mut bytes = Vec::with_capacity(tokens.len() * 4);
            for t in tokens {
                token_to_bytes(t, &mut bytes);
            }
            return String::from_utf8_lossy(&bytes).into_owned();
        }
        let mut toks: Vec<String> = tokens.iter().map(|t| t.to_string()).collect();
        for step in steps {
            toks = decode_step(step, toks);
        }
        toks.concat()
    }
}

fn byte_token(t: &str) -> Option<u8> {
    let hex = t.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

fn decode_step(step: &DecStep, toks: Vec<String>) -> Vec<String> {
    match step {
        DecStep::ByteLevel => {
            let mut bytes = Vec::new();
            for t in &toks {
                token_to_bytes(t, &mut bytes);
            }
            vec![String::from_utf8_lossy(&bytes).into_owned()]
        }
        DecStep::Replace { pattern, content } => toks
            .into_iter()
            .map(|t| {
                if pattern.is_empty() {
                    t
                } else {
                    t.replace(pattern.as_str(), content)
                }
            })
            .collect(),
        DecStep::ByteFallback => {
            let mut out = Vec::with_capacity(toks.len());
            let mut pending: Vec<u8> = Vec::new();
            let flush = |pending: &mut Vec<u8>, out: &mut Vec<String>| {
                if pending.is_empty() {
                    return;
                }
                match std::str::from_utf8(pending) {
                    Ok(s) => out.push(s.to_string()),
                    Err(_) => {
                        out.extend(std::iter::repeat_n("\u{FFFD}".to_string(), pending.len()))
                    }
                }
                pending.clear();
            };
            for t in toks {
                match byte_token(&t) {
                    Some(b) => pending.push(b),
                    None => {
                        flush(&mut pending, &mut out);
                        out.push(t);
                    }
                }
            }
            flush(&mut pending, &mut out);
            out
        }
        DecStep::Fuse => vec![toks.concat()],
        DecStep::ReplaceRegex { re, content } => toks
            .into_iter()
            .map(|t| {
                let mut out = String::with_capacity(t.len());
                let mut last = 0;
                for m in re.find_iter(&t) {
                    let Ok(m) = m else { break };
                    out.push_str(&t[last..m.start()]);
                    out.push_str(content);
                    last = m.end();
                }
                out.push_str(&t[last..]);
                out
            })
            .collect(),
        DecStep::WordPiece { prefix, cleanup } => toks
            .into_iter()
            .enumerate()
            .map(|(i, t)| {
                let t = if i == 0 {
                    t
                } else if let Some(rest) = t.strip_prefix(prefix.as_str()) {
                    rest.to_string()
                } else {
                    format!(" {t}")
                };
                if *cleanup {
                    wordpiece_cleanup(&t)
                } else {
                    t
                }
            })
            .collect(),
        DecStep::BpeSuffix(suffix) => {
            let n = toks.len();
            toks.into_iter()
                .enumerate()
                .map(|(i, t)| t.replace(suffix.as_str(), if i + 1 == n { "" } else { " " }))
                .collect()
        }
        DecStep::Ctc {
            pad,
            delimiter,
            cleanup,
        } => {
            let mut out = Vec::with_capacity(toks.len());
            let mut prev: Option<String> = None;
            for t in toks {
                if prev.as_ref() == Some(&t) {
                    continue;
                }
                prev = Some(t.clone());
                let mut r = t.replace(pad.as_str(), "");
                if *cleanup {
                    r = wordpiece_cleanup(&r).replace(delimiter.as_str(), " ");
                }
                if !r.is_empty() {
                    out.push(r);
                }
            }
            out
        }
        DecStep::Strip {
            content,
            start,
            stop,
        } => toks
            .into_iter()
            .map(|t| {
                let chars: Vec<char> = t.chars().collect();
                let lead = chars
                    .iter()
                    .take(*start)
                    .take_while(|&&c| c == *content)
                    .count();
                let trail = chars[lead..]
                    .iter()
                    .rev()
                    .take(*stop)
                    .take_while(|&&c| c == *content)
                    .count();
                chars[lead..chars.len() - trail].iter().collect()
            })
            .collect(),
        DecStep::Metaspace {
            replacement,
            strip_first,
        } => toks
            .into_iter()
            .enumerate()
            .map(|(i, t)| {
                // HF drops every marker of the first token (not only a leading one).
                t.chars()
                    .filter_map(|c| match c {
                        c if c == *replacement && i == 0 && *strip_first => None,
                        c if c == *replacement => Some(' '),
                        c => Some(c),
                    })
                    .collect()
            })
            .collect(),
    }
}

/// HF's WordPiece decoder cleanup (spaces before punctuation and contractions).
fn wordpiece_cleanup(s: &str) -> String {
    s.replace(" .", ".")
        .replace(" ?", "?")
        .replace(" !", "!")
        .replace(" ,", ",")
        .replace(" ' ", "'")
        .replace(" n't", "n't")
        .replace(" 'm", "'m")
        .replace(" do not", " don't")
        .replace(" 's", "'s")
        .replace(" 've", "'ve")
        .replace(" 're", "'re")
}
