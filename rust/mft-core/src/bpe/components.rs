//! The pipeline stages around the model: normalizer, pre-tokenizer,
//! post-processor and decoder, limited to what real BPE checkpoints use
//! (GPT-2/Llama-3/Qwen2 byte-level, Llama-2/Mistral Metaspace + byte fallback).

use super::byte_level::token_to_bytes;
use super::pretokenize::for_each_piece;
use std::borrow::Cow;
use unicode_normalization::UnicodeNormalization;

/// One normalization step (HF normalizers NFC, Prepend, Replace with a string pattern).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NormStep {
    Nfc,
    /// Prepends the string to non-empty text (Llama-2's "▁").
    Prepend(String),
    /// Replaces every occurrence of `pattern` (Llama-2's " " -> "▁").
    Replace {
        pattern: String,
        content: String,
    },
}

/// The normalizer: steps applied in order (empty: none).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Normalizer {
    pub steps: Vec<NormStep>,
}

impl Normalizer {
    pub fn none() -> Self {
        Normalizer { steps: Vec::new() }
    }

    pub fn apply<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut cur: Cow<'a, str> = Cow::Borrowed(text);
        for step in &self.steps {
            match step {
                NormStep::Nfc => {
                    if !unicode_normalization::is_nfc_quick(cur.chars())
                        .eq(&unicode_normalization::IsNormalized::Yes)
                    {
                        cur = Cow::Owned(cur.nfc().collect());
                    }
                }
                NormStep::Prepend(p) => {
                    if !cur.is_empty() {
                        cur = Cow::Owned(format!("{p}{cur}"));
                    }
                }
                NormStep::Replace { pattern, content } => {
                    if !pattern.is_empty() && cur.contains(pattern.as_str()) {
                        cur = Cow::Owned(cur.replace(pattern.as_str(), content));
                    }
                }
            }
        }
        cur
    }
}

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
    SplitIsolated(Box<fancy_regex::Regex>),
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
pub fn char_spans(text: &str) -> Vec<(usize, usize)> {
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

/// Byte ranges of Metaspace's split: each marker is merged with what follows
/// it (runs of markers stay together with the next word, as HF's MergedWithNext).
fn metaspace_split(s: &str, replacement: char) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    let mut prev_match = false;
    let mut start = 0;
    let push = |out: &mut Vec<(usize, usize)>, a: usize, b: usize, prev_match: bool| {
        if prev_match {
            if let Some(last) = out.last_mut() {
                last.1 = b;
                return;
            }
        }
        out.push((a, b));
    };
    for (i, c) in s.char_indices() {
        if c == replacement {
            if i > start {
                push(&mut out, start, i, prev_match);
                prev_match = false;
            }
            let e = i + c.len_utf8();
            push(&mut out, i, e, prev_match);
            prev_match = true;
            start = e;
        }
    }
    if start < s.len() {
        push(&mut out, start, s.len(), prev_match);
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
                let mut first = at_start;
                for_each_piece(piece, |p| {
                    apply(rest, p, first, f);
                    first = false;
                });
            } else {
                apply(rest, piece, at_start, f);
            }
        }
        PreStep::SplitIsolated(re) => {
            for (i, (a, b)) in split_isolated(re, piece).into_iter().enumerate() {
                apply(rest, &piece[a..b], at_start && i == 0, f);
            }
        }
        PreStep::Metaspace {
            replacement,
            prepend,
            split,
        } => {
            let s = metaspace_text(piece, *replacement, *prepend, at_start);
            if *split {
                for (i, (a, b)) in metaspace_split(&s, *replacement).into_iter().enumerate() {
                    apply(rest, &s[a..b], at_start && i == 0, f);
                }
            } else {
                apply(rest, &s, at_start, f);
            }
        }
    }
}

fn split_isolated(re: &fancy_regex::Regex, piece: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut last = 0;
    for m in re.find_iter(piece) {
        // A regex runtime error (backtracking limit) leaves the rest whole.
        let Ok(m) = m else { break };
        if m.start() > last {
            out.push((last, m.start()));
        }
        if m.end() > m.start() {
            out.push((m.start(), m.end()));
        }
        last = m.end();
    }
    if last < piece.len() {
        out.push((last, piece.len()));
    }
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
                for (i, (a, b)) in spans.into_iter().enumerate() {
                    let (p, m) = sub(&piece, &map, a, b);
                    apply_aligned(rest, p, m, at_start && i == 0, out);
                }
            } else {
                apply_aligned(rest, piece, map, at_start, out);
            }
        }
        PreStep::SplitIsolated(re) => {
            for (i, (a, b)) in split_isolated(re, &piece).into_iter().enumerate() {
                let (p, m) = sub(&piece, &map, a, b);
                apply_aligned(rest, p, m, at_start && i == 0, out);
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
                for (i, (a, b)) in metaspace_split(&s, *replacement).into_iter().enumerate() {
                    let (p, mm) = sub(&s, &m, a, b);
                    apply_aligned(rest, p, mm, at_start && i == 0, out);
                }
            } else {
                apply_aligned(rest, s, m, at_start, out);
            }
        }
    }
}

