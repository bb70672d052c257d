//! SentencePiece's `precompiled_charsmap` (HF's `Precompiled` normalizer, as
//! in T5/ALBERT/XLNet files): a double-array trie over UTF-8 bytes whose
//! values index a blob of NUL-terminated replacement strings.
//!
//! Layout: u32 (little-endian) byte size of the trie, the trie's u32 units,
//! then the replacement strings. HF rewrites each grapheme (under 6 bytes) the
//! trie knows as a whole, else each of its chars the trie knows.

use unicode_segmentation::UnicodeSegmentation;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CharsMap {
    units: Vec<u32>,
    strings: Vec<u8>,
    /// The ASCII chars the map leaves alone (and "\r\n" too): text made of
    /// them alone is unchanged without a lookup.
    ascii_unchanged: [bool; 128],
}

/// Standard base64 (with or without padding) -> bytes.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for b in s.bytes() {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            b'\n' | b'\r' => continue,
            _ => return None,
        };
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

impl CharsMap {
    /// Parses the decoded blob; None when it is too short or inconsistent.
    pub fn parse(blob: &[u8]) -> Option<CharsMap> {
        let size = u32::from_le_bytes(blob.get(..4)?.try_into().ok()?) as usize;
        if !size.is_multiple_of(4) || blob.len() < 4 + size {
            return None;
        }
        let units: Vec<u32> = blob[4..4 + size]
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if units.is_empty() {
            return None;
        }
        let mut map = CharsMap {
            units,
            strings: blob[4 + size..].to_vec(),
            ascii_unchanged: [false; 128],
        };
        let crlf = map.lookup("\r\n").is_none();
        for b in 0..128u8 {
            let c = (b as char).to_string();
            map.ascii_unchanged[b as usize] = map.lookup(&c).is_none() && (crlf || b != b'\r');
        }
        Some(map)
    }

    /// The value of the shortest key in the trie that is a prefix of `key`.
    fn first_prefix_value(&self, key: &[u8]) -> Option<usize> {
        let unit = |i: usize| self.units.get(i).copied();
        let offset = |u: u32| ((u >> 10) << ((u & (1 << 9)) >> 6)) as usize;
        let mut pos = offset(unit(0)?);
        for &c in key {
            if c == 0 {
                break;
            }
            pos ^= c as usize;
            let u = unit(pos)?;
            if u & ((1 << 31) | 0xFF) != c as u32 {
                return None;
            }
            pos ^= offset(u);
            if (u >> 8) & 1 == 1 {
                if let Some(v) = unit(pos) {
                    return Some((v & ((1 << 31) - 1)) as usize);
                }
            }
        }
        None
    }

    /// The replacement of `chunk` when the trie has one (HF takes the first hit).
    pub fn lookup(&self, chunk: &str) -> Option<&str> {
        let start = self.first_prefix_value(chunk.as_bytes())?;
        let rest = self.strings.get(start..)?;
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        std::str::from_utf8(&rest[..end]).ok()
    }

    /// HF's (char, change) stream for `text`, or None when nothing changes.
    pub fn changes(&self, text: &str) -> Option<Vec<(char, isize)>> {
        if text.bytes().all(|b| b < 128 && self.ascii_unchanged[b as usize]) {
            return None;
        }
        let mut out: Vec<(char, isize)> = Vec::with_capacity(text.len());
        let mut modified = false;
        for g in text.graphemes(true) {
            // A lone ASCII char the map leaves alone (most of most text).
            if let [b] = g.as_bytes() {
                if *b < 128 && self.ascii_unchanged[*b as usize] {
                    out.push((*b as char, 0));
                    continue;
                }
            }
            if g.len() < 6 {
                if let Some(norm) = self.lookup(g) {
                    modified = true;
                    replace(&mut out, g, norm);
                    continue;
                }
            }
            for (i, c) in g.char_indices() {
                let part = &g[i..i + c.len_utf8()];
                match self.lookup(part) {
                    Some(norm) => {
                        modified = true;
                        replace(&mut out, part, norm);
                    }
                    None => out.push((c, 0)),
                }
            }
        }
        modified.then_some(out)
    }
}

/// `old` becomes `new`: chars replace one for one, extra new chars are
/// inserts, missing ones are removed after the last new char.
fn replace(out: &mut Vec<(char, isize)>, old: &str, new: &str) {
    let diff = new.chars().count() as isize - old.chars().count() as isize;
    out.extend(new.chars().map(|c| (c, 0)));
    if diff > 0 {
        for e in out.iter_mut().rev().take(diff as usize) {
            e.1 = 1;
        }
    } else if diff < 0 {
        if let Some(e) = out.last_mut() {
            e.1 += diff;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::base64_decode;

    #[test]
    fn base64_round_trips_known_values() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGVsbG8").unwrap(), b"hello");
        assert_eq!(base64_decode("").unwrap(), b"");
        assert!(base64_decode("a$b").is_none());
    }
}
