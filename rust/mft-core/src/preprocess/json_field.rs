//! The fast path of JSONL field extraction: one string field of a JSON
//! object, read by a small validating scanner instead of serde.
//!
//! serde_json cost ~20% of the tokenizer's own time on a typical corpus (it
//! checks string bytes one at a time); this scanner checks eight at a time
//! and borrows the text when it has no escapes. The whole line is still
//! checked to be valid JSON. Anything it does not accept - not an object, the
//! field missing or not a string, malformed JSON, a lone surrogate escape,
//! nesting deeper than serde allows - returns None, and the caller's exact
//! serde `Value` path reports what is wrong. So this is never more lenient
//! than serde (tests/proptest check the two agree), with one deliberate
//! exception: a number beyond f64's range in another field (1e400) is
//! accepted, as Python's json (and so Megatron's preprocessing) accepts it.

use std::borrow::Cow;

/// serde_json's default recursion limit: deeper lines go to the slow path.
const MAX_DEPTH: u32 = 128;

/// The text of `field` in the JSON object `line` (borrowed when it has no
/// escapes), or None when the line is not a valid object with a string there.
/// A repeated key takes its last value, as `Value` and Python's json do.
pub(crate) fn string_field<'a>(line: &'a str, field: &str) -> Option<Cow<'a, str>> {
    let mut sc = Scanner {
        s: line,
        b: line.as_bytes(),
        i: 0,
    };
    sc.ws();
    sc.eat(b'{')?;
    sc.ws();
    let mut found = None;
    if !sc.try_eat(b'}') {
        loop {
            sc.ws();
            let key = sc.string()?;
            sc.ws();
            sc.eat(b':')?;
            sc.ws();
            if key == field {
                // The last repeat counts; a non-string value ends as None, and
                // the slow path names its type.
                found = match sc.peek() {
                    Some(b'"') => Some(sc.string()?),
                    _ => sc.skip_value(1).map(|_| None)?,
                };
            } else {
                sc.skip_value(1)?;
            }
            sc.ws();
            if sc.try_eat(b',') {
                continue;
            }
            sc.eat(b'}')?;
            break;
        }
    }
    sc.ws();
    if sc.i != sc.b.len() {
        return None;
    }
    found
}

