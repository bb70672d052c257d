//! Added tokens (special or not): matched in the raw text before
//! pre-tokenization and never split, like HF's AddedVocabulary.

use super::error::{Error, Result};
use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use rustc_hash::FxHashMap;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddedToken {
    pub id: u32,
    pub content: String,
    pub single_word: bool,
    pub lstrip: bool,
    pub rstrip: bool,
    pub normalized: bool,
    pub special: bool,
}

impl AddedToken {
    /// A special token as HF's trainer adds it (not normalized, no stripping).
    pub fn special(id: u32, content: &str) -> Self {
        AddedToken {
            id,
            content: content.to_string(),
            single_word: false,
            lstrip: false,
            rstrip: false,
            normalized: false,
            special: true,
        }
    }
}

/// One piece of the input after added-token extraction.
#[derive(Debug, PartialEq, Eq)]
pub enum Segment<'a> {
    Text(&'a str),
    /// An added token's id and the text it covers (for offsets).
    Token(u32, &'a str),
}

/// Leftmost-longest matcher over one group of added tokens.
struct Matcher {
    ac: AhoCorasick,
    /// Index into `AddedVocab::tokens` for each pattern.
    token_index: Vec<usize>,
}

pub struct AddedVocab {
    pub tokens: Vec<AddedToken>,
    /// id / content -> index into `tokens` (the first one wins on duplicates).
    by_id: FxHashMap<u32, usize>,
    by_content: FxHashMap<String, usize>,
    /// Tokens with `normalized: false`, matched on the raw text first.
    raw: Option<Matcher>,
    /// Tokens with `normalized: true`, matched in the remaining text.
    normalized: Option<Matcher>,
}

impl AddedVocab {
    pub fn new(tokens: Vec<AddedToken>) -> Result<Self> {
        let build = |want_normalized: bool| -> Result<Option<Matcher>> {
            let mut patterns = Vec::new();
            let mut token_index = Vec::new();
            for (i, t) in tokens.iter().enumerate() {
                if t.normalized == want_normalized && !t.content.is_empty() {
                    patterns.push(t.content.as_str());
                    token_index.push(i);
                }
            }
            if patterns.is_empty() {
                return Ok(None);
            }
            let ac = AhoCorasickBuilder::new()
                .match_kind(MatchKind::LeftmostLongest)
                .build(&patterns)
                .map_err(|e| Error::Format(format!("added_tokens: cannot build matcher: {e}")))?;
            Ok(Some(Matcher { ac, token_index }))
        };
        let raw = build(false)?;
        let normalized = build(true)?;
        let mut by_id = FxHashMap::default();
        let mut by_content = FxHashMap::default();
        for (i, t) in tokens.iter().enumerate() {
            by_id.entry(t.id).or_insert(i);
            by_content.entry(t.content.clone()).or_insert(i);
        }
        Ok(AddedVocab {
            tokens,
            by_id,
            by_content,
            raw,
            normalized,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    pub fn by_content(&self, content: &str) -> Option<&AddedToken> {
        self.by_content.get(content).map(|&i| &self.tokens[i])
    }

    pub fn by_id(&self, id: u32) -> Option<&AddedToken> {
        self.by_id.get(&id).map(|&i| &self.tokens[i])
    }

    /// Splits `text` on raw-matched tokens, then splits each text gap on the
    /// normalized-matched ones (mft supports no normalizer that would change
    /// the text between the two passes except NFC, applied by the caller).
    pub fn split<'a>(&self, text: &'a str, out: &mut Vec<Segment<'a>>) {
        if text.is_empty() {
            return;
        }
        match (&self.raw, &self.normalized) {
            (None, None) => out.push(Segment::Text(text)),
            (Some(m), None) | (None, Some(m)) => self.split_with(m, text, out),
            (Some(raw), Some(norm)) => {
                let mut first = Vec::new();
                self.split_with(raw, text, &mut first);
                for seg in first {
                    match seg {
                        Segment::Text(t) => self.split_with(norm, t, out),
                        tok => out.push(tok),
                    }
                }
            }
        }
    }

    /// HF's `find_matches`: single_word / lstrip / rstrip rules, empty gaps dropped.
    fn split_with<'a>(&self, m: &Matcher, text: &'a str, out: &mut Vec<Segment<'a>>) {
        let mut offset = 0;
        for mat in m.ac.find_iter(text) {
            let tok = &self.tokens[m.token_index[mat.pattern().as_usize()]];
            let (mut start, mut stop) = (mat.start(), mat.end());
            if tok.single_word {
                let before_ok = start == 0 || !ends_with_word_char(&text[..start]);
                let after_ok = stop == text.len() || !starts_with_word_char(&text[stop..]);
                if !before_ok || !after_ok {
                    continue;
                }
            }
            if tok.lstrip {
                let trimmed = text[..start].trim_end_matches(char::is_whitespace).len();
                start = trimmed.max(offset);
            }
            if tok.rstrip {
                let rest = &text[stop..];
                stop += rest.len() - rest.trim_start_matches(char::is_whitespace).len();
            }
            if offset < start {
                out.push(Segment::Text(&text[offset..start]));
            }
            out.push(Segment::Token(tok.id, &text[start..stop]));
            offset = stop;
        }
        if offset < text.len() {
            out.push(Segment::Text(&text[offset..]));
        }
    }
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn ends_with_word_char(s: &str) -> bool {
    s.chars().next_back().is_some_and(is_word_char)
}

fn starts_with_word_char(s: &str) -> bool {
    s.chars().next().is_some_and(is_word_char)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(id: u32, s: &str) -> AddedToken {
        AddedToken::special(id, s)
    }

    #[test]
    fn longest_match_wins_and_gaps_are_kept() {
        let v =
            AddedVocab::new(vec![tok(0, "<|a|>"), tok(1, "<|a|><|b|>"), tok(2, "<|b|>")]).unwrap();
        let mut out = Vec::new();
        v.split("x<|a|><|b|>y<|b|>", &mut out);
        assert_eq!(
            out,
            vec![
                Segment::Text("x"),
                Segment::Token(1, "<|a|><|b|>"),
                Segment::Text("y"),
                Segment::Token(2, "<|b|>")
            ]
        );
        out.clear();
        v.split("", &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn lstrip_and_rstrip_eat_whitespace() {
        let mut t = tok(5, "<mask>");
        t.lstrip = true;
        t.rstrip = true;
        let v = AddedVocab::new(vec![t]).unwrap();
        let mut out = Vec::new();
        v.split("a  <mask>  b", &mut out);
        assert_eq!(
            out,
            vec![
                Segment::Text("a"),
                Segment::Token(5, "  <mask>  "),
                Segment::Text("b")
            ]
        );
    }
}
