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
    /// id -> content after normalization, when the normalizer changes it
    /// (HF decodes and shows those tokens in that form).
    normalized_text: FxHashMap<u32, String>,
}

impl AddedVocab {
    pub fn new(tokens: Vec<AddedToken>) -> Result<Self> {
        Self::with_normalizer(tokens, &|s: &str| s.to_string())
    }

    /// `new`, matching `normalized` tokens by their content as `normalize`
    /// rewrites it (HF normalizes those tokens with the tokenizer's normalizer).
    pub fn with_normalizer(
        tokens: Vec<AddedToken>,
        normalize: &dyn Fn(&str) -> String,
    ) -> Result<Self> {
        let build = |want_normalized: bool| -> Result<Option<Matcher>> {
            let mut patterns: Vec<String> = Vec::new();
            let mut token_index = Vec::new();
            for (i, t) in tokens.iter().enumerate() {
                if t.normalized == want_normalized && !t.content.is_empty() {
                    let p = if want_normalized {
                        normalize(&t.content)
                    } else {
                        t.content.clone()
                    };
                    if p.is_empty() {
                        continue;
                    }
                    patterns.push(p);
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
        let mut normalized_text = FxHashMap::default();
        for t in tokens.iter().filter(|t| t.normalized) {
            let n = normalize(&t.content);
            if n != t.content {
                normalized_text.entry(t.id).or_insert(n);
            }
        }
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
            normalized_text,
        })
    }

    /// The text an added token's id decodes to (its normalized form for
    /// `normalized` tokens the normalizer changes, as HF).
    pub fn text_of(&self, id: u32) -> Option<&str> {
        match self.normalized_text.get(&id) {
            Some(t) => Some(t.as_str()),
            None => self.by_id(id).map(|t| t.content.as_str()),
        }
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

    /// True when some tokens are matched after normalization.
    pub fn has_normalized(&self) -> bool {
        self.normalized.is_some()
    }

    /// Splits raw text on the tokens matched before normalization.
    pub fn split_raw<'a>(&self, text: &'a str, out: &mut Vec<Segment<'a>>) {
        match &self.raw {
            _ if text.is_empty() => {}
            Some(m) => self.split_with(m, text, out),
            None => out.push(Segment::Text(text)),
        }
    }

    /// Splits normalized text on the tokens matched after normalization.
    pub fn split_normalized<'a>(&self, text: &'a str, out: &mut Vec<Segment<'a>>) {
        match &self.normalized {
            _ if text.is_empty() => {}
            Some(m) => self.split_with(m, text, out),
            None => out.push(Segment::Text(text)),
        }
    }

    /// Both passes on the same text (when no normalizer changes it).
    #[cfg(test)]
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

/// The regex `\w` HF tests `single_word` with: alphabetic, marks, decimal
/// digits, connector punctuation and the joiners (not other numbers like "①").
fn is_word_char(c: char) -> bool {
    use unicode_general_category::{get_general_category, GeneralCategory as G};
    c.is_alphabetic()
        || matches!(c, '\u{200C}' | '\u{200D}')
        || matches!(
            get_general_category(c),
            G::NonspacingMark
                | G::SpacingMark
                | G::EnclosingMark
                | G::DecimalNumber
                | G::ConnectorPunctuation
        )
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
