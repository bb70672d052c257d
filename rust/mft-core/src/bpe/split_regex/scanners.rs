//! Hand-written scanners for the split regexes real tokenizer files ship.
//!
//! Each `*_at` function answers "where does the regex's leftmost-first match
//! starting at byte `i` end?" (`None`: no match starts there), following the
//! alternation in order and the backtracking the regex engine would do. The
//! property tests in `tests.rs` hold every scanner to the general engine.

use super::classes::{self as k, decode, Bits, Classes};

/// Which known pattern a scanner implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// GPT-2 / r50k: `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
    Gpt2,
    /// cl100k / Llama-3 (`digits` = 3) and Qwen2 (`digits` = 1); `end_first`:
    /// tiktoken's newer spelling, whose `\s++$` takes a trailing space run
    /// whole. `digits` = 0: no limit (that spelling's `\p{N}{1,3}+`, which HF's
    /// Oniguruma reads as `(?:\p{N}{1,3})+`, not as possessive).
    Cl100k { digits: u8, end_first: bool },
    /// o200k: cased words with optional contractions, `\p{N}{1,3}`, `[\r\n/]*` tails.
    O200k,
    /// DeepSeek-V3's first split: `\p{N}{1,3}`.
    Digits3,
    /// DeepSeek-V3's second split: `[一-龥぀-ゟ゠-ヿ]+`.
    DeepSeekCjk,
    /// DeepSeek-V3's third split.
    DeepSeekMain,
}

const NOT_WORD: Bits = k::SPACE | k::LETTER | k::NUMBER;

#[inline(always)]
fn bits_at(t: &Classes, s: &[u8], i: usize) -> (Bits, usize) {
    let (c, l) = decode(s, i);
    (t.of(c), l)
}

/// End of the run of chars from `i` whose bits satisfy `keep`.
#[inline(always)]
fn run(t: &Classes, s: &[u8], mut i: usize, keep: impl Fn(Bits) -> bool) -> usize {
    while i < s.len() {
        let (b, l) = bits_at(t, s, i);
        if !keep(b) {
            break;
        }
        i += l;
    }
    i
}

/// End of at most `max` chars from `i` whose bits include `mask`.
#[inline(always)]
fn run_max(t: &Classes, s: &[u8], mut i: usize, mask: Bits, max: u8) -> usize {
    let mut n = 0;
    while i < s.len() && n < max {
        let (b, l) = bits_at(t, s, i);
        if b & mask == 0 {
            break;
        }
        i += l;
        n += 1;
    }
    i
}

/// Bytes of a contraction (`'s 't 're 've 'm 'll 'd`) at `i`, 0 if none.
/// `fold`: case-insensitive, as `(?i:...)` is (including `ſ` for `s`).
#[inline]
fn contraction(s: &[u8], i: usize, fold: bool) -> usize {
    if s.get(i) != Some(&b'\'') || i + 1 >= s.len() {
        return 0;
    }
    let lower = |j: usize| -> Option<(u8, usize)> {
        let (c, l) = decode(s, j);
        match c {
            0x41..=0x5A if fold => Some((c as u8 + 32, l)),
            0x17F if fold => Some((b's', l)),
            0x61..=0x7A => Some((c as u8, l)),
            _ => None,
        }
    };
    let Some((c1, l1)) = lower(i + 1) else {
        return 0;
    };
    let second = |want: u8| -> usize {
        let j = i + 1 + l1;
        match (j < s.len()).then(|| lower(j)).flatten() {
            Some((c2, l2)) if c2 == want => 1 + l1 + l2,
            _ => 0,
        }
    };
    match c1 {
        b's' | b't' | b'm' | b'd' => 1 + l1,
        b'r' | b'v' => second(b'e'),
        b'l' => second(b'l'),
        _ => 0,
    }
}

