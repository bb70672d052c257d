//! Every engine against the backtracking regex (the reference) on random
//! and adversarial Unicode: long whitespace runs, combining marks, mixed
//! scripts, cased letters, contractions, numbers of every length.

use super::dfa::Dfa;
use super::scanners::{self, Family};
use super::{backtracking_isolated, onig_reading, SplitRegex, KNOWN};
use proptest::prelude::*;
use std::cell::RefCell;
use std::collections::HashMap;

/// Chars each pattern treats specially, weighted over random ones.
const ALPHABET: &[char] = &[
    'a',
    'b',
    's',
    't',
    'r',
    'e',
    'v',
    'm',
    'l',
    'd',
    'S',
    'T',
    'R',
    'E',
    'V',
    'M',
    'L',
    'D',
    'Z',
    'ſ',
    '\u{212A}',
    'é',
    'É',
    'ǅ',
    'ʰ',
    'ß',
    '0',
    '1',
    '7',
    '9',
    '٣',
    '½',
    'Ⅻ',
    '𝟙',
    ' ',
    ' ',
    ' ',
    '\t',
    '\n',
    '\r',
    '\u{0B}',
    '\u{0C}',
    '\u{85}',
    '\u{a0}',
    '\u{2028}',
    '\u{3000}',
    '\u{200B}',
    '\u{301}',
    '\u{308}',
    '\u{93f}',
    '\u{200D}',
    '\u{FEFF}',
    '\'',
    '\'',
    '/',
    '!',
    '?',
    '.',
    ',',
    '-',
    '_',
    '`',
    '"',
    '(',
    '[',
    '\\',
    '+',
    '<',
    '$',
    '€',
    '©',
    '「',
    '。',
    '，',
    '·',
    '😀',
    '中',
    '文',
    '龥',
    '\u{9fa6}',
    '\u{4dff}',
    'ぁ',
    '\u{3040}',
    'ア',
    'ー',
    '\u{30ff}',
    '한',
    'Ж',
    'ж',
    'ا',
    'ب',
    'क',
    '\u{378}',
    '\u{E000}',
    '\u{10FFFF}',
    '\0',
    '\u{7f}',
];

fn text() -> impl Strategy<Value = String> {
    let ch = prop_oneof![8 => prop::sample::select(ALPHABET), 1 => any::<char>()];
    let count = prop_oneof![6 => Just(1usize), 2 => 2..5usize, 1 => 5..40usize];
    prop::collection::vec((ch, count), 0..48).prop_map(|parts| {
        parts
            .into_iter()
            .flat_map(|(c, n)| std::iter::repeat_n(c, n))
            .collect()
    })
}

thread_local! {
    /// Compiled once per test thread (compiling Unicode classes dominates in debug builds).
    static COMPILED: RefCell<HashMap<String, (fancy_regex::Regex, Option<Dfa>)>> = RefCell::default();
}

fn compiled<R>(pattern: &str, f: impl FnOnce(&fancy_regex::Regex, Option<&Dfa>) -> R) -> R {
    COMPILED.with(|c| {
        let mut c = c.borrow_mut();
        let (re, dfa) = c.entry(pattern.to_string()).or_insert_with(|| {
            (
                fancy_regex::Regex::new(pattern).expect("valid"),
                Dfa::new(pattern),
            )
        });
        f(re, dfa.as_ref())
    })
}

/// The pieces of the backtracking engine with `pattern` read as HF reads it.
fn reference(pattern: &str, text: &str) -> Vec<(usize, usize)> {
    let mut v = Vec::new();
    compiled(&onig_reading(pattern), |re, _| {
        backtracking_isolated(re, text, &mut |a, b| v.push((a, b)))
    });
    v
}

fn scanned(family: Family, text: &str) -> Vec<(usize, usize)> {
    let mut v = Vec::new();
    scanners::isolated(family, text, &mut |a, b| v.push((a, b)));
    v
}

fn with_dfa(pattern: &str, text: &str) -> Option<Vec<(usize, usize)>> {
    compiled(pattern, |_, dfa| dfa.map(|d| dfa_pieces(d, text)))
}

fn dfa_pieces(dfa: &Dfa, text: &str) -> Vec<(usize, usize)> {
    let mut v = Vec::new();
    let mut last = 0;
    dfa.for_each_match(text, &mut |a, b| {
        if a > last {
            v.push((last, a));
        }
        v.push((a, b));
        last = b;
    });
    if last < text.len() {
        v.push((last, text.len()));
    }
    v
}

