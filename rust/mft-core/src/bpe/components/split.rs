//! Splitting pre-tokenizers that only cut a piece (never rewrite it): HF's
//! Split (all five delimiter behaviours, `invert`), Whitespace,
//! WhitespaceSplit, Punctuation, Digits, CharDelimiterSplit,
//! BertPreTokenizer's two passes, UnicodeScripts and FixedLength.

use super::unicode_props::is_punctuation;
use super::hf_scripts::{hf_script_override, newer_than_hf_table};
use unicode_script::{Script, UnicodeScript};

/// What happens to the delimiter (the matched part), as HF's `SplitDelimiterBehavior`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behavior {
    Removed,
    Isolated,
    MergedWithPrevious,
    MergedWithNext,
    Contiguous,
}

impl Behavior {
    pub fn parse(s: &str) -> Option<Behavior> {
        Some(match s {
            "Removed" => Behavior::Removed,
            "Isolated" => Behavior::Isolated,
            "MergedWithPrevious" => Behavior::MergedWithPrevious,
            "MergedWithNext" => Behavior::MergedWithNext,
            "Contiguous" => Behavior::Contiguous,
            _ => return None,
        })
    }
}

/// What a delimiter is.
#[derive(Clone, Debug)]
pub enum Pattern {
    Regex(Box<fancy_regex::Regex>),
    /// One char per match, for each char the class accepts.
    Chars(CharClass),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CharClass {
    Whitespace,
    Punctuation,
    /// `char::is_numeric` (Digits: any Unicode number, "①" and "½" too).
    Numeric,
    Is(char),
}

impl CharClass {
    fn accepts(self, c: char) -> bool {
        match self {
            CharClass::Whitespace => c.is_whitespace(),
            CharClass::Punctuation => is_punctuation(c),
            CharClass::Numeric => c.is_numeric(),
            CharClass::Is(d) => c == d,
        }
    }
}

#[derive(Clone, Debug)]
pub enum Splitter {
    Pattern {
        pattern: Pattern,
        behavior: Behavior,
        invert: bool,
    },
    /// A new piece wherever the script changes (Hiragana/Katakana count as Han, spaces as any).
    UnicodeScripts,
    /// Pieces of this many chars.
    FixedLength(usize),
}

impl Splitter {
    pub fn chars(class: CharClass, behavior: Behavior) -> Self {
        Splitter::Pattern {
            pattern: Pattern::Chars(class),
            behavior,
            invert: false,
        }
    }

    /// HF's Whitespace pre-tokenizer: `\w+|[^\w\s]+` kept, the rest removed.
    pub fn whitespace() -> Self {
        let re = fancy_regex::Regex::new(r"\w+|[^\w\s]+").expect("a valid regex");
        Splitter::Pattern {
            pattern: Pattern::Regex(Box::new(re)),
            behavior: Behavior::Removed,
            invert: true,
        }
    }

    /// Non-empty byte ranges of the pieces of `s`, in order.
    pub fn spans(&self, s: &str) -> Vec<(usize, usize)> {
        match self {
            Splitter::Pattern {
                pattern,
                behavior,
                invert,
            } => {
                let mut m = find_matches(pattern, s);
                if *invert {
                    for x in m.iter_mut() {
                        x.2 = !x.2;
                    }
                }
                apply_behavior(m, *behavior)
            }
            Splitter::UnicodeScripts => script_spans(s),
            Splitter::FixedLength(n) => {
                let n = (*n).max(1);
                let starts: Vec<usize> = s.char_indices().map(|(i, _)| i).collect();
                starts
                    .chunks(n)
                    .enumerate()
                    .map(|(k, c)| {
                        let end = starts.get((k + 1) * n).copied().unwrap_or(s.len());
                        (c[0], end)
                    })
                    .collect()
            }
        }
    }
}

/// (start, end, is_match) covering `s`, as HF's `Pattern::find_matches`.
fn find_matches(pattern: &Pattern, s: &str) -> Vec<(usize, usize, bool)> {
    let mut out = Vec::new();
    if s.is_empty() {
        return out;
    }
    let mut prev = 0;
    match pattern {
        Pattern::Regex(re) => {
            for m in re.find_iter(s) {
                // A regex runtime error (backtracking limit) leaves the rest unmatched.
                let Ok(m) = m else { break };
                if prev != m.start() {
                    out.push((prev, m.start(), false));
                }
                out.push((m.start(), m.end(), true));
                prev = m.end();
            }
        }
        Pattern::Chars(class) => {
            for (i, c) in s.char_indices() {
                if class.accepts(c) {
                    if prev < i {
                        out.push((prev, i, false));
                    }
                    out.push((i, i + c.len_utf8(), true));
                    prev = i + c.len_utf8();
                }
            }
        }
    }
    if prev != s.len() {
        out.push((prev, s.len(), false));
    }
    out
}

/// HF's `NormalizedString::split` for one behaviour; empty pieces dropped.
fn apply_behavior(m: Vec<(usize, usize, bool)>, behavior: Behavior) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::with_capacity(m.len());
    match behavior {
        Behavior::Isolated => out.extend(m.iter().map(|&(a, b, _)| (a, b))),
        Behavior::Removed => out.extend(m.iter().filter(|x| !x.2).map(|&(a, b, _)| (a, b))),
        Behavior::Contiguous => {
            let mut prev = false;
            for (a, b, is) in m {
                match out.last_mut() {
                    Some(last) if is == prev => last.1 = b,
                    _ => out.push((a, b)),
                }
                prev = is;
            }
        }
        Behavior::MergedWithPrevious => {
            let mut prev = false;
            for (a, b, is) in m {
                match out.last_mut() {
                    Some(last) if is && !prev => last.1 = b,
                    _ => out.push((a, b)),
                }
                prev = is;
            }
        }
        Behavior::MergedWithNext => {
            let mut prev = false;
            for (a, b, is) in m.into_iter().rev() {
                match out.last_mut() {
                    Some(last) if is && !prev => last.0 = a,
                    _ => out.push((a, b)),
                }
                prev = is;
            }
            out.reverse();
        }
    }
    out.retain(|&(a, b)| a < b);
    out
}