/// The whitespace branches at `i` (a `\s` char): `\s*[\r\n]+` when
/// `newlines`, then `\s+(?!\S)|\s+`; `end_first` puts `\s++$` before them.
#[inline]
fn spaces(t: &Classes, s: &[u8], i: usize, newlines: bool, end_first: bool) -> usize {
    let mut j = i;
    let mut last_start = i;
    let mut newline_end = 0;
    while j < s.len() {
        let (b, l) = bits_at(t, s, j);
        if b & k::SPACE == 0 {
            break;
        }
        if b & k::NEWLINE != 0 {
            newline_end = j + l;
        }
        last_start = j;
        j += l;
    }
    if end_first && j == s.len() {
        return j;
    }
    if newlines && newline_end != 0 {
        return newline_end;
    }
    // `\s+(?!\S)` gives back the last char before a non-space; a lone char is `\s+`.
    if j == s.len() || last_start == i {
        j
    } else {
        last_start
    }
}

/// Bits of the char after the one at `i` (0 at the end) and the byte after it.
#[inline(always)]
fn next_bits(t: &Classes, s: &[u8], after: usize) -> Bits {
    if after < s.len() {
        bits_at(t, s, after).0
    } else {
        0
    }
}

pub fn gpt2_at(t: &Classes, s: &[u8], i: usize) -> Option<usize> {
    let c = contraction(s, i, false);
    if c > 0 {
        return Some(i + c);
    }
    let (mut b, l) = bits_at(t, s, i);
    let mut start = i + l;
    if s[i] == b' ' {
        let nb = next_bits(t, s, i + 1);
        if i + 1 < s.len() && nb & k::SPACE == 0 {
            // ` ?X+`: the space leads the next run.
            b = nb;
            start = i + 1 + bits_at(t, s, i + 1).1;
        }
    }
    Some(if b & k::LETTER != 0 {
        run(t, s, start, |x| x & k::LETTER != 0)
    } else if b & k::NUMBER != 0 {
        run(t, s, start, |x| x & k::NUMBER != 0)
    } else if b & k::SPACE == 0 {
        run(t, s, start, |x| x & NOT_WORD == 0)
    } else {
        spaces(t, s, i, false, false)
    })
}

pub fn cl100k_at(t: &Classes, s: &[u8], i: usize, digits: u8, end_first: bool) -> Option<usize> {
    let c = contraction(s, i, true);
    if c > 0 {
        return Some(i + c);
    }
    let (b, l) = bits_at(t, s, i);
    // `[^\r\n\p{L}\p{N}]?\p{L}+`
    if b & (k::NEWLINE | k::LETTER | k::NUMBER) == 0 && next_bits(t, s, i + l) & k::LETTER != 0 {
        return Some(run(t, s, i + l, |x| x & k::LETTER != 0));
    }
    if b & k::LETTER != 0 {
        return Some(run(t, s, i + l, |x| x & k::LETTER != 0));
    }
    if b & k::NUMBER != 0 {
        return Some(match digits {
            0 => run(t, s, i + l, |x| x & k::NUMBER != 0),
            n => run_max(t, s, i, k::NUMBER, n),
        });
    }
    // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
    let other_from = if s[i] == b' ' && next_bits(t, s, i + 1) & NOT_WORD == 0 && i + 1 < s.len() {
        Some(i + 1)
    } else if b & NOT_WORD == 0 {
        Some(i)
    } else {
        None
    };
    if let Some(from) = other_from {
        let e = run(t, s, from, |x| x & NOT_WORD == 0);
        return Some(run(t, s, e, |x| x & k::NEWLINE != 0));
    }
    Some(spaces(t, s, i, true, end_first))
}

