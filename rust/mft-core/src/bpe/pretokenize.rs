//! GPT-2 pre-tokenization as a hand-written scanner.
//!
//! Exactly the pieces that HF's ByteLevel pre-tokenizer's regex
//! `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
//! yields (leftmost-first alternation), without a regex engine. The
//! lookahead branch means: a whitespace run followed by a non-space char
//! gives back its last char, which then starts the next piece.

use unicode_general_category::{get_general_category, GeneralCategory as G};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Class {
    Letter,
    Number,
    Space,
    Other,
}

const fn ascii_class(b: u8) -> Class {
    match b {
        b'a'..=b'z' | b'A'..=b'Z' => Class::Letter,
        b'0'..=b'9' => Class::Number,
        b'\t' | b'\n' | 0x0B | 0x0C | b'\r' | b' ' => Class::Space,
        _ => Class::Other,
    }
}

static ASCII: [Class; 128] = {
    let mut t = [Class::Other; 128];
    let mut i = 0;
    while i < 128 {
        t[i] = ascii_class(i as u8);
        i += 1;
    }
    t
};

#[inline]
fn class_of(c: char) -> Class {
    if (c as u32) < 128 {
        return ASCII[c as usize];
    }
    if c.is_whitespace() {
        return Class::Space;
    }
    match get_general_category(c) {
        G::UppercaseLetter
        | G::LowercaseLetter
        | G::TitlecaseLetter
        | G::ModifierLetter
        | G::OtherLetter => Class::Letter,
        G::DecimalNumber | G::LetterNumber | G::OtherNumber => Class::Number,
        _ => Class::Other,
    }
}

/// Decodes the char starting at byte `i` (which must be a char boundary).
#[inline]
fn char_at(s: &str, i: usize) -> char {
    let b = s.as_bytes()[i];
    if b < 128 {
        b as char
    } else {
        s[i..].chars().next().unwrap_or('\u{FFFD}')
    }
}

/// Byte length of a contraction (`'s`, `'re`, ...) starting at `i`, if any.
#[inline]
fn contraction_len(bytes: &[u8], i: usize) -> usize {
    if bytes[i] != b'\'' || i + 1 >= bytes.len() {
        return 0;
    }
    match bytes[i + 1] {
        b's' | b't' | b'm' | b'd' => 2,
        b'r' | b'v' if bytes.get(i + 2) == Some(&b'e') => 3,
        b'l' if bytes.get(i + 2) == Some(&b'l') => 3,
        _ => 0,
    }
}

/// Ends the run of chars of class `class` that starts at byte `i`.
#[inline]
fn run_end(s: &str, mut i: usize, class: Class) -> usize {
    let bytes = s.as_bytes();
    while i < bytes.len() {
        let c = char_at(s, i);
        if class_of(c) != class {
            break;
        }
        i += c.len_utf8();
    }
    i
}

/// Calls `f` with every piece of `text`, in order; the pieces tile `text`.
pub fn for_each_piece<'a>(text: &'a str, mut f: impl FnMut(&'a str)) {
    let bytes = text.as_bytes();
    let n = bytes.len();
    let mut i = 0;
    while i < n {
        let c = char_at(text, i);
        let end = if c == '\'' && contraction_len(bytes, i) > 0 {
            i + contraction_len(bytes, i)
        } else {
            let class = class_of(c);
            if class != Class::Space {
                run_end(text, i + c.len_utf8(), class)
            } else if c == ' ' && i + 1 < n && class_of(char_at(text, i + 1)) != Class::Space {
                // ` ?\p{L}+` and friends: the space leads the next run.
                let next = char_at(text, i + 1);
                run_end(text, i + 1 + next.len_utf8(), class_of(next))
            } else {
                whitespace_piece_end(text, i)
            }
        };
        f(&text[i..end]);
        i = end;
    }
}

/// `\s+(?!\S)|\s+` at byte `i` (a whitespace char): the whole run if it ends
/// the text, else the run minus its last char, else (a single char) itself.
fn whitespace_piece_end(text: &str, i: usize) -> usize {
    let bytes = text.as_bytes();
    let mut j = i;
    let mut last_start = i;
    while j < bytes.len() {
        let c = char_at(text, j);
        if class_of(c) != Class::Space {
            break;
        }
        last_start = j;
        j += c.len_utf8();
    }
    if j == bytes.len() || last_start == i {
        j
    } else {
        last_start
    }
}

/// The pieces as a vector (tests and the trainer's convenience).
pub fn pieces(text: &str) -> Vec<&str> {
    let mut v = Vec::new();
    for_each_piece(text, |p| v.push(p));
    v
}

#[cfg(test)]
mod tests {
    use super::pieces;

    #[test]
    fn words_and_leading_spaces() {
        assert_eq!(pieces("Hello world"), vec!["Hello", " world"]);
        assert_eq!(pieces(" Hello"), vec![" Hello"]);
        assert_eq!(pieces(""), Vec::<&str>::new());
    }

    #[test]
    fn contractions_are_lowercase_ascii_only() {
        assert_eq!(
            pieces("don't I'LL we're"),
            vec!["don", "'t", " I", "'", "LL", " we", "'re"]
        );
        assert_eq!(pieces("'s's"), vec!["'s", "'s"]);
        assert_eq!(pieces("?'s"), vec!["?'", "s"]);
        assert_eq!(pieces("'"), vec!["'"]);
        assert_eq!(pieces("'l"), vec!["'", "l"]);
    }

    #[test]
    fn whitespace_lookahead_gives_back_last_space() {
        assert_eq!(pieces("a   b"), vec!["a", "  ", " b"]);
        assert_eq!(pieces("a\n\nb"), vec!["a", "\n", "\n", "b"]);
        assert_eq!(pieces("a \t\nb"), vec!["a", " \t", "\n", "b"]);
        assert_eq!(pieces("a  "), vec!["a", "  "]);
        assert_eq!(pieces("   "), vec!["   "]);
        assert_eq!(pieces(" "), vec![" "]);
        assert_eq!(pieces("\tx"), vec!["\t", "x"]);
        assert_eq!(pieces("  \u{3000}x"), vec!["  ", "\u{3000}", "x"]);
    }

    #[test]
    fn numbers_punctuation_and_unicode() {
        assert_eq!(pieces("abc123 456!!"), vec!["abc", "123", " 456", "!!"]);
        assert_eq!(pieces(" !?x"), vec![" !?", "x"]);
        assert_eq!(pieces("你好，世界"), vec!["你好", "，", "世界"]);
        assert_eq!(pieces("½Ⅻ"), vec!["½Ⅻ"]);
        assert_eq!(pieces("hi 😀😀 ok"), vec!["hi", " 😀😀", " ok"]);
        // Combining marks are neither letters nor numbers.
        assert_eq!(pieces("e\u{301}t"), vec!["e", "\u{301}", "t"]);
    }

    #[test]
    fn pieces_tile_the_input() {
        let s = "  x  y\n\n\tz 12'3 're \u{a0}\u{a0}q  ";
        assert_eq!(pieces(s).concat(), s);
    }
}