/// HF's script of a char for UnicodeScripts: Hiragana, Katakana and the
/// prolonged sound mark count as Han; a space, a char with no script
/// (private use, unassigned) and a char assigned after HF's Unicode 9.0
/// table (`hf_scripts.rs`) match any script (None).
fn fixed_script(c: char) -> Option<Script> {
    if c == '\u{30FC}' {
        return Some(Script::Han);
    }
    if c == ' ' || newer_than_hf_table(c) {
        return None;
    }
    if let Some(s) = hf_script_override(c) {
        return Some(s);
    }
    match c.script() {
        Script::Hiragana | Script::Katakana => Some(Script::Han),
        Script::Unknown => None,
        s => Some(s),
    }
}

fn script_spans(s: &str) -> Vec<(usize, usize)> {
    let mut cuts = Vec::new();
    let mut last: Option<Option<Script>> = None;
    for (i, c) in s.char_indices() {
        let script = fixed_script(c);
        if script.is_some() && last != Some(None) && last != Some(script) {
            cuts.push(i);
        }
        if script.is_some() {
            last = Some(script);
        }
    }
    cuts.push(s.len());
    // As HF: pieces run from cut to cut, so chars of "any" script before the
    // first cut (leading spaces, private-use chars) are dropped.
    cuts.windows(2)
        .filter(|w| w[1] > w[0])
        .map(|w| (w[0], w[1]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces<'a>(sp: &Splitter, s: &'a str) -> Vec<&'a str> {
        sp.spans(s).into_iter().map(|(a, b)| &s[a..b]).collect()
    }

    #[test]
    fn the_five_behaviours_on_hf_s_example() {
        let s = "the-final--countdown";
        let dash = |b| Splitter::chars(CharClass::Is('-'), b);
        assert_eq!(
            pieces(&dash(Behavior::Removed), s),
            ["the", "final", "countdown"]
        );
        assert_eq!(
            pieces(&dash(Behavior::Isolated), s),
            ["the", "-", "final", "-", "-", "countdown"]
        );
        assert_eq!(
            pieces(&dash(Behavior::MergedWithPrevious), s),
            ["the-", "final-", "-", "countdown"]
        );
        assert_eq!(
            pieces(&dash(Behavior::MergedWithNext), s),
            ["the", "-final", "-", "-countdown"]
        );
        assert_eq!(
            pieces(&dash(Behavior::Contiguous), s),
            ["the", "-", "final", "--", "countdown"]
        );
    }

    #[test]
    fn whitespace_and_scripts() {
        assert_eq!(
            pieces(&Splitter::whitespace(), "Hey man!! how's it?"),
            ["Hey", "man", "!!", "how", "'", "s", "it", "?"]
        );
        assert_eq!(
            pieces(&Splitter::UnicodeScripts, "どこで生れ。Yes"),
            ["どこで生れ", "。", "Yes"]
        );
        // "Any"-script chars before the first script are dropped, as HF drops them.
        assert_eq!(
            pieces(&Splitter::UnicodeScripts, "\u{e000}a\u{378}b \u{e000}"),
            ["a\u{378}b \u{e000}"]
        );
        assert_eq!(pieces(&Splitter::UnicodeScripts, "  ab"), ["ab"]);
        assert!(pieces(&Splitter::UnicodeScripts, "   ").is_empty());
        assert_eq!(
            pieces(&Splitter::FixedLength(2), "abcde"),
            ["ab", "cd", "e"]
        );
    }
}