/// o200k's `U*W+` (`upper_first` false) or `U+W*` (true) from `p`, then an
/// optional contraction; U = `[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]`, W = `[\p{Ll}\p{Lm}\p{Lo}\p{M}]`.
#[inline]
fn cased(t: &Classes, s: &[u8], p: usize, upper_first: bool) -> Option<usize> {
    let mut j = p;
    // Start of the last char in the U run that is also in W (Lm, Lo, M).
    let mut last_both = None;
    while j < s.len() {
        let (b, l) = bits_at(t, s, j);
        if b & k::CASED_UPPER == 0 {
            break;
        }
        if b & k::CASED_LOWER != 0 {
            last_both = Some(j + l);
        }
        j += l;
    }
    let end = if upper_first {
        if j == p {
            return None;
        }
        run(t, s, j, |x| x & k::CASED_LOWER != 0)
    } else if next_bits(t, s, j) & k::CASED_LOWER != 0 {
        run(t, s, j, |x| x & k::CASED_LOWER != 0)
    } else {
        // U* gives back chars until W+ can take one: the last U char that is also W.
        last_both?
    };
    Some(end + contraction(s, end, true))
}

/// o200k's cased-word branches on ASCII text, byte by byte: `[ ]?[a-z]+`
/// or `[ ]?[A-Z]+[a-z]*` (the prefix any ASCII char outside
/// `[A-Za-z0-9\r\n]`), ending at an ASCII byte that is neither a letter
/// of the run nor `'`. None where it cannot tell (a non-ASCII byte or an
/// apostrophe next, no letter at the start): the general path decides.
#[inline(always)]
fn o200k_ascii_word(s: &[u8], i: usize) -> Option<usize> {
    let mut j = i;
    let c = s[i];
    if !c.is_ascii_alphabetic() {
        if c >= 0x80 || c.is_ascii_digit() || c == b'\r' || c == b'\n' {
            return None;
        }
        j += 1; // the optional prefix
        if !s.get(j).is_some_and(u8::is_ascii_alphabetic) {
            return None;
        }
    }
    while j < s.len() && s[j].is_ascii_uppercase() {
        j += 1;
    }
    while j < s.len() && s[j].is_ascii_lowercase() {
        j += 1;
    }
    match s.get(j) {
        None => Some(j),
        Some(&b) if b >= 0x80 || b == b'\'' => None,
        // An upper after lowers ends the word (`U*W+` is done; `U+W*` too).
        Some(_) => Some(j),
    }
}

pub fn o200k_at(t: &Classes, s: &[u8], i: usize) -> Option<usize> {
    if let Some(e) = o200k_ascii_word(s, i) {
        return Some(e);
    }
    let (b, l) = bits_at(t, s, i);
    let prefix = b & (k::NEWLINE | k::LETTER | k::NUMBER) == 0;
    // Both cased branches need a cased char here or (after the prefix) next.
    let lead = b | if prefix { next_bits(t, s, i + l) } else { 0 };
    for upper_first in [false, true] {
        if lead & (k::CASED_UPPER | k::CASED_LOWER) == 0 {
            break;
        }
        if prefix {
            if let Some(e) = cased(t, s, i + l, upper_first) {
                return Some(e);
            }
        }
        if let Some(e) = cased(t, s, i, upper_first) {
            return Some(e);
        }
    }
    if b & k::NUMBER != 0 {
        return Some(run_max(t, s, i, k::NUMBER, 3));
    }
    // ` ?[^\s\p{L}\p{N}]+[\r\n/]*`
    let other_from = if s[i] == b' ' && i + 1 < s.len() && next_bits(t, s, i + 1) & NOT_WORD == 0 {
        Some(i + 1)
    } else if b & NOT_WORD == 0 {
        Some(i)
    } else {
        None
    };
    if let Some(from) = other_from {
        let mut e = run(t, s, from, |x| x & NOT_WORD == 0);
        while e < s.len() && matches!(s[e], b'\r' | b'\n' | b'/') {
            e += 1;
        }
        return Some(e);
    }
    if b & k::SPACE != 0 {
        return Some(spaces(t, s, i, true, false));
    }
    None
}

pub fn digits3_at(t: &Classes, s: &[u8], i: usize) -> Option<usize> {
    let e = run_max(t, s, i, k::NUMBER, 3);
    (e > i).then_some(e)
}

