//! The `normalizer` and `pre_tokenizer` sections.

use super::post_stages::one_char;
use super::values::*;
use crate::bpe::components::{
    base64_decode, Behavior, CharClass, CharsMap, NormStep, Normalizer, Pattern, PreStep,
    PreTokenizer, PrependScheme, Splitter,
};
use crate::bpe::error::{Error, Result};
use crate::bpe::split_regex::SplitRegex;
use serde_json::{Map, Value};
use std::sync::Arc;

pub(super) fn parse_normalizer(v: &Value) -> Result<Normalizer> {
    let mut steps = Vec::new();
    if !v.is_null() {
        parse_norm_step(v, "normalizer", &mut steps)?;
    }
    Ok(Normalizer { steps })
}

pub(super) fn parse_norm_step(v: &Value, at: &str, steps: &mut Vec<NormStep>) -> Result<()> {
    let obj = as_object(v, at)?;
    match type_of(obj, at)? {
        "NFC" => steps.push(NormStep::Nfc),
        "NFD" => steps.push(NormStep::Nfd),
        "NFKC" => steps.push(NormStep::Nfkc),
        "NFKD" => steps.push(NormStep::Nfkd),
        "Lowercase" => steps.push(NormStep::Lowercase),
        "StripAccents" => steps.push(NormStep::StripAccents),
        "ByteLevel" => steps.push(NormStep::ByteLevel),
        "Nmt" => steps.push(NormStep::Nmt),
        "Strip" => steps.push(NormStep::Strip {
            left: opt_bool(obj, "strip_left", at, true)?,
            right: opt_bool(obj, "strip_right", at, true)?,
        }),
        "BertNormalizer" => {
            let lowercase = opt_bool(obj, "lowercase", at, true)?;
            let strip_accents = match obj.get("strip_accents") {
                None | Some(Value::Null) => lowercase,
                Some(Value::Bool(b)) => *b,
                Some(v) => return Err(bad(&format!("{at}.strip_accents"), "true, false or null", v)),
            };
            steps.push(NormStep::Bert {
                clean_text: opt_bool(obj, "clean_text", at, true)?,
                handle_chinese_chars: opt_bool(obj, "handle_chinese_chars", at, true)?,
                strip_accents,
                lowercase,
            });
        }
        "Precompiled" => {
            let key = format!("{at}.precompiled_charsmap");
            match obj.get("precompiled_charsmap") {
                // An empty map changes nothing.
                None | Some(Value::Null) => {}
                Some(v) => {
                    let text = as_str(v, &key)?;
                    if !text.is_empty() {
                        let map = base64_decode(text)
                            .and_then(|b| CharsMap::parse(&b))
                            .ok_or_else(|| Error::Format(format!("{key}: not a base64 SentencePiece charsmap")))?;
                        steps.push(NormStep::Precompiled(Arc::new(map)));
                    }
                }
            }
        }
        "Prepend" => {
            let p = as_str(obj.get("prepend").ok_or_else(|| missing(&format!("{at}.prepend")))?, &format!("{at}.prepend"))?;
            steps.push(NormStep::Prepend(p.to_string()));
        }
        "Replace" => {
            let content = as_str(obj.get("content").ok_or_else(|| missing(&format!("{at}.content")))?, &format!("{at}.content"))?.to_string();
            steps.push(match any_pattern(obj, at)? {
                Ok(pattern) => NormStep::Replace { pattern, content },
                Err(re) => NormStep::ReplaceRegex { re, content },
            });
        }
        "Sequence" => {
            let key = format!("{at}.normalizers");
            let list = as_array(obj.get("normalizers").ok_or_else(|| missing(&key))?, &key)?;
            for (i, n) in list.iter().enumerate() {
                parse_norm_step(n, &format!("{key}[{i}]"), steps)?;
            }
        }
        t => {
            return Err(Error::Unsupported(format!(
                "unsupported {at} type {t:?} (mft supports NFC, NFD, NFKC, NFKD, Lowercase, Strip, StripAccents, Replace, Prepend, BertNormalizer, Precompiled, Nmt, ByteLevel, Sequence of these, or null)"
            )))
        }
    }
    Ok(())
}

