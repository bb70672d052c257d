//! The `trim_offsets` of HF's ByteLevel and RobertaProcessing post-processors:
//! a token's offsets stop covering the spaces at its edges, so "Ġworld" points
//! at "world". Ids are untouched; only `encode(..., return_offsets=True)` sees it.

/// The byte-level stand-in for a space (byte 0x20 maps to U+0120).
const MAPPED_SPACE: char = '\u{120}';

fn is_space(c: char) -> bool {
    c == MAPPED_SPACE || c.is_whitespace()
}

/// Trims `offsets[i]` (char offsets) by the leading/trailing spaces of
/// `tokens[i]`. A first token's single leading space is kept when
/// `add_prefix_space`: that space was added, it is not in the text.
pub(crate) fn trim_offsets<'a>(
    tokens: impl Iterator<Item = &'a str>,
    offsets: &mut [(usize, usize)],
    add_prefix_space: bool,
) {
    for (i, (token, off)) in tokens.zip(offsets.iter_mut()).enumerate() {
        let mut leading = token.chars().take_while(|&c| is_space(c)).count();
        let trailing = token.chars().rev().take_while(|&c| is_space(c)).count();
        // "First" also means "starts the text" (HF counts either).
        let first = i == 0 || off.0 == 0;
        if first && add_prefix_space && leading == 1 {
            leading = 0;
        }
        if leading > 0 {
            off.0 = (off.0 + leading).min(off.1);
        }
        if trailing > 0 && off.1 >= trailing {
            off.1 = (off.1 - trailing).max(off.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::trim_offsets;

    fn trimmed(
        tokens: &[&str],
        offsets: &[(usize, usize)],
        add_prefix_space: bool,
    ) -> Vec<(usize, usize)> {
        let mut out = offsets.to_vec();
        trim_offsets(tokens.iter().copied(), &mut out, add_prefix_space);
        out
    }

    #[test]
    fn spaces_at_the_edges_leave_the_offsets() {
        // "Hello  world": Hello, Ġ (the first of two spaces), Ġworld.
        let toks = ["Hello", "Ġ", "Ġworld"];
        assert_eq!(
            trimmed(&toks, &[(0, 5), (5, 6), (6, 12)], false),
            [(0, 5), (6, 6), (7, 12)]
        );
        // An all-space token collapses to an empty span at its end.
        assert_eq!(trimmed(&["ĠĠĠ"], &[(2, 5)], false), [(5, 5)]);
        // Trailing spaces come off the end.
        assert_eq!(trimmed(&["abĠ"], &[(3, 6)], false), [(3, 5)]);
    }

    #[test]
    fn an_added_prefix_space_is_kept_on_the_first_token_only() {
        let toks = ["ĠHello", "Ġworld"];
        assert_eq!(trimmed(&toks, &[(0, 5), (5, 11)], true), [(0, 5), (6, 11)]);
        assert_eq!(trimmed(&toks, &[(0, 5), (5, 11)], false), [(1, 5), (6, 11)]);
        // Two leading spaces were not both added: both are trimmed.
        assert_eq!(trimmed(&["ĠĠa"], &[(0, 2)], true), [(2, 2)]);
    }
}