/// Patterns without a scanner, for the DFA path.
const OTHERS: [&str; 5] = [
    r"\p{L}+|\p{N}+|\s+(?!\S)|\s+",
    r"[A-Z][a-z]*|\d{1,2}|[^\sA-Za-z\d]+|\s+(?!\S)|\s",
    r"(?i:'s|'t)|\w+|[^\w\s]+|\s+(?!\S)|\s+",
    r"[\p{L}\p{M}]+|\p{N}",
    r" ?[^\s\p{L}]+[\r\n]*|\p{L}{1,4}",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 150, ..ProptestConfig::default() })]

    #[test]
    fn scanners_equal_the_regex(s in text()) {
        for (pattern, family) in KNOWN {
            prop_assert_eq!(scanned(family, &s), reference(pattern, &s), "{} on {:?}", pattern, s);
        }
    }

    #[test]
    fn deepseek_first_two_splits_fused_equal_nested(s in text()) {
        let mut nested = Vec::new();
        for (a, b) in scanned(Family::Digits3, &s) {
            nested.extend(scanned(Family::DeepSeekCjk, &s[a..b]).into_iter().map(|(c, d)| (a + c, a + d)));
        }
        let mut fused = Vec::new();
        scanners::digits3_then_cjk(&s, |a, b| fused.push((a, b)));
        prop_assert_eq!(fused, nested, "on {:?}", s);
    }

    #[test]
    fn dfa_equals_the_regex(s in text()) {
        for pattern in KNOWN.iter().map(|(p, _)| *p).chain(OTHERS) {
            if let Some(got) = with_dfa(pattern, &s) {
                prop_assert_eq!(got, reference(pattern, &s), "{} on {:?}", pattern, s);
            }
        }
    }
}

#[test]
fn adversarial_cases() {
    let cases = [
        "",
        " ",
        "   ",
        "a   b",
        "a \t\nb",
        "\n\n  x",
        "x\n  ",
        "  \n",
        "don't I'LL we're 'S 'ſ 'Ll",
        "12345678901 ١٢٣٤٥ ½½½½",
        "e\u{301}\u{301}t \u{301}abc ÉCOLEécole ǅungla ʰʰA",
        "HELLOworld HelloWORLD's hello'S",
        "!!!\n\n/// ?/\r\n/",
        "中文测试：你好，世界！ひらがなカタカナー한국어",
        "'hello 'héllo $x `y",
        "\u{a0}\u{a0}x\u{3000}\u{3000}",
        "\u{2028}\u{2029}a",
    ];
    for s in cases {
        for (pattern, family) in KNOWN {
            assert_eq!(
                scanned(family, s),
                reference(pattern, s),
                "{pattern} on {s:?}"
            );
        }
        for pattern in KNOWN.iter().map(|(p, _)| *p).chain(OTHERS) {
            if let Some(got) = with_dfa(pattern, s) {
                assert_eq!(got, reference(pattern, s), "dfa {pattern} on {s:?}");
            }
        }
    }
}

#[test]
fn long_runs_every_length() {
    for n in [0, 1, 2, 3, 4, 5, 7, 8, 13, 31] {
        for fill in [" ", "\n", " \n", "7", "a", "A", "\u{301}", "!"] {
            let s = format!("x{}y {} {}", fill.repeat(n), fill.repeat(n), fill.repeat(n));
            for (pattern, family) in KNOWN {
                assert_eq!(
                    scanned(family, &s),
                    reference(pattern, &s),
                    "{pattern} on {s:?}"
                );
            }
        }
    }
}

#[test]
fn engines_are_chosen_by_pattern() {
    let engine =
        |p: &str| SplitRegex::new(Box::new(fancy_regex::Regex::new(p).unwrap())).engine_name();
    for (pattern, _) in KNOWN {
        assert_eq!(engine(pattern), "scanner", "{pattern}");
    }
    // DeepSeek-V3's file holds raw CR/LF chars inside the classes.
    let raw = KNOWN[9].0.replace(r"\r", "\r").replace(r"\n", "\n");
    assert_eq!(engine(&raw), "scanner");
    for pattern in OTHERS {
        assert_eq!(engine(pattern), "dfa", "{pattern}");
    }
    assert_eq!(engine(r"(\w)\1|\s+"), "backtracking");
    assert_eq!(engine(r"\p{L}+(?=\d)|x*"), "backtracking");
    // Can match empty: the DFA would need the engine's empty-match rules.
    assert_eq!(engine(r"a*"), "backtracking");
    // Possessive quantifiers: regex-syntax would read `\p{N}++` as `(\p{N}+)+`.
    assert_eq!(engine(r"\p{N}{1,3}+|\s+"), "backtracking");
    assert_eq!(engine(r"[a++]|\p{L}+|\s+"), "dfa");
}