pub(super) fn parse_pre_tokenizer(v: &Value, at: &str) -> Result<PreTokenizer> {
    let mut steps = Vec::new();
    if !v.is_null() {
        parse_pre_step(v, at, &mut steps)?;
    }
    Ok(PreTokenizer { steps })
}

pub(super) fn parse_pre_step(v: &Value, at: &str, steps: &mut Vec<PreStep>) -> Result<()> {
    let obj = as_object(v, at)?;
    match type_of(obj, at)? {
        "ByteLevel" => steps.push(PreStep::ByteLevel {
            add_prefix_space: opt_bool(obj, "add_prefix_space", at, true)?,
            trim_offsets: opt_bool(obj, "trim_offsets", at, true)?,
            use_regex: opt_bool(obj, "use_regex", at, true)?,
        }),
        "Split" => steps.push(parse_split(obj, at)?),
        "Whitespace" => steps.push(PreStep::Split(Box::new(Splitter::whitespace()))),
        "WhitespaceSplit" => steps.push(chars(CharClass::Whitespace, Behavior::Removed)),
        "BertPreTokenizer" => {
            steps.push(chars(CharClass::Whitespace, Behavior::Removed));
            steps.push(chars(CharClass::Punctuation, Behavior::Isolated));
        }
        "Punctuation" => steps.push(chars(CharClass::Punctuation, behavior(obj, at, Behavior::Isolated)?)),
        "Digits" => {
            let b = if opt_bool(obj, "individual_digits", at, false)? {
                Behavior::Isolated
            } else {
                Behavior::Contiguous
            };
            steps.push(chars(CharClass::Numeric, b));
        }
        "CharDelimiterSplit" => {
            let d = one_char(obj, "delimiter", at, ' ')?;
            steps.push(chars(CharClass::Is(d), Behavior::Removed));
        }
        "UnicodeScripts" => steps.push(PreStep::Split(Box::new(Splitter::UnicodeScripts))),
        "FixedLength" => {
            let n = match obj.get("length") {
                None | Some(Value::Null) => 5,
                Some(v) => v
                    .as_u64()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| bad(&format!("{at}.length"), "a positive integer", v))? as usize,
            };
            steps.push(PreStep::Split(Box::new(Splitter::FixedLength(n))));
        }
        "Metaspace" => {
            let rep_at = format!("{at}.replacement");
            let rep = as_str(obj.get("replacement").unwrap_or(&Value::String("\u{2581}".into())), &rep_at)?.to_string();
            let mut chars = rep.chars();
            let replacement = match (chars.next(), chars.next()) {
                (Some(c), None) => c,
                _ => return Err(Error::Unsupported(format!("{rep_at}: {rep:?} must be one character"))),
            };
            let prepend = match obj.get("prepend_scheme") {
                Some(Value::String(s)) => match s.as_str() {
                    "always" => PrependScheme::Always,
                    "first" => PrependScheme::First,
                    "never" => PrependScheme::Never,
                    other => return Err(bad(&format!("{at}.prepend_scheme"), "\"always\", \"first\" or \"never\"", &Value::String(other.into()))),
                },
                _ => {
                    if opt_bool(obj, "add_prefix_space", at, true)? {
                        PrependScheme::Always
                    } else {
                        PrependScheme::Never
                    }
                }
            };
            steps.push(PreStep::Metaspace {
                replacement,
                prepend,
                split: opt_bool(obj, "split", at, true)?,
            });
        }
        "Sequence" => {
            let key = format!("{at}.pretokenizers");
            let list = as_array(obj.get("pretokenizers").ok_or_else(|| missing(&key))?, &key)?;
            for (i, p) in list.iter().enumerate() {
                parse_pre_step(p, &format!("{key}[{i}]"), steps)?;
            }
        }
        t => {
            return Err(Error::Unsupported(format!(
                "unsupported {at} type {t:?} (mft supports ByteLevel, Split, Whitespace, WhitespaceSplit, Punctuation, Digits, Metaspace, CharDelimiterSplit, UnicodeScripts, BertPreTokenizer, FixedLength, Sequence of these, or null)"
            )))
        }
    }
    Ok(())
}