impl Normalizer {
    /// `apply` plus, per byte of the result, the byte range in `text` it
    /// came from. NFC is aligned per run of a starter and its combining marks.
    pub fn apply_aligned(&self, text: &str) -> (String, Vec<(usize, usize)>) {
        let mut cur = text.to_string();
        let mut map = char_spans(text);
        for step in &self.steps {
            match step {
                NormStep::Nfc => {
                    let mut s = String::with_capacity(cur.len());
                    let mut m = Vec::with_capacity(cur.len());
                    let mut starts: Vec<usize> = cur
                        .char_indices()
                        .filter(|&(i, c)| i == 0 || is_nfc_boundary(c))
                        .map(|(i, _)| i)
                        .collect();
                    starts.push(cur.len());
                    for w in starts.windows(2) {
                        let (a, b) = (w[0], w[1]);
                        if a == b {
                            continue;
                        }
                        // As HF aligns: the first output char takes the first
                        // source char's range, the rest line up from the end
                        // (composition consumes the chars right after the first).
                        let srcs: Vec<(usize, usize)> =
                            cur[a..b].char_indices().map(|(i, _)| map[a + i]).collect();
                        let outs: Vec<char> = cur[a..b].nfc().collect();
                        for (k, &c) in outs.iter().enumerate() {
                            let j = if k == 0 {
                                0
                            } else {
                                (srcs.len() + k).saturating_sub(outs.len())
                            };
                            let src = srcs[j.min(srcs.len() - 1)];
                            m.extend(std::iter::repeat_n(src, c.len_utf8()));
                            s.push(c);
                        }
                    }
                    cur = s;
                    map = m;
                }
                NormStep::Prepend(p) => {
                    if !cur.is_empty() {
                        let mut m = vec![map[0]; p.len()];
                        m.extend_from_slice(&map);
                        cur = format!("{p}{cur}");
                        map = m;
                    }
                }
                NormStep::Replace { pattern, content } => {
                    if pattern.is_empty() {
                        continue;
                    }
                    let mut s = String::with_capacity(cur.len());
                    let mut m = Vec::with_capacity(cur.len());
                    let mut i = 0;
                    while i < cur.len() {
                        if cur[i..].starts_with(pattern.as_str()) {
                            let src = (map[i].0, map[i + pattern.len() - 1].1);
                            s.push_str(content);
                            m.extend(std::iter::repeat_n(src, content.len()));
                            i += pattern.len();
                        } else {
                            let c = cur[i..].chars().next().unwrap_or('\0');
                            let n = c.len_utf8();
                            s.push_str(&cur[i..i + n]);
                            m.extend_from_slice(&map[i..i + n]);
                            i += n;
                        }
                    }
                    cur = s;
                    map = m;
                }
            }
        }
        (cur, map)
    }
}

/// A char that starts an independent NFC run (a starter that never composes
/// with what precedes it; Hangul vowels/trailing jamo compose, so they don't).
fn is_nfc_boundary(c: char) -> bool {
    unicode_normalization::char::canonical_combining_class(c) == 0
        && !('\u{1160}'..='\u{11FF}').contains(&c)
}

/// One item of a TemplateProcessing `single` template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TemplatePiece {
    /// Ids of a special token (HF allows several ids per entry).
    Special(Vec<u32>),
    /// The encoded text itself ("A").
    Sequence,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PostProcessor {
    /// None, or ByteLevel without trim_offsets.
    Identity,
    /// ByteLevel with `trim_offsets` (RobertaProcessing's too): ids
    /// unchanged; offsets lose the spaces at their edges (see `trim_offsets`).
    TrimOffsets {
        add_prefix_space: bool,
    },
    /// TemplateProcessing, RobertaProcessing and BertProcessing all reduce
    /// to a single-sequence template.
    Template(Vec<TemplatePiece>),
    Sequence(Vec<PostProcessor>),
}

impl PostProcessor {
    pub fn apply(&self, ids: Vec<u32>) -> Vec<u32> {
        let (before, after) = self.added_ids();
        if before.is_empty() && after.is_empty() {
            return ids;
        }
        let mut out = Vec::with_capacity(ids.len() + before.len() + after.len());
        out.extend_from_slice(&before);
        out.extend_from_slice(&ids);
        out.extend_from_slice(&after);
        out
    }

    /// `Some(add_prefix_space)` when a step trims offsets.
    pub fn offset_trim(&self) -> Option<bool> {
        match self {
            PostProcessor::TrimOffsets { add_prefix_space } => Some(*add_prefix_space),
            PostProcessor::Sequence(steps) => steps.iter().find_map(PostProcessor::offset_trim),
            _ => None,
        }
    }

