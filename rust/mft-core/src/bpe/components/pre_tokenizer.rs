//! Pre-tokenizers: ByteLevel, Metaspace, Split (Isolated) and Sequences of
//! them, with the byte ranges of the original text each piece covers.

use super::super::pretokenize::for_each_piece;
use super::super::split_regex::SplitRegex;
use super::split::Splitter;

/// Where Metaspace adds its leading "▁" (HF's `prepend_scheme`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrependScheme {
    Always,
    /// Only to the text at the very start of the input (not after an added token).
    First,
    Never,
}

/// One pre-tokenization step.
#[derive(Clone, Debug)]
pub enum PreStep {
    /// HF's ByteLevel: optional prefix space, then (if `use_regex`) the GPT-2 pieces.
    ByteLevel {
        add_prefix_space: bool,
        trim_offsets: bool,
        use_regex: bool,
    },
    /// HF's Split with a regex and behavior "Isolated": matches and the gaps
    /// between them become separate pieces (Llama-3 / Qwen2 style patterns).
    SplitIsolated(Box<SplitRegex>),
    /// A pre-tokenizer that only cuts pieces (Split with other behaviours,
    /// Whitespace, Punctuation, Digits, BertPreTokenizer, ...; see `split.rs`).
    Split(Box<Splitter>),
    /// HF's Metaspace: spaces become `replacement`, which is prepended per
    /// `prepend`; with `split`, every replacement char starts a new piece.
    Metaspace {
        replacement: char,
        prepend: PrependScheme,
        split: bool,
    },
}

/// The pre-tokenizer: steps applied in order, each to every piece of the last.
#[derive(Clone, Debug, Default)]
pub struct PreTokenizer {
    pub steps: Vec<PreStep>,
}

impl PreTokenizer {
    pub fn byte_level(add_prefix_space: bool) -> Self {
        PreTokenizer {
            steps: vec![PreStep::ByteLevel {
                add_prefix_space,
                trim_offsets: true,
                use_regex: true,
            }],
        }
    }

    /// True when a step depends on whether a piece starts the input
    /// (Metaspace with prepend_scheme "first").
    pub fn prepends_first(&self) -> bool {
        self.steps.iter().any(|s| {
            matches!(
                s,
                PreStep::Metaspace {
                    prepend: PrependScheme::First,
                    ..
                }
            )
        })
    }

    /// True when the model sees byte-level mapped text (a ByteLevel step exists).
    pub fn is_byte_level(&self) -> bool {
        self.steps
            .iter()
            .any(|s| matches!(s, PreStep::ByteLevel { .. }))
    }

    /// Calls `f` with every final piece of `text` (empty pieces dropped, as HF
    /// does). `at_start`: `text` begins the whole input (Metaspace "first").
    pub fn for_each_piece(&self, text: &str, at_start: bool, f: &mut dyn FnMut(&str)) {
        apply(&self.steps, text, at_start, f);
    }

    /// The Split regexes, in order, when they are the only steps that change
    /// anything (at most three; the others: ByteLevel steps without regex or
    /// prefix space, which leave pieces as they are). Llama-3, Qwen2,
    /// cl100k/o200k files have one, DeepSeek-V3's three: the encoder then
    /// runs the scanners nested, straight into the model.
    pub fn split_chain(&self) -> Option<([&SplitRegex; 3], usize)> {
        let mut out: [Option<&SplitRegex>; 3] = [None; 3];
        let mut n = 0;
        for s in &self.steps {
            match s {
                PreStep::SplitIsolated(re) if n < 3 => {
                    out[n] = Some(&**re);
                    n += 1;
                }
                PreStep::ByteLevel {
                    add_prefix_space: false,
                    use_regex: false,
                    ..
                } => {}
                _ => return None,
            }
        }
        let first = out[0]?;
        Some(([first, out[1].unwrap_or(first), out[2].unwrap_or(first)], n))
    }