struct Scanner<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    fn try_eat(&mut self, c: u8) -> bool {
        let hit = self.peek() == Some(c);
        self.i += hit as usize;
        hit
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        self.try_eat(c).then_some(())
    }

    fn skip_value(&mut self, depth: u32) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' => self.skip_container(depth, b'}', true),
            b'[' => self.skip_container(depth, b']', false),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => self.number(),
        }
    }

    /// An object (`keyed`) or array, its opening bracket at the cursor.
    fn skip_container(&mut self, depth: u32, close: u8, keyed: bool) -> Option<()> {
        if depth >= MAX_DEPTH {
            return None;
        }
        self.i += 1;
        self.ws();
        if self.try_eat(close) {
            return Some(());
        }
        loop {
            self.ws();
            if keyed {
                self.string()?;
                self.ws();
                self.eat(b':')?;
                self.ws();
            }
            self.skip_value(depth + 1)?;
            self.ws();
            if self.try_eat(b',') {
                continue;
            }
            return self.eat(close);
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.i + word.len();
        (self.b.get(self.i..end)? == word).then(|| self.i = end)
    }

    /// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
    fn number(&mut self) -> Option<()> {
        self.try_eat(b'-');
        match self.peek()? {
            b'0' => self.i += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.try_eat(b'.') {
            self.one_or_more_digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            self.one_or_more_digits()?;
        }
        Some(())
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
    }

    fn one_or_more_digits(&mut self) -> Option<()> {
        let start = self.i;
        self.digits();
        (self.i > start).then_some(())
    }

    /// A string, its opening quote at the cursor. Borrowed when it has no escapes.
    fn string(&mut self) -> Option<Cow<'a, str>> {
        self.eat(b'"')?;
        let start = self.i;
        let stop = special_at(self.b, self.i)?;
        if self.b[stop] == b'"' {
            self.i = stop + 1;
            return Some(Cow::Borrowed(&self.s[start..stop]));
        }
        // The rest of the line bounds the string: one allocation.
        let mut out = String::with_capacity(self.b.len() - start);
        let mut run = start;
        let mut at = stop;
        loop {
            match self.b[at] {
                b'"' => {
                    out.push_str(&self.s[run..at]);
                    self.i = at + 1;
                    return Some(Cow::Owned(out));
                }
                b'\\' => {
                    out.push_str(&self.s[run..at]);
                    self.i = at + 1;
                    self.escape(&mut out)?;
                    run = self.i;
                    at = special_at(self.b, self.i)?;
                }
                _ => return None, // a raw control character
            }
        }
    }

    /// The escape after a backslash, appended to `out`.
    fn escape(&mut self, out: &mut String) -> Option<()> {
        let c = self.peek()?;
        self.i += 1;
        out.push(match c {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let high = self.hex4()?;
                match high {
                    0xD800..=0xDBFF => {
                        self.literal(b"\\u")?;
                        let low = self.hex4()?;
                        if !(0xDC00..=0xDFFF).contains(&low) {
                            return None;
                        }
                        char::from_u32(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))?
                    }
                    // A lone surrogate: serde rejects it, and so must we.
                    0xDC00..=0xDFFF => return None,
                    _ => char::from_u32(high)?,
                }
            }
            _ => return None,
        });
        Some(())
    }

    fn hex4(&mut self) -> Option<u32> {
        let digits = self.b.get(self.i..self.i + 4)?;
        let mut v = 0;
        for &d in digits {
            v = v * 16 + (d as char).to_digit(16)?;
        }
        self.i += 4;
        Some(v)
    }
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The first index from `from` holding `"`, `\` or a control byte (< 0x20),
/// eight bytes per step; None when there is none before the end.
fn special_at(b: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i + 8 <= b.len() {
        let w = u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        if has_zero_byte(w ^ (ONES * b'"' as u64))
            || has_zero_byte(w ^ (ONES * b'\\' as u64))
            || has_byte_below(w, 0x20)
        {
            break; // the exact byte is found below
        }
        i += 8;
    }
    b[i..]
        .iter()
        .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
        .map(|p| i + p)
}

/// Whether any byte of `w` is zero (exact as a yes/no test).
fn has_zero_byte(w: u64) -> bool {
    w.wrapping_sub(ONES) & !w & HIGHS != 0
}

/// Whether any byte of `w` is below `n` (n <= 128; exact as a yes/no test).
fn has_byte_below(w: u64, n: u8) -> bool {
    w.wrapping_sub(ONES * n as u64) & !w & HIGHS != 0
}

#[cfg(test)]
mod tests {
    use super::string_field;
    use proptest::prelude::*;

    #[test]
    fn extracts_only_valid_string_fields() {
        assert_eq!(
            string_field(r#"{"text": "a\nb", "n": [1, {"x": 2.5e40}]}"#, "text").as_deref(),
            Some("a\nb")
        );
        assert_eq!(
            string_field(r#"{"text": "plain"}"#, "text").as_deref(),
            Some("plain")
        );
        assert_eq!(
            string_field(r#" {"a":{},"text":"x"} "#, "text").as_deref(),
            Some("x")
        );
        assert_eq!(
            string_field(r#"{"text": "a", "text": "b"}"#, "text").as_deref(),
            Some("b")
        );
        assert_eq!(
            string_field(r#"{"text": "\ud83d\ude00 \u00e9\/\"\\\t"}"#, "text").as_deref(),
            Some("😀 é/\"\\\t")
        );
        assert_eq!(
            string_field(r#"{"te\u0078t": "esc key"}"#, "text").as_deref(),
            Some("esc key")
        );
        for bad in [
            r#"{"text": 5}"#,
            r#"{"other": "x"}"#,
            r#"["text"]"#,
            r#"{"text": "a"} x"#,
            r#"{"text": "a", "n": tru}"#,
            r#"{"text": "a""#,
            r#""text""#,
            r#"{"text": "a",}"#,
            r#"{"text": "\ud800"}"#,
            r#"{"text": "\x"}"#,
            "{\"text\": \"raw\ttab\"}",
            r#"{"text": "a", "n": 01}"#,
            r#"{"text": "a", "n": 1.}"#,
            r#"{"text": "a", "n": -}"#,
            r#"{"text": "a", "n": [1,]}"#,
        ] {
            assert_eq!(string_field(bad, "text"), None, "{bad}");
        }
    }

    #[test]
    fn deep_nesting_goes_to_the_slow_path() {
        let deep = format!(
            r#"{{"text": "x", "n": {}{}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        assert_eq!(string_field(&deep, "text"), None);
        assert!(serde_json::from_str::<serde_json::Value>(&deep).is_err());
    }

    /// serde's answer for the same line: the field's text when the line is a
    /// valid object whose field is a string.
    fn serde_answer(line: &str) -> Option<String> {
        match serde_json::from_str::<serde_json::Value>(line).ok()? {
            serde_json::Value::Object(o) => o.get("text")?.as_str().map(str::to_owned),
            _ => None,
        }
    }

    /// serde refuses the line only for a number beyond f64 (our one leniency).
    fn serde_overflows(line: &str) -> bool {
        matches!(serde_json::from_str::<serde_json::Value>(line), Err(e) if e.to_string().contains("number out of range"))
    }

    #[test]
    fn numbers_beyond_f64_are_accepted_as_python_does() {
        let line = r#"{"n": 1e400, "text": "x"}"#;
        assert_eq!(string_field(line, "text").as_deref(), Some("x"));
        assert!(serde_overflows(line));
    }

    fn json_value(depth: u32) -> BoxedStrategy<String> {
        let leaf = prop_oneof![
            any::<String>().prop_map(|s| serde_json::to_string(&s).unwrap()),
            "-?(0|[1-9][0-9]{0,3})(\\.[0-9]{1,3})?([eE][+-]?[0-9]{1,2})?",
            Just("true".to_owned()),
            Just("null".to_owned()),
        ];
        if depth == 0 {
            return leaf.boxed();
        }
        prop_oneof![
            leaf,
            prop::collection::vec(json_value(depth - 1), 0..3)
                .prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec(("[a-z]{1,3}|text", json_value(depth - 1)), 0..3).prop_map(|v| {
                let kv: Vec<String> = v.iter().map(|(k, x)| format!("\"{k}\" : {x}")).collect();
                format!("{{ {} }}", kv.join(","))
            }),
        ]
        .boxed()
    }

    proptest! {
        /// Valid JSON: the scanner finds exactly what serde finds.
        #[test]
        fn agrees_with_serde_on_valid_json(v in json_value(3)) {
            prop_assert_eq!(string_field(&v, "text").map(|c| c.into_owned()), serde_answer(&v));
        }

        /// Damaged JSON (a byte cut out or inserted): never more lenient than serde.
        #[test]
        fn never_accepts_what_serde_rejects(v in json_value(3), at in any::<prop::sample::Index>(), junk in "[\\[\\]{}\",:\\\\a-z0-9 ]") {
            let cut = at.index(v.len() + 1);
            for line in [format!("{}{}{}", &v[..floor(&v, cut)], junk, &v[floor(&v, cut)..]),
                         format!("{}{}", &v[..floor(&v, cut)], &v[next(&v, cut)..])] {
                let fast = string_field(&line, "text").map(|c| c.into_owned());
                if fast.is_some() && !serde_overflows(&line) {
                    prop_assert_eq!(fast, serde_answer(&line), "{}", line);
                }
            }
        }
    }

    fn floor(s: &str, mut i: usize) -> usize {
        i = i.min(s.len());
        while !s.is_char_boundary(i) {
            i -= 1;
        }
        i
    }

    fn next(s: &str, i: usize) -> usize {
        let i = floor(s, i);
        s[i..].chars().next().map_or(i, |c| i + c.len_utf8())
    }
}