pub fn deepseek_cjk_at(t: &Classes, s: &[u8], i: usize) -> Option<usize> {
    let e = run(t, s, i, |x| x & k::CJK != 0);
    (e > i).then_some(e)
}

pub fn deepseek_main_at(t: &Classes, s: &[u8], i: usize) -> Option<usize> {
    const LM: Bits = k::LETTER | k::MARK;
    const PS: Bits = k::PUNCT | k::SYMBOL;
    let (b, l) = bits_at(t, s, i);
    let nb = next_bits(t, s, i + l);
    // `[!-/:-@\[-`{-~][A-Za-z]+`
    if b & k::ASCII_PUNCT != 0 && nb & k::ASCII_LETTER != 0 {
        return Some(run(t, s, i + 1, |x| x & k::ASCII_LETTER != 0));
    }
    // `[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+` (a mark as the optional char
    // gives the same run as without it)
    if b & LM != 0 {
        return Some(run(t, s, i + l, |x| x & LM != 0));
    }
    if b & (k::NEWLINE | k::LETTER | PS) == 0 && nb & LM != 0 {
        return Some(run(t, s, i + l, |x| x & LM != 0));
    }
    // ` ?[\p{P}\p{S}]+[\r\n]*`
    let from = if s[i] == b' ' && nb & PS != 0 {
        Some(i + 1)
    } else if b & PS != 0 {
        Some(i)
    } else {
        None
    };
    if let Some(from) = from {
        let e = run(t, s, from, |x| x & PS != 0);
        return Some(run(t, s, e, |x| x & k::NEWLINE != 0));
    }
    if b & k::SPACE != 0 {
        return Some(spaces(t, s, i, true, false));
    }
    None
}

/// Calls `f(start, end)` for the gaps between matches and the matches of
/// `family` in `text`, in order (Split's "Isolated" behaviour); they tile `text`.
#[inline]
pub fn isolated<F: FnMut(usize, usize)>(family: Family, text: &str, mut f: F) {
    let f = &mut f;
    let t = Classes::get();
    match family {
        Family::Gpt2 => drive(text, f, |s, i| gpt2_at(t, s, i)),
        Family::Cl100k { digits, end_first } => {
            drive(text, f, |s, i| cl100k_at(t, s, i, digits, end_first))
        }
        Family::O200k => drive(text, f, |s, i| o200k_at(t, s, i)),
        Family::Digits3 => drive(text, f, |s, i| digits3_at(t, s, i)),
        Family::DeepSeekCjk => drive(text, f, |s, i| deepseek_cjk_at(t, s, i)),
        Family::DeepSeekMain => drive(text, f, |s, i| deepseek_main_at(t, s, i)),
    }
}

/// DeepSeek-V3's first two Isolated splits, `\p{N}{1,3}` and then runs of
/// its CJK class, in one pass: the same pieces as the two scanners nested
/// (no char is in both classes, so a CJK run never crosses a digit group),
/// without walking each char twice.
pub fn digits3_then_cjk<F: FnMut(usize, usize)>(text: &str, mut f: F) {
    let t = Classes::get();
    drive(text, &mut f, |s, i| {
        let (b, l) = bits_at(t, s, i);
        if b & k::NUMBER != 0 {
            Some(run_max(t, s, i, k::NUMBER, 3))
        } else if b & k::CJK != 0 {
            Some(run(t, s, i + l, |x| x & k::CJK != 0))
        } else {
            None
        }
    })
}

#[inline(always)]
fn drive<F: FnMut(usize, usize)>(
    text: &str,
    f: &mut F,
    at: impl Fn(&[u8], usize) -> Option<usize>,
) {
    let s = text.as_bytes();
    let mut i = 0;
    let mut gap = 0;
    while i < s.len() {
        match at(s, i) {
            Some(e) => {
                if gap < i {
                    f(gap, i);
                }
                f(i, e);
                i = e;
                gap = e;
            }
            None => i += decode(s, i).1,
        }
    }
    if gap < s.len() {
        f(gap, s.len());
    }
}