    /// True when the steps are just ByteLevel's GPT-2 regex without prefix
    /// space (files mft trains, GPT-2's own): the encoder then runs the
    /// GPT-2 scanner straight into the model.
    pub fn is_plain_gpt2(&self) -> bool {
        matches!(
            self.steps.as_slice(),
            [PreStep::ByteLevel {
                add_prefix_space: false,
                use_regex: true,
                ..
            }]
        )
    }

    /// Byte ranges of the final pieces within `text` plus, per piece, the
    /// rewritten piece text when a step changed it. Used for offsets.
    pub fn pieces_with_spans(
        &self,
        text: &str,
        at_start: bool,
    ) -> Vec<(String, Vec<(usize, usize)>)> {
        let map: Vec<(usize, usize)> = char_spans(text);
        let mut out = Vec::new();
        apply_aligned(&self.steps, text.to_string(), map, at_start, &mut out);
        out
    }
}

/// For every byte of `text`, the byte range of the char it belongs to.
pub(super) fn char_spans(text: &str) -> Vec<(usize, usize)> {
    let mut map = Vec::with_capacity(text.len());
    for (i, c) in text.char_indices() {
        let e = i + c.len_utf8();
        map.extend(std::iter::repeat_n((i, e), c.len_utf8()));
    }
    map
}

/// `text` with spaces replaced and the marker prepended, as Metaspace does.
fn metaspace_text(
    piece: &str,
    replacement: char,
    prepend: PrependScheme,
    at_start: bool,
) -> String {
    let mut s = String::with_capacity(piece.len() + 3);
    let add = match prepend {
        PrependScheme::Always => true,
        PrependScheme::First => at_start,
        PrependScheme::Never => false,
    };
    if add && !piece.starts_with(' ') && !piece.starts_with(replacement) {
        s.push(replacement);
    }
    for c in piece.chars() {
        s.push(if c == ' ' { replacement } else { c });
    }
    s
}

/// Byte ranges of Metaspace's split, as HF's MergedWithNext on a char: every
/// marker is its own match, and a marker joins the text right after it only
/// when that text is not another marker ("a▁▁▁b" -> "a", "▁", "▁", "▁b").
fn metaspace_split(s: &str, replacement: char) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    let mut open: Option<usize> = None;
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c != replacement {
            open.get_or_insert(i);
            continue;
        }
        if let Some(a) = open.take() {
            out.push((a, i));
        }
        match chars.peek() {
            Some(&(_, next)) if next != replacement => open = Some(i),
            _ => out.push((i, i + c.len_utf8())),
        }
    }
    if let Some(a) = open {
        out.push((a, s.len()));
    }
    out
}

fn apply(steps: &[PreStep], piece: &str, at_start: bool, f: &mut dyn FnMut(&str)) {
    if piece.is_empty() {
        return;
    }
    let Some((step, rest)) = steps.split_first() else {
        f(piece);
        return;
    };
    match step {
        PreStep::ByteLevel {
            add_prefix_space,
            use_regex,
            ..
        } => {
            let prefixed;
            let piece = if *add_prefix_space && !piece.starts_with(' ') {
                prefixed = format!(" {piece}");
                prefixed.as_str()
            } else {
                piece
            };
            if *use_regex {
                let base = piece.as_ptr();
                for_each_piece(piece, |p| apply(rest, p, at_start && p.as_ptr() == base, f));
            } else {
                apply(rest, piece, at_start, f);
            }
        }
        PreStep::SplitIsolated(re) => {
            re.isolated(piece, &mut |a, b| {
                apply(rest, &piece[a..b], at_start && a == 0, f)
            });
        }
        PreStep::Split(sp) => {
            for (a, b) in sp.spans(piece) {
                apply(rest, &piece[a..b], at_start && a == 0, f);
            }
        }
        PreStep::Metaspace {
            replacement,
            prepend,
            split,
        } => {
            let s = metaspace_text(piece, *replacement, *prepend, at_start);
            if *split {
                for (a, b) in metaspace_split(&s, *replacement) {
                    apply(rest, &s[a..b], at_start && a == 0, f);
                }
            } else {
                apply(rest, &s, at_start, f);
            }
        }
    }
}

