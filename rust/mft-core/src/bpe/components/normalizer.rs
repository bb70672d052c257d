//! Normalizers (HF's NFC/NFD/NFKC/NFKD, Lowercase, Strip, StripAccents,
//! Replace, Prepend, BertNormalizer, Precompiled, ByteLevel), with byte
//! alignment back to the original text for offsets.

use super::aligned::Aligned;
use super::precompiled::CharsMap;
use super::unicode_props::{
    is_bert_control, is_bert_whitespace, is_chinese_char, is_mark_nonspacing,
};
use crate::bpe::byte_level::byte_to_char;
use std::borrow::Cow;
use std::sync::Arc;
use unicode_normalization_alignments::UnicodeNormalization as Aligning;

/// One normalization step.
#[derive(Clone, Debug)]
pub enum NormStep {
    Nfc,
    Nfd,
    Nfkc,
    Nfkd,
    Lowercase,
    /// Removes leading / trailing whitespace.
    Strip {
        left: bool,
        right: bool,
    },
    /// Removes combining marks.
    StripAccents,
    /// Prepends the string to non-empty text (Llama-2's "▁").
    Prepend(String),
    /// Replaces every occurrence of `pattern` (Llama-2's " " -> "▁").
    Replace {
        pattern: String,
        content: String,
    },
    /// Replaces every match of a regex with `content` (taken literally).
    ReplaceRegex {
        re: Box<fancy_regex::Regex>,
        content: String,
    },
    /// BERT's cleanup, spaces around CJK ideographs, accent stripping, lowercasing.
    Bert {
        clean_text: bool,
        handle_chinese_chars: bool,
        strip_accents: bool,
        lowercase: bool,
    },
    /// SentencePiece's compiled normalization rules (T5, ALBERT, XLNet).
    Precompiled(Arc<CharsMap>),
    /// Every byte becomes its GPT-2 byte-level char.
    ByteLevel,
    /// SentencePiece's NMT cleanup: ASCII controls dropped, odd spaces become ' '.
    Nmt,
}

/// The normalizer: steps applied in order (empty: none).
#[derive(Clone, Debug, Default)]
pub struct Normalizer {
    pub steps: Vec<NormStep>,
}

impl Normalizer {
    pub fn none() -> Self {
        Normalizer { steps: Vec::new() }
    }

    pub fn apply<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut cur: Cow<'a, str> = Cow::Borrowed(text);
        for step in &self.steps {
            match step {
                NormStep::Nfc => {
                    if !unicode_normalization::is_nfc_quick(cur.chars())
                        .eq(&unicode_normalization::IsNormalized::Yes)
                    {
                        cur = Cow::Owned(
                            unicode_normalization::UnicodeNormalization::nfc(cur.as_ref())
                                .collect(),
                        );
                    }
                }
                NormStep::Prepend(p) => {
                    if !cur.is_empty() {
                        cur = Cow::Owned(format!("{p}{cur}"));
                    }
                }
                NormStep::Replace { pattern, content } => {
                    if !pattern.is_empty() && cur.contains(pattern.as_str()) {
                        cur = Cow::Owned(cur.replace(pattern.as_str(), content));
                    }
                }
                // ASCII is left alone by every Unicode normal form and has no marks.
                NormStep::Nfd | NormStep::Nfkd | NormStep::Nfkc | NormStep::StripAccents
                    if cur.is_ascii() => {}
                NormStep::Lowercase if cur.is_ascii() => {
                    if cur.bytes().any(|b| b.is_ascii_uppercase()) {
                        cur = Cow::Owned(cur.to_ascii_lowercase());
                    }
                }
                NormStep::Bert {
                    clean_text,
                    strip_accents: _,
                    handle_chinese_chars: _,
                    lowercase,
                } if cur.is_ascii() => {
                    // ASCII: no CJK, nothing to decompose; controls dropped
                    // (tab/newline/CR become spaces) and case folded byte-wise.
                    let out: String = cur
                        .bytes()
                        .filter(|&b| !*clean_text || !(b < b' ' || b == 0x7f) || matches!(b, b'\t' | b'\n' | b'\r'))
                        .map(|b| {
                            let b = if *clean_text && matches!(b, b'\t' | b'\n' | b'\r') { b' ' } else { b };
                            (if *lowercase { b.to_ascii_lowercase() } else { b }) as char
                        })
                        .collect();
                    cur = Cow::Owned(out);
                }
                other => {
                    let mut a = Aligned::untracked(&cur);
                    other.apply_to(&mut a);
                    cur = Cow::Owned(a.text);
                }
            }
        }
        cur
    }
}

