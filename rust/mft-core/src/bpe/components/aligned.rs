//! A string being normalized, with, for every byte, the byte range of the
//! source text it came from, and the char-by-char rewrite rule HF's
//! `NormalizedString::transform` uses (so offsets come out as HF's do).

use super::pre_tokenizer::char_spans;

#[derive(Clone, Debug)]
pub struct Aligned {
    pub text: String,
    /// Per byte of `text`: (start, end) bytes of the source text.
    pub map: Vec<(usize, usize)>,
    /// False: only the text is rewritten (`map` stays empty), for encoding
    /// without offsets.
    pub track: bool,
}

impl Aligned {
    pub fn new(text: &str) -> Self {
        Aligned {
            text: text.to_string(),
            map: char_spans(text),
            track: true,
        }
    }

    /// A string whose alignment is not tracked (cheaper).
    pub fn untracked(text: &str) -> Self {
        Aligned {
            text: text.to_string(),
            map: Vec::new(),
            track: false,
        }
    }

    /// Rewrites the whole string from (char, change) pairs: change 0 replaces
    /// the next old char, 1 inserts a char (it takes the previous char's
    /// source range), -n replaces the next old char and drops n more.
    /// `removed_first` old chars are dropped before the first new char.
    pub fn transform(
        &mut self,
        dest: impl IntoIterator<Item = (char, isize)>,
        removed_first: usize,
    ) {
        if !self.track {
            self.text = dest.into_iter().map(|(c, _)| c).collect();
            return;
        }
        let old = std::mem::take(&mut self.text);
        let mut old_chars = old.chars();
        let mut offset: usize = old_chars
            .by_ref()
            .take(removed_first)
            .map(char::len_utf8)
            .sum();
        let last = self.map.len().saturating_sub(1);
        let mut text = String::with_capacity(old.len());
        let mut map = Vec::with_capacity(old.len());
        for (c, change) in dest {
            let align = if change > 0 {
                if offset == 0 {
                    (0, 0)
                } else {
                    self.map[(offset - 1).min(last)]
                }
            } else {
                self.map.get(offset).copied().unwrap_or((0, 0))
            };
            if change <= 0 {
                offset += old_chars.next().map_or(0, char::len_utf8);
            }
            if change < 0 {
                for _ in 0..change.unsigned_abs() {
                    offset += old_chars.next().map_or(0, char::len_utf8);
                }
            }
            map.extend(std::iter::repeat_n(align, c.len_utf8()));
            text.push(c);
        }
        self.text = text;
        self.map = map;
    }

    /// HF's `filter`: drops the chars `keep` rejects.
    pub fn filter(&mut self, keep: impl Fn(char) -> bool) {
        let (dest, removed_first) = filter_changes(&self.text, keep);
        self.transform(dest, removed_first);
    }

    /// HF's `map`: one char for one char.
    pub fn map_chars(&mut self, f: impl Fn(char) -> char) {
        let dest: Vec<(char, isize)> = self.text.chars().map(|c| (f(c), 0)).collect();
        self.transform(dest, 0);
    }
}

/// The (char, change) stream of HF's `filter` and the chars removed first.
pub fn filter_changes(text: &str, keep: impl Fn(char) -> bool) -> (Vec<(char, isize)>, usize) {
    let mut out = Vec::with_capacity(text.len());
    let mut removed: isize = 0;
    let mut removed_first = 0usize;
    let mut last: Option<char> = None;
    for c in text.chars() {
        if keep(c) {
            match last {
                Some(l) => out.push((l, -removed)),
                None => removed_first = removed as usize,
            }
            last = Some(c);
            removed = 0;
        } else {
            removed += 1;
        }
    }
    if let Some(l) = last {
        out.push((l, -removed));
    } else {
        removed_first = removed as usize;
    }
    (out, removed_first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removed_chars_widen_nothing_and_inserted_chars_copy_their_neighbour() {
        let mut a = Aligned::new("a\u{0}bc");
        a.filter(|c| c != '\u{0}');
        assert_eq!(a.text, "abc");
        assert_eq!(a.map, vec![(0, 1), (2, 3), (3, 4)]);
        let mut b = Aligned::new("ab");
        b.transform(vec![('a', 0), ('x', 1), ('y', 1), ('b', 0)], 0);
        assert_eq!(b.text, "axyb");
        assert_eq!(b.map, vec![(0, 1), (0, 1), (0, 1), (1, 2)]);
        let mut c = Aligned::new("  ab");
        c.filter(|c| c != ' ');
        assert_eq!(
            (c.text.as_str(), c.map.clone()),
            ("ab", vec![(2, 3), (3, 4)])
        );
    }
}
