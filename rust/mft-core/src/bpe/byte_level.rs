//! GPT-2's reversible byte <-> printable-char mapping used by byte-level BPE.
//!
//! Printable Latin-1 bytes map to themselves; the other 68 bytes are shifted
//! to U+0100.. in byte order, so every byte becomes one visible char and
//! vocabularies stay readable text.

use std::sync::OnceLock;

struct Tables {
    byte_to_char: [char; 256],
    /// Indexed by code point (all mapped chars are < 0x144).
    char_to_byte: [i16; 0x144],
}

fn is_self_mapped(b: u8) -> bool {
    (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b)
}

fn tables() -> &'static Tables {
    static T: OnceLock<Tables> = OnceLock::new();
    T.get_or_init(|| {
        let mut byte_to_char = ['\0'; 256];
        let mut char_to_byte = [-1i16; 0x144];
        let mut shifted = 0u32;
        for b in 0..=255u8 {
            let c = if is_self_mapped(b) {
                b as u32
            } else {
                shifted += 1;
                255 + shifted
            };
            let ch = char::from_u32(c).expect("mapping stays below U+0144");
            byte_to_char[b as usize] = ch;
            char_to_byte[c as usize] = b as i16;
        }
        Tables {
            byte_to_char,
            char_to_byte,
        }
    })
}

/// The char that stands for byte `b`.
#[inline]
pub fn byte_to_char(b: u8) -> char {
    tables().byte_to_char[b as usize]
}

/// The byte a mapped char stands for, or None for chars outside the mapping.
#[inline]
pub fn char_to_byte(c: char) -> Option<u8> {
    let t = tables();
    let i = c as usize;
    if i < t.char_to_byte.len() && t.char_to_byte[i] >= 0 {
        Some(t.char_to_byte[i] as u8)
    } else {
        None
    }
}

/// Maps raw bytes to their byte-level string (one char per byte).
pub fn bytes_to_mapped(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(byte_to_char(b));
    }
    s
}

/// All 256 mapped chars sorted by code point (HF's trainer alphabet order).
pub fn alphabet_sorted() -> Vec<char> {
    let mut v: Vec<char> = (0..=255u8).map(byte_to_char).collect();
    v.sort_unstable();
    v
}

/// HF ByteLevel decoder for one token: its mapped chars back to bytes, or the
/// token's own UTF-8 bytes when any char is outside the mapping (added tokens).
pub fn token_to_bytes(token: &str, out: &mut Vec<u8>) {
    let start = out.len();
    for c in token.chars() {
        match char_to_byte(c) {
            Some(b) => out.push(b),
            None => {
                out.truncate(start);
                out.extend_from_slice(token.as_bytes());
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_is_a_bijection_with_gpt2_landmarks() {
        assert_eq!(byte_to_char(b' '), 'Ġ');
        assert_eq!(byte_to_char(b'\n'), 'Ċ');
        assert_eq!(byte_to_char(b'A'), 'A');
        assert_eq!(byte_to_char(0xAD), 'Ń');
        for b in 0..=255u8 {
            assert_eq!(char_to_byte(byte_to_char(b)), Some(b));
        }
        assert_eq!(char_to_byte('€'), None);
    }

    #[test]
    fn added_token_text_falls_back_to_utf8() {
        let mut out = Vec::new();
        token_to_bytes("Ġhi", &mut out);
        token_to_bytes("<|im_start|>", &mut out);
        token_to_bytes("你", &mut out);
        assert_eq!(out, " hi<|im_start|>你".as_bytes());
    }
}