impl NormStep {
    /// Applies this step to an aligned string as HF's NormalizedString would.
    fn apply_to(&self, a: &mut Aligned) {
        match self {
            NormStep::Nfc => a.transform(Aligning::nfc(a.text.as_str()).collect::<Vec<_>>(), 0),
            NormStep::Nfd => a.transform(Aligning::nfd(a.text.as_str()).collect::<Vec<_>>(), 0),
            NormStep::Nfkc => a.transform(Aligning::nfkc(a.text.as_str()).collect::<Vec<_>>(), 0),
            NormStep::Nfkd => a.transform(Aligning::nfkd(a.text.as_str()).collect::<Vec<_>>(), 0),
            NormStep::Lowercase => lowercase(a),
            NormStep::Strip { left, right } => strip(a, *left, *right),
            NormStep::StripAccents => {
                a.filter(|c| !unicode_normalization_alignments::char::is_combining_mark(c))
            }
            NormStep::Prepend(p) => {
                if !a.text.is_empty() {
                    // The prepended chars share the first char's range.
                    if a.track {
                        let mut m = vec![a.map[0]; p.len()];
                        m.extend_from_slice(&a.map);
                        a.map = m;
                    }
                    a.text.insert_str(0, p);
                }
            }
            NormStep::Replace { pattern, content } => {
                if pattern.is_empty() {
                    return;
                }
                let spans: Vec<(usize, usize)> = a
                    .text
                    .match_indices(pattern.as_str())
                    .map(|(i, m)| (i, i + m.len()))
                    .collect();
                replace_spans(a, &spans, content);
            }
            NormStep::ReplaceRegex { re, content } => {
                let mut spans = Vec::new();
                for m in re.find_iter(&a.text) {
                    let Ok(m) = m else { break };
                    spans.push((m.start(), m.end()));
                }
                replace_spans(a, &spans, content);
            }
            NormStep::Bert {
                clean_text,
                handle_chinese_chars,
                strip_accents,
                lowercase: lower,
            } => {
                if *clean_text {
                    a.filter(|c| !(c == '\0' || c == '\u{FFFD}' || is_bert_control(c)));
                    a.map_chars(|c| if is_bert_whitespace(c) { ' ' } else { c });
                }
                if *handle_chinese_chars && a.text.chars().any(is_chinese_char) {
                    let mut dest = Vec::with_capacity(a.text.len() + 8);
                    for c in a.text.chars() {
                        if is_chinese_char(c) {
                            dest.extend([(' ', 0), (c, 1), (' ', 1)]);
                        } else {
                            dest.push((c, 0));
                        }
                    }
                    a.transform(dest, 0);
                }
                if *strip_accents {
                    a.transform(Aligning::nfd(a.text.as_str()).collect::<Vec<_>>(), 0);
                    a.filter(|c| !is_mark_nonspacing(c));
                }
                if *lower {
                    lowercase(a);
                }
            }
            NormStep::Precompiled(map) => {
                if let Some(dest) = map.changes(&a.text) {
                    a.transform(dest, 0);
                }
            }
            NormStep::Nmt => {
                a.filter(
                    |c| !matches!(c as u32, 0x1..=0x8 | 0xB | 0xE..=0x1F | 0x7F | 0x8F | 0x9F),
                );
                a.map_chars(|c| match c as u32 {
                    0x9
                    | 0xA
                    | 0xC
                    | 0xD
                    | 0x1680
                    | 0x200B..=0x200F
                    | 0x2028
                    | 0x2029
                    | 0x2581
                    | 0xFEFF
                    | 0xFFFD => ' ',
                    _ => c,
                });
            }
            NormStep::ByteLevel => {
                let mut dest = Vec::with_capacity(a.text.len());
                for c in a.text.chars() {
                    let mut buf = [0u8; 4];
                    for (i, b) in c.encode_utf8(&mut buf).bytes().enumerate() {
                        dest.push((byte_to_char(b), isize::from(i > 0)));
                    }
                }
                a.transform(dest, 0);
            }
        }
    }
}

fn lowercase(a: &mut Aligned) {
    let mut dest = Vec::with_capacity(a.text.len());
    for c in a.text.chars() {
        for (i, l) in c.to_lowercase().enumerate() {
            dest.push((l, isize::from(i > 0)));
        }
    }
    a.transform(dest, 0);
}

/// HF's lstrip/rstrip: whitespace chars removed at the edges.
fn strip(a: &mut Aligned, left: bool, right: bool) {
    let n = a.text.chars().count();
    let lead = if left {
        a.text.chars().take_while(|c| c.is_whitespace()).count()
    } else {
        0
    };
    let trail = if right {
        a.text
            .chars()
            .rev()
            .take_while(|c| c.is_whitespace())
            .count()
    } else {
        0
    };
    if lead == 0 && trail == 0 {
        return;
    }
    let keep = n.saturating_sub(trail).saturating_sub(lead);
    let dest: Vec<(char, isize)> = a
        .text
        .chars()
        .skip(lead)
        .take(keep)
        .map(|c| (c, 0))
        .collect();
    a.transform(dest, lead);
}

/// HF's `replace`: every span becomes `content`, aligned with the span's last byte.
fn replace_spans(a: &mut Aligned, spans: &[(usize, usize)], content: &str) {
    if spans.is_empty() {
        return;
    }
    if !a.track {
        let mut text = String::with_capacity(a.text.len());
        let mut last = 0;
        for &(s, e) in spans {
            text.push_str(&a.text[last..s]);
            text.push_str(content);
            last = e;
        }
        text.push_str(&a.text[last..]);
        a.text = text;
        return;
    }
    let mut text = String::with_capacity(a.text.len());
    let mut map = Vec::with_capacity(a.map.len());
    let mut last = 0;
    for &(s, e) in spans {
        text.push_str(&a.text[last..s]);
        map.extend_from_slice(&a.map[last..s]);
        let align = if e == 0 { (0, 0) } else { a.map[e - 1] };
        text.push_str(content);
        map.extend(std::iter::repeat_n(align, content.len()));
        last = e;
    }
    text.push_str(&a.text[last..]);
    map.extend_from_slice(&a.map[last..]);
    a.text = text;
    a.map = map;
}

impl Normalizer {
    /// `apply` plus, per byte of the result, the byte range in `text` it
    /// came from (as HF aligns it).
    pub fn apply_aligned(&self, text: &str) -> (String, Vec<(usize, usize)>) {
        let mut a = Aligned::new(text);
        for step in &self.steps {
            step.apply_to(&mut a);
        }
        (a.text, a.map)
    }
}
