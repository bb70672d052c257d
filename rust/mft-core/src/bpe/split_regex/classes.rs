//! Character classes of the split regexes, as one bit set per code point.
//!
//! Built once from `regex-syntax`'s own Unicode tables (the tables the
//! general regex engine uses), so a scanner and the regex can never disagree
//! about which class a character is in.

use regex_syntax::hir::{Class, HirKind};
use std::sync::OnceLock;

pub type Bits = u16;
/// `\p{L}`
pub const LETTER: Bits = 1;
/// `\p{N}`
pub const NUMBER: Bits = 1 << 1;
/// `\s` (White_Space)
pub const SPACE: Bits = 1 << 2;
/// `\r` or `\n`
pub const NEWLINE: Bits = 1 << 3;
/// `\p{M}`
pub const MARK: Bits = 1 << 4;
/// `[\p{Lu}\p{Lt}]`
pub const UPPER: Bits = 1 << 5;
/// `\p{Ll}`
pub const LOWER: Bits = 1 << 6;
/// `[\p{Lm}\p{Lo}]`
pub const MODIFIER_OTHER: Bits = 1 << 7;
/// `\p{P}`
pub const PUNCT: Bits = 1 << 8;
/// `\p{S}`
pub const SYMBOL: Bits = 1 << 9;
/// DeepSeek-V3's `[一-龥぀-ゟ゠-ヿ]` (U+4E00-U+9FA5, U+3040-U+30FF)
pub const CJK: Bits = 1 << 10;
/// `[!-/:-@\[-`{-~]`: ASCII punctuation and symbols
pub const ASCII_PUNCT: Bits = 1 << 11;
/// `[A-Za-z]`
pub const ASCII_LETTER: Bits = 1 << 12;

/// o200k's `[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]`
pub const CASED_UPPER: Bits = UPPER | MODIFIER_OTHER | MARK;
/// o200k's `[\p{Ll}\p{Lm}\p{Lo}\p{M}]`
pub const CASED_LOWER: Bits = LOWER | MODIFIER_OTHER | MARK;

const BLOCK: usize = 256;

/// Two-level table: code point >> 8 -> block, block -> bits per code point.
pub struct Classes {
    ascii: [Bits; 128],
    index: Vec<u16>,
    blocks: Vec<Bits>,
}

impl Classes {
    /// The shared table (built on first use, ~1 ms).
    pub fn get() -> &'static Classes {
        static TABLE: OnceLock<Classes> = OnceLock::new();
        TABLE.get_or_init(Classes::build)
    }

    #[inline(always)]
    pub fn of(&self, c: u32) -> Bits {
        if c < 128 {
            self.ascii[c as usize]
        } else {
            let block = self.index[(c as usize) >> 8] as usize;
            self.blocks[block * BLOCK + (c as usize & (BLOCK - 1))]
        }
    }

    fn build() -> Classes {
        let mut flat = vec![0 as Bits; 0x110000];
        let sets: [(Bits, &str); 12] = [
            (LETTER, r"\p{L}"),
            (NUMBER, r"\p{N}"),
            (SPACE, r"\s"),
            (NEWLINE, r"[\r\n]"),
            (MARK, r"\p{M}"),
            (UPPER, r"[\p{Lu}\p{Lt}]"),
            (LOWER, r"\p{Ll}"),
            (MODIFIER_OTHER, r"[\p{Lm}\p{Lo}]"),
            (PUNCT, r"\p{P}"),
            (SYMBOL, r"\p{S}"),
            (CJK, "[\u{4e00}-\u{9fa5}\u{3040}-\u{309f}\u{30a0}-\u{30ff}]"),
            (ASCII_PUNCT, r"[!-/:-@\[-`{-~]"),
        ];
        for (bit, class) in sets {
            for (a, b) in ranges(class) {
                for v in &mut flat[a as usize..=b as usize] {
                    *v |= bit;
                }
            }
        }
        for (a, b) in ranges("[A-Za-z]") {
            for v in &mut flat[a as usize..=b as usize] {
                *v |= ASCII_LETTER;
            }
        }
        let mut ascii = [0; 128];
        ascii.copy_from_slice(&flat[..128]);
        let mut index = Vec::with_capacity(flat.len() / BLOCK);
        let mut blocks: Vec<Bits> = Vec::new();
        let mut seen: std::collections::HashMap<&[Bits], u16> = Default::default();
        for chunk in flat.chunks(BLOCK) {
            let id = *seen.entry(chunk).or_insert_with(|| {
                blocks.extend_from_slice(chunk);
                (blocks.len() / BLOCK - 1) as u16
            });
            index.push(id);
        }
        Classes {
            ascii,
            index,
            blocks,
        }
    }
}

/// The code point ranges of one regex class, as `regex-syntax` parses it.
fn ranges(class: &str) -> Vec<(u32, u32)> {
    let hir = regex_syntax::Parser::new()
        .parse(class)
        .expect("a valid class");
    match hir.kind() {
        HirKind::Class(Class::Unicode(c)) => c
            .ranges()
            .iter()
            .map(|r| (r.start() as u32, r.end() as u32))
            .collect(),
        other => panic!("{class} parsed as {other:?}, not a Unicode class"),
    }
}

/// The code point at byte `i` of `s` (a char boundary) and its length in bytes.
#[inline(always)]
pub fn decode(s: &[u8], i: usize) -> (u32, usize) {
    let b0 = s[i] as u32;
    if b0 < 0x80 {
        (b0, 1)
    } else if b0 < 0xE0 {
        (((b0 & 0x1F) << 6) | (s[i + 1] as u32 & 0x3F), 2)
    } else if b0 < 0xF0 {
        (
            ((b0 & 0x0F) << 12) | ((s[i + 1] as u32 & 0x3F) << 6) | (s[i + 2] as u32 & 0x3F),
            3,
        )
    } else {
        (
            ((b0 & 0x07) << 18)
                | ((s[i + 1] as u32 & 0x3F) << 12)
                | ((s[i + 2] as u32 & 0x3F) << 6)
                | (s[i + 3] as u32 & 0x3F),
            4,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_match_the_regex_engine() {
        let t = Classes::get();
        let checks: [(Bits, &str); 6] = [
            (LETTER, r"^\p{L}$"),
            (NUMBER, r"^\p{N}$"),
            (SPACE, r"^\s$"),
            (MARK, r"^\p{M}$"),
            (PUNCT, r"^\p{P}$"),
            (CJK, "^[一-龥぀-ゟ゠-ヿ]$"),
        ];
        for (bit, re) in checks {
            let re = fancy_regex::Regex::new(re).unwrap();
            for c in (0u32..0x110000).step_by(7).filter_map(char::from_u32) {
                let mut buf = [0; 4];
                let s = c.encode_utf8(&mut buf);
                assert_eq!(
                    t.of(c as u32) & bit != 0,
                    re.is_match(s).unwrap(),
                    "{c:?} {re}"
                );
                assert_eq!(decode(s.as_bytes(), 0), (c as u32, c.len_utf8()));
            }
        }
    }
}
