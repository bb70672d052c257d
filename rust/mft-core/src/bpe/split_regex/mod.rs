//! The regex of a `Split` pre-tokenizer, run by the fastest engine that
//! gives exactly its matches: a hand-written scanner for the patterns real
//! tokenizer files ship (GPT-2, cl100k/Llama-3, Qwen2, o200k, DeepSeek-V3),
//! else a lazy DFA (`dfa.rs`), else fancy-regex's backtracking engine (only
//! for look-around or backreferences the DFA cannot express).

mod classes;
mod dfa;
mod scanners;
#[cfg(test)]
mod tests;

use dfa::Dfa;
pub use scanners::{digits3_then_cjk, Family};

/// Known patterns, as written in tokenizer files and read as HF's Oniguruma
/// reads them (`x{n,m}+` is `(?:x{n,m})+` there, not possessive as in
/// fancy-regex and tiktoken; the tests compare with `onig_reading`) (after `\r`/`\n` chars in
/// the JSON string are spelled as escapes, see `canonical`).
const KNOWN: [(&str, Family); 10] = [
    (
        r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+",
        Family::Gpt2,
    ),
    (
        r"'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s",
        Family::Gpt2,
    ),
    (
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
        Family::Cl100k {
            digits: 3,
            end_first: false,
        },
    ),
    (
        r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s",
        Family::Cl100k {
            digits: 0,
            end_first: true,
        },
    ),
    (
        r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+",
        Family::Cl100k {
            digits: 3,
            end_first: false,
        },
    ),
    (
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
        Family::Cl100k {
            digits: 1,
            end_first: false,
        },
    ),
    (
        r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",
        Family::O200k,
    ),
    (r"\p{N}{1,3}", Family::Digits3),
    (
        "[\u{4e00}-\u{9fa5}\u{3040}-\u{309f}\u{30a0}-\u{30ff}]+",
        Family::DeepSeekCjk,
    ),
    (
        r##"[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"##,
        Family::DeepSeekMain,
    ),
];

/// `pattern` spelled for fancy-regex as Oniguruma (Ruby syntax) reads it:
/// the one construct among the known patterns that differs is `\p{N}{1,3}+`.
#[cfg(test)]
pub(crate) fn onig_reading(pattern: &str) -> String {
    pattern.replace(r"\p{N}{1,3}+", r"(?:\p{N}{1,3})+")
}

/// `source` with raw CR/LF chars spelled `\r`/`\n` (DeepSeek's file has the
/// raw chars inside its classes; both spellings mean the same regex).
fn canonical(source: &str) -> String {
    source.replace('\r', r"\r").replace('\n', r"\n")
}

/// The scanner for `source`, if it is a known pattern. A leading `(?m)` (how
/// a pattern with `$` is compiled, see `json_read::compile`) changes nothing
/// in the known ones: their only `$` follows a possessive `\s++`, which
/// leaves no newline before it.
pub fn known_family(source: &str) -> Option<Family> {
    let s = canonical(source.strip_prefix("(?m)").unwrap_or(source));
    KNOWN.iter().find(|(p, _)| *p == s).map(|(_, f)| *f)
}

#[derive(Clone, Debug)]
enum Engine {
    Scanner(Family),
    Dfa(Box<Dfa>),
    Backtracking(Box<fancy_regex::Regex>),
}

/// A compiled split regex.
#[derive(Clone, Debug)]
pub struct SplitRegex {
    engine: Engine,
    fancy: Box<fancy_regex::Regex>,
}

impl SplitRegex {
    /// Picks the engine for an already compiled (so valid) regex.
    pub fn new(fancy: Box<fancy_regex::Regex>) -> SplitRegex {
        let source = fancy.as_str();
        let engine = if let Some(f) = known_family(source) {
            Engine::Scanner(f)
        } else if let Some(d) = Dfa::new(source) {
            Engine::Dfa(Box::new(d))
        } else {
            Engine::Backtracking(fancy.clone())
        };
        SplitRegex { engine, fancy }
    }

    pub fn as_str(&self) -> &str {
        self.fancy.as_str()
    }

    /// The general engine's regex (what the JSON holds).
    pub fn fancy(&self) -> &fancy_regex::Regex {
        &self.fancy
    }

    /// Which engine runs: "scanner", "dfa" or "backtracking".
    /// The hand-written scanner this regex runs on, if any.
    pub fn family(&self) -> Option<Family> {
        match self.engine {
            Engine::Scanner(f) => Some(f),
            _ => None,
        }
    }

    pub fn engine_name(&self) -> &'static str {
        match self.engine {
            Engine::Scanner(_) => "scanner",
            Engine::Dfa(_) => "dfa",
            Engine::Backtracking(_) => "backtracking",
        }
    }

    /// Split "Isolated": calls `f(start, end)` for each gap between matches
    /// and each non-empty match, in order; together they tile `text`.
    pub fn isolated(&self, text: &str, f: &mut dyn FnMut(usize, usize)) {
        self.isolated_with(text, f)
    }

    /// `isolated` with the callback inlined into the scanner's loop (the
    /// encoder's path: one call per piece fewer).
    #[inline]
    pub fn isolated_with<F: FnMut(usize, usize)>(&self, text: &str, mut f: F) {
        match &self.engine {
            Engine::Scanner(family) => scanners::isolated(*family, text, f),
            Engine::Dfa(_) | Engine::Backtracking(_) => self.isolated_general(text, &mut f),
        }
    }

    fn isolated_general(&self, text: &str, f: &mut dyn FnMut(usize, usize)) {
        match &self.engine {
            Engine::Scanner(family) => scanners::isolated(*family, text, f),
            Engine::Dfa(d) => {
                let mut last = 0;
                d.for_each_match(text, &mut |a, b| {
                    if a > last {
                        f(last, a);
                    }
                    f(a, b);
                    last = b;
                });
                if last < text.len() {
                    f(last, text.len());
                }
            }
            Engine::Backtracking(re) => backtracking_isolated(re, text, f),
        }
    }
}

/// Split "Isolated" with the backtracking engine: the reference behaviour.
pub fn backtracking_isolated(re: &fancy_regex::Regex, text: &str, f: &mut dyn FnMut(usize, usize)) {
    let mut last = 0;
    for m in re.find_iter(text) {
        // A regex runtime error (backtracking limit) leaves the rest whole.
        let Ok(m) = m else { break };
        if m.start() > last {
            f(last, m.start());
        }
        if m.end() > m.start() {
            f(m.start(), m.end());
        }
        last = m.end();
    }
    if last < text.len() {
        f(last, text.len());
    }
}