fn chars(class: CharClass, behavior: Behavior) -> PreStep {
    PreStep::Split(Box::new(Splitter::chars(class, behavior)))
}

fn behavior(obj: &Map<String, Value>, at: &str, default: Behavior) -> Result<Behavior> {
    let key = format!("{at}.behavior");
    match obj.get("behavior") {
        None | Some(Value::Null) => Ok(default),
        Some(v) => Behavior::parse(as_str(v, &key)?).ok_or_else(|| {
            bad(&key, "\"Removed\", \"Isolated\", \"MergedWithPrevious\", \"MergedWithNext\" or \"Contiguous\"", v)
        }),
    }
}

/// `{"String": s}` -> Ok(s); `{"Regex": r}` -> Err(compiled r). Errors name the path.
pub(super) fn any_pattern(
    obj: &Map<String, Value>,
    at: &str,
) -> Result<std::result::Result<String, Box<fancy_regex::Regex>>> {
    let pat_at = format!("{at}.pattern");
    let pattern = as_object(obj.get("pattern").ok_or_else(|| missing(&pat_at))?, &pat_at)?;
    if let Some(s) = pattern.get("String") {
        return Ok(Ok(as_str(s, &format!("{pat_at}.String"))?.to_string()));
    }
    if let Some(r) = pattern.get("Regex") {
        let source = as_str(r, &format!("{pat_at}.Regex"))?;
        return compile(source, &format!("{pat_at}.Regex")).map(Err);
    }
    Err(bad(
        &pat_at,
        "{\"Regex\": ...} or {\"String\": ...}",
        &Value::Object(pattern.clone()),
    ))
}

/// Onig's `\w` (what HF's regexes from files run on), measured against HF
/// over every code point: Alphabetic (so letter numbers like Ⅻ and circled
/// letters), marks, decimal digits, connector punctuation. A bare `\w` (or
/// `\p{Word}`) outside brackets also holds the Latin-1 ², ³, ¹, ¼, ½, ¾ (Onig's
/// own table below U+0100); inside brackets it does not. The Rust engines'
/// `\w` adds the joiners (ZWJ/ZWNJ), so `\w`/`\W` are spelled out.
const ONIG_WORD: &str = r"\p{Alphabetic}\p{M}\p{Nd}\p{Pc}";
const ONIG_WORD_BARE: &str = r"\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\x{B2}\x{B3}\x{B9}\x{BC}-\x{BE}";

/// Onig's POSIX brackets are Unicode classes (the Rust engines' are ASCII),
/// measured against HF as `ONIG_WORD` was.
const ONIG_POSIX: [(&str, &str); 8] = [
    ("alpha", r"\p{Alphabetic}"),
    ("digit", r"\p{Nd}"),
    ("alnum", r"\p{Alphabetic}\p{Nd}"),
    ("punct", r"\p{P}\p{S}"),
    ("space", r"\p{White_Space}"),
    ("upper", r"\p{Uppercase}"),
    ("lower", r"\p{Lowercase}"),
    ("word", ONIG_WORD),
];

