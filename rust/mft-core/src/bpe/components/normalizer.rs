//! Normalizers (HF's NFC, Prepend, Replace with a string pattern), with
//! byte alignment back to the original text for offsets.

use super::pre_tokenizer::char_spans;
use std::borrow::Cow;
use unicode_normalization::UnicodeNormalization;

/// One normalization step (HF normalizers NFC, Prepend, Replace with a string pattern).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NormStep {
    Nfc,
    /// Prepends the string to non-empty text (Llama-2's "▁").
    Prepend(String),
    /// Replaces every occurrence of `pattern` (Llama-2's " " -> "▁").
    Replace {
        pattern: String,
        content: String,
    },
}

/// The normalizer: steps applied in order (empty: none).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
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
                        cur = Cow::Owned(cur.nfc().collect());
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
            }
        }
        cur
    }
}

impl Normalizer {
    /// `apply` plus, per byte of the result, the byte range in `text` it
    /// came from. NFC is aligned per run of a starter and its combining marks.
    pub fn apply_aligned(&self, text: &str) -> (String, Vec<(usize, usize)>) {
        let mut cur = text.to_string();
        let mut map = char_spans(text);
        for step in &self.steps {
            match step {
                NormStep::Nfc => {
                    let mut s = String::with_capacity(cur.len());
                    let mut m = Vec::with_capacity(cur.len());
                    let mut starts: Vec<usize> = cur
                        .char_indices()
                        .filter(|&(i, c)| i == 0 || is_nfc_boundary(c))
                        .map(|(i, _)| i)
                        .collect();
                    starts.push(cur.len());
                    for w in starts.windows(2) {
                        let (a, b) = (w[0], w[1]);
                        if a == b {
                            continue;
                        }
                        // As HF aligns: the first output char takes the first
                        // source char's range, the rest line up from the end
                        // (composition consumes the chars right after the first).
                        let srcs: Vec<(usize, usize)> =
                            cur[a..b].char_indices().map(|(i, _)| map[a + i]).collect();
                        let outs: Vec<char> = cur[a..b].nfc().collect();
                        for (k, &c) in outs.iter().enumerate() {
                            let j = if k == 0 {
                                0
                            } else {
                                (srcs.len() + k).saturating_sub(outs.len())
                            };
                            let src = srcs[j.min(srcs.len() - 1)];
                            m.extend(std::iter::repeat_n(src, c.len_utf8()));
                            s.push(c);
                        }
                    }
                    cur = s;
                    map = m;
                }
                NormStep::Prepend(p) => {
                    if !cur.is_empty() {
                        let mut m = vec![map[0]; p.len()];
                        m.extend_from_slice(&map);
                        cur = format!("{p}{cur}");
                        map = m;
                    }
                }
                NormStep::Replace { pattern, content } => {
                    if pattern.is_empty() {
                        continue;
                    }
                    let mut s = String::with_capacity(cur.len());
                    let mut m = Vec::with_capacity(cur.len());
                    let mut i = 0;
                    while i < cur.len() {
                        if cur[i..].starts_with(pattern.as_str()) {
                            let src = (map[i].0, map[i + pattern.len() - 1].1);
                            s.push_str(content);
                            m.extend(std::iter::repeat_n(src, content.len()));
                            i += pattern.len();
                        } else {
                            let c = cur[i..].chars().next().unwrap_or('\0');
                            let n = c.len_utf8();
                            s.push_str(&cur[i..i + n]);
                            m.extend_from_slice(&map[i..i + n]);
                            i += n;
                        }
                    }
                    cur = s;
                    map = m;
                }
            }
        }
        (cur, map)
    }
}

/// A char that starts an independent NFC run (a starter that never composes
/// with what precedes it; Hangul vowels/trailing jamo compose, so they don't).
fn is_nfc_boundary(c: char) -> bool {
    unicode_normalization::char::canonical_combining_class(c) == 0
        && !('\u{1160}'..='\u{11FF}').contains(&c)
}