fn split_isolated(re: &SplitRegex, piece: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    re.isolated(piece, &mut |a, b| out.push((a, b)));
    out
}

/// Rebuilds a byte -> source-range map after `text` became `new` by
/// per-char rewriting where `origin[k]` is the byte in `text` new char k came from.
fn remap(new: &str, origin: &[usize], map: &[(usize, usize)]) -> Vec<(usize, usize)> {
    let mut out = Vec::with_capacity(new.len());
    for (k, c) in new.chars().enumerate() {
        let src = map[origin[k].min(map.len() - 1)];
        out.extend(std::iter::repeat_n(src, c.len_utf8()));
    }
    out
}

/// `apply` that also carries, for every byte of the piece, the range of the
/// original text it came from (prepended chars take their neighbour's range).
fn apply_aligned(
    steps: &[PreStep],
    piece: String,
    map: Vec<(usize, usize)>,
    at_start: bool,
    out: &mut Vec<(String, Vec<(usize, usize)>)>,
) {
    if piece.is_empty() {
        return;
    }
    let Some((step, rest)) = steps.split_first() else {
        out.push((piece, map));
        return;
    };
    let sub = |piece: &str, map: &[(usize, usize)], a: usize, b: usize| {
        (piece[a..b].to_string(), map[a..b].to_vec())
    };
    match step {
        PreStep::ByteLevel {
            add_prefix_space,
            use_regex,
            ..
        } => {
            let (piece, map) = if *add_prefix_space && !piece.starts_with(' ') {
                let mut m = vec![map[0]];
                m.extend_from_slice(&map);
                (format!(" {piece}"), m)
            } else {
                (piece, map)
            };
            if *use_regex {
                let mut spans = Vec::new();
                let base = piece.as_ptr() as usize;
                for_each_piece(&piece, |p| {
                    let a = p.as_ptr() as usize - base;
                    spans.push((a, a + p.len()));
                });
                for (a, b) in spans {
                    let (p, m) = sub(&piece, &map, a, b);
                    apply_aligned(rest, p, m, at_start && a == 0, out);
                }
            } else {
                apply_aligned(rest, piece, map, at_start, out);
            }
        }
        PreStep::SplitIsolated(re) => {
            for (a, b) in split_isolated(re, &piece) {
                let (p, m) = sub(&piece, &map, a, b);
                apply_aligned(rest, p, m, at_start && a == 0, out);
            }
        }
        PreStep::Split(sp) => {
            for (a, b) in sp.spans(&piece) {
                let (p, m) = sub(&piece, &map, a, b);
                apply_aligned(rest, p, m, at_start && a == 0, out);
            }
        }
        PreStep::Metaspace {
            replacement,
            prepend,
            split,
        } => {
            let s = metaspace_text(&piece, *replacement, *prepend, at_start);
            let prepended = s.chars().count() > piece.chars().count();
            let mut origin = Vec::new();
            if prepended {
                origin.push(0);
            }
            origin.extend(piece.char_indices().map(|(i, _)| i));
            let m = remap(&s, &origin, &map);
            if *split {
                for (a, b) in metaspace_split(&s, *replacement) {
                    let (p, mm) = sub(&s, &m, a, b);
                    apply_aligned(rest, p, mm, at_start && a == 0, out);
                }
            } else {
                apply_aligned(rest, s, m, at_start, out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::metaspace_split;

    fn pieces(s: &str) -> Vec<&str> {
        metaspace_split(s, '▁')
            .into_iter()
            .map(|(a, b)| &s[a..b])
            .collect()
    }

    #[test]
    fn each_marker_of_a_run_is_its_own_piece_but_the_last() {
        assert_eq!(pieces("a▁▁▁b"), ["a", "▁", "▁", "▁b"]);
        assert_eq!(pieces("▁a▁b"), ["▁a", "▁b"]);
        assert_eq!(pieces("ab▁▁"), ["ab", "▁", "▁"]);
        assert_eq!(pieces("▁"), ["▁"]);
        assert_eq!(pieces("abc"), ["abc"]);
    }
}
