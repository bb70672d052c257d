//! The pipeline stages around the model: normalizer, pre-tokenizer,
//! post-processor and decoder, limited to what byte-level BPE files use.

use super::byte_level::token_to_bytes;
use super::pretokenize::for_each_piece;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Normalizer {
    None,
    Nfc,
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
}

/// The pre-tokenizer: steps applied in order, each to every piece of the last.
#[derive(Clone, Debug)]
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

    /// Calls `f` with every final piece of `text` (empty pieces dropped, as HF does).
    pub fn for_each_piece(&self, text: &str, f: &mut dyn FnMut(&str)) {
        apply(&self.steps, text, f);
    }
}

fn apply(steps: &[PreStep], piece: &str, f: &mut dyn FnMut(&str)) {
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
                for_each_piece(piece, |p| apply(rest, p, f));
            } else {
                apply(rest, piece, f);
            }
        }
        PreStep::SplitIsolated(re) => {
            let mut last = 0;
            for m in re.find_iter(piece) {
                // A regex runtime error (backtracking limit) leaves the rest whole.
                let Ok(m) = m else { break };
                if m.start() > last {
                    apply(rest, &piece[last..m.start()], f);
                }
                apply(rest, m.as_str(), f);
                last = m.end();
            }
            if last < piece.len() {
                apply(rest, &piece[last..], f);
            }
        }
    }
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
    /// None, or ByteLevel (which only trims offsets: ids unchanged).
    Identity,
    /// TemplateProcessing, RobertaProcessing and BertProcessing all reduce
    /// to a single-sequence template.
    Template(Vec<TemplatePiece>),
    Sequence(Vec<PostProcessor>),
}

impl PostProcessor {
    pub fn apply(&self, ids: Vec<u32>) -> Vec<u32> {
        match self {
            PostProcessor::Identity => ids,
            PostProcessor::Template(pieces) => {
                let mut out = Vec::with_capacity(ids.len() + pieces.len());
                for p in pieces {
                    match p {
                        TemplatePiece::Special(s) => out.extend_from_slice(s),
                        TemplatePiece::Sequence => out.extend_from_slice(&ids),
                    }
                }
                out
            }
            PostProcessor::Sequence(steps) => steps.iter().fold(ids, |acc, s| s.apply(acc)),
        }
    }

    /// Special ids the template puts before / after the text (for bos/eos).
    pub fn added_ids(&self) -> (Vec<u32>, Vec<u32>) {
        match self {
            PostProcessor::Identity => (vec![], vec![]),
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoder {
    /// No decoder: HF joins the tokens with spaces.
    None,
    ByteLevel,
}

impl Decoder {
    pub fn decode(&self, tokens: &[&str]) -> String {
        match self {
            Decoder::None => tokens.join(" "),
            Decoder::ByteLevel => {
                let mut bytes = Vec::with_capacity(tokens.len() * 4);
                for t in tokens {
                    token_to_bytes(t, &mut bytes);
                }
                String::from_utf8_lossy(&bytes).into_owned()
            }
        }
    }
}