/// `source` spelled for fancy-regex as Onig (Ruby syntax) reads it: `\w`,
/// `\W`, `\b`, `\B`, `\p{Word}`, `\p{^X}` and POSIX brackets (`[:punct:]`,
/// `[:^alpha:]`, ...) with Onig's classes; `\Z`, `\R`, `\N`, `\O`; the group
/// flag `m` (dot matches newline). Other text is kept byte for byte.
pub(super) fn onig_classes(source: &str) -> String {
    let mut out = String::with_capacity(source.len() + 16);
    let mut rest = source;
    let mut in_class = 0usize;
    while let Some(c) = rest.chars().next() {
        rest = &rest[c.len_utf8()..];
        match c {
            '\\' => match rest.chars().next() {
                Some(n) => {
                    rest = &rest[n.len_utf8()..];
                    match n {
                        'w' if in_class > 0 => out.push_str(ONIG_WORD),
                        'W' if in_class > 0 => out.push_str(&format!("[^{ONIG_WORD}]")),
                        'w' => out.push_str(&format!("[{ONIG_WORD_BARE}]")),
                        'W' => out.push_str(&format!("[^{ONIG_WORD_BARE}]")),
                        'p' | 'P' if rest.starts_with('{') => {
                            rest = onig_property(rest, n == 'P', in_class > 0, &mut out);
                        }
                        _ if in_class > 0 => {
                            out.push('\\');
                            out.push(n);
                        }
                        // Onig escapes the Rust engines lack or read otherwise.
                        'Z' => out.push_str(r"(?=\n?\z)"),
                        'R' => out.push_str(r"(?:\r\n|[\n\x0B\x0C\r\x{85}\x{2028}\x{2029}])"),
                        'N' => out.push_str(r"[^\n]"),
                        'O' => out.push_str(r"(?s:.)"),
                        'b' => out.push_str(&format!(
                            "(?:(?<=[{w}])(?![{w}])|(?<![{w}])(?=[{w}]))",
                            w = ONIG_WORD_BARE
                        )),
                        'B' => out.push_str(&format!(
                            "(?:(?<=[{w}])(?=[{w}])|(?<![{w}])(?![{w}]))",
                            w = ONIG_WORD_BARE
                        )),
                        _ => {
                            out.push('\\');
                            out.push(n);
                        }
                    }
                }
                None => out.push('\\'),
            },
            '[' if in_class > 0 && rest.starts_with(':') => {
                let posix = ONIG_POSIX.iter().find_map(|(name, class)| {
                    let negated = rest.starts_with(":^");
                    let body = if negated { &rest[2..] } else { &rest[1..] };
                    let tail = body.strip_prefix(name)?.strip_prefix(":]")?;
                    Some((negated, *class, tail))
                });
                match posix {
                    Some((negated, class, tail)) => {
                        out.push_str(if negated { "[^" } else { "[" });
                        out.push_str(class);
                        out.push(']');
                        rest = tail;
                    }
                    None => {
                        in_class += 1;
                        out.push(c);
                    }
                }
            }
            '[' => {
                in_class += 1;
                out.push(c);
                // A `]` right after `[` or `[^` is a literal.
                if let Some(r) = rest.strip_prefix('^') {
                    out.push('^');
                    rest = r;
                }
                if let Some(r) = rest.strip_prefix(']') {
                    out.push(']');
                    rest = r;
                }
            }
            ']' if in_class > 0 => {
                in_class -= 1;
                out.push(c);
            }
            // Group flags: Ruby's `m` is "dot matches newline", the engines' `s`.
            '(' if in_class == 0 && rest.starts_with('?') => {
                out.push('(');
                let flags: String = rest[1..]
                    .chars()
                    .take_while(|f| matches!(f, 'i' | 'm' | 'x' | '-'))
                    .collect();
                let end = 1 + flags.len();
                if !flags.is_empty() && matches!(rest[end..].chars().next(), Some(':' | ')')) {
                    out.push('?');
                    out.push_str(&flags.replace('m', "s"));
                    rest = &rest[end..];
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// `\p{...}`/`\P{...}` (`rest` starts at the `{`): Onig's `\p{^X}` is
/// `\P{X}`, and `Word` is Onig's `\w`. Returns what follows the `}`.
fn onig_property<'a>(rest: &'a str, upper: bool, in_class: bool, out: &mut String) -> &'a str {
    let Some(close) = rest.find('}') else {
        out.push_str(if upper { "\\P" } else { "\\p" });
        return rest;
    };
    let (mut name, tail) = (&rest[1..close], &rest[close + 1..]);
    let mut negated = upper;
    if let Some(n) = name.strip_prefix('^') {
        name = n;
        negated = !negated;
    }
    if name.eq_ignore_ascii_case("word") {
        let neg = if negated { "^" } else { "" };
        if in_class && !negated {
            out.push_str(ONIG_WORD);
        } else if in_class {
            out.push_str(&format!("[^{ONIG_WORD}]"));
        } else {
            out.push_str(&format!("[{neg}{ONIG_WORD_BARE}]"));
        }
    } else {
        out.push_str(if negated { "\\P{" } else { "\\p{" });
        out.push_str(name);
        out.push('}');
    }
    tail
}

/// True when `source` has a `^` or `$` anchor outside a character class.
fn has_line_anchor(source: &str) -> bool {
    let mut chars = source.chars().peekable();
    let mut in_class = 0usize;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '[' => {
                in_class += 1;
                if chars.peek() == Some(&'^') {
                    chars.next();
                }
                if chars.peek() == Some(&']') {
                    chars.next();
                }
            }
            ']' if in_class > 0 => in_class -= 1,
            '^' | '$' if in_class == 0 => return true,
            _ => {}
        }
    }
    false
}

/// Compiles a regex of the file as HF's Oniguruma (Ruby syntax) reads it:
/// `\w` and POSIX brackets spelled out (see `onig_classes`), and `^`/`$` are line anchors
/// there (so `(?m)`: a Replace of "^ " also drops the space after each "\n").
/// The error names the JSON path and the engine's reason.
pub(super) fn compile(source: &str, at: &str) -> Result<Box<fancy_regex::Regex>> {
    let mut translated = onig_classes(source);
    if has_line_anchor(&translated) {
        translated.insert_str(0, "(?m)");
    }
    fancy_regex::Regex::new(&translated).map(Box::new).map_err(|e| {
        Error::Unsupported(format!(
            "{at}: mft's regex engine (fancy-regex: Perl/PCRE syntax with look-around and backreferences) cannot compile {source:?}: {e}"
        ))
    })
}

pub(super) fn parse_split(obj: &Map<String, Value>, at: &str) -> Result<PreStep> {
    let behavior = behavior(obj, at, Behavior::Isolated)?;
    let invert = opt_bool(obj, "invert", at, false)?;
    let pattern = match any_pattern(obj, at)? {
        Ok(s) if s.is_empty() => {
            // HF: an empty string never matches (the piece stays whole).
            return Ok(PreStep::Split(Box::new(Splitter::FixedLength(usize::MAX))));
        }
        Ok(s) => compile(&fancy_regex::escape(&s), &format!("{at}.pattern.String"))?,
        Err(re) => re,
    };
    if behavior == Behavior::Isolated && !invert {
        return Ok(PreStep::SplitIsolated(Box::new(SplitRegex::new(pattern))));
    }
    Ok(PreStep::Split(Box::new(Splitter::Pattern {
        pattern: Pattern::Regex(pattern),
        behavior,
        invert,
    })))
}

#[cfg(test)]
mod tests {
    use super::{compile, has_line_anchor, onig_classes};
    use crate::bpe::split_regex::known_family;

    #[test]
    fn onig_spellings() {
        assert_eq!(onig_classes(r"a\Z"), r"a(?=\n?\z)");
        assert_eq!(
            onig_classes(r"\p{^L}[\p{^N}x]\P{^Lu}"),
            r"\P{L}[\P{N}x]\p{Lu}"
        );
        assert_eq!(
            onig_classes(r"(?m:.)(?im).(?-m).(?:x)(?i:y)"),
            r"(?s:.)(?is).(?-s).(?:x)(?i:y)"
        );
        assert_eq!(onig_classes(r"[\b\N]\N"), r"[\b\N][^\n]");
        // The patterns real files ship keep their scanners.
        for p in [
            r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
            r"'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s",
        ] {
            assert!(
                known_family(compile(p, "x").unwrap().as_str()).is_some(),
                "{p}"
            );
        }
    }

    #[test]
    fn anchors_outside_classes_only() {
        assert!(has_line_anchor("^ "));
        assert!(has_line_anchor(r"\s++$|\s+"));
        assert!(has_line_anchor("a|[x]^"));
        assert!(!has_line_anchor(r"[^\r\n]+|\^|\$"));
        assert!(!has_line_anchor(r"[]^$]"));
        assert!(!has_line_anchor(r"[^]$^]x"));
    }
}