    /// Special ids the template puts before / after the text (for bos/eos).
    pub fn added_ids(&self) -> (Vec<u32>, Vec<u32>) {
        match self {
            PostProcessor::Identity | PostProcessor::TrimOffsets { .. } => (vec![], vec![]),
            PostProcessor::Template(pieces) => {
                let (mut before, mut after) = (vec![], vec![]);
                let mut seen_seq = false;
                for p in pieces {
                    match p {
                        TemplatePiece::Sequence => seen_seq = true,
                        TemplatePiece::Special(s) if seen_seq => after.extend_from_slice(s),
                        TemplatePiece::Special(s) => before.extend_from_slice(s),
                    }
                }
                (before, after)
            }
            PostProcessor::Sequence(steps) => {
                let (mut before, mut after) = (vec![], vec![]);
                for s in steps {
                    let (b, a) = s.added_ids();
                    before.splice(0..0, b);
                    after.extend(a);
                }
                (before, after)
            }
        }
    }
}

/// One decoder step over the token strings (HF's `decode_chain`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecStep {
    /// Byte-level chars back to bytes; all tokens become one string.
    ByteLevel,
    Replace {
        pattern: String,
        content: String,
    },
    /// Runs of `<0xHH>` tokens become the UTF-8 text of their bytes (U+FFFD per byte if invalid).
    ByteFallback,
    /// All tokens joined into one.
    Fuse,
    /// Removes up to `start` leading / `stop` trailing `content` chars from every token.
    Strip {
        content: char,
        start: usize,
        stop: usize,
    },
    /// Markers back to spaces; the first token loses its markers unless `prepend` is Never.
    Metaspace {
        replacement: char,
        strip_first: bool,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decoder {
    /// No decoder: HF joins the tokens with spaces.
    None,
    Chain(Vec<DecStep>),
}

impl Decoder {
    pub fn byte_level() -> Self {
        Decoder::Chain(vec![DecStep::ByteLevel])
    }

    pub fn decode(&self, tokens: &[&str]) -> String {
        let steps = match self {
            Decoder::None => return tokens.join(" "),
            Decoder::Chain(steps) => steps,
        };
        if let [DecStep::ByteLevel] = steps.as_slice() {
            let mut bytes = Vec::with_capacity(tokens.len() * 4);
            for t in tokens {
                token_to_bytes(t, &mut bytes);
            }
            return String::from_utf8_lossy(&bytes).into_owned();
        }
        let mut toks: Vec<String> = tokens.iter().map(|t| t.to_string()).collect();
        for step in steps {
            toks = decode_step(step, toks);
        }
        toks.concat()
    }
}

fn byte_token(t: &str) -> Option<u8> {
    let hex = t.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

fn decode_step(step: &DecStep, toks: Vec<String>) -> Vec<String> {
    match step {
        DecStep::ByteLevel => {
            let mut bytes = Vec::new();
            for t in &toks {
                token_to_bytes(t, &mut bytes);
            }
            vec![String::from_utf8_lossy(&bytes).into_owned()]
        }
        DecStep::Replace { pattern, content } => toks
            .into_iter()
            .map(|t| {
                if pattern.is_empty() {
                    t
                } else {
                    t.replace(pattern.as_str(), content)
                }
            })
            .collect(),
        DecStep::ByteFallback => {
            let mut out = Vec::with_capacity(toks.len());
            let mut pending: Vec<u8> = Vec::new();
            let flush = |pending: &mut Vec<u8>, out: &mut Vec<String>| {
                if pending.is_empty() {
                    return;
                }
                match std::str::from_utf8(pending) {
                    Ok(s) => out.push(s.to_string()),
                    Err(_) => {
                        out.extend(std::iter::repeat_n("\u{FFFD}".to_string(), pending.len()))
                    }
                }
                pending.clear();
            };
            for t in toks {
                match byte_token(&t) {
                    Some(b) => pending.push(b),
                    None => {
                        flush(&mut pending, &mut out);
                        out.push(t);
                    }
                }
            }
            flush(&mut pending, &mut out);
            out
        }
        DecStep::Fuse => vec![toks.concat()],
        DecStep::Strip {
            content,
            start,
            stop,
        } => toks
            .into_iter()
            .map(|t| {
                let chars: Vec<char> = t.chars().collect();
                let lead = chars
                    .iter()
                    .take(*start)
                    .take_while(|&&c| c == *content)
                    .count();
                let trail = chars[lead..]
                    .iter()
                    .rev()
                    .take(*stop)
                    .take_while(|&&c| c == *content)
                    .count();
                chars[lead..chars.len() - trail].iter().collect()
            })
            .collect(),
        DecStep::Metaspace {
            replacement,
            strip_first,
        } => toks
            .into_iter()
            .enumerate()
            .map(|(i, t)| {
                // HF drops every marker of the first token (not only a leading one).
                t.chars()
                    .filter_map(|c| match c {
                        c if c == *replacement && i == 0 && *strip_first => None,
                        c if c == *replacement => Some(' '),
                        c => Some(c),
                    })
                    .collect()
            })
            .collect(),
    }
}
