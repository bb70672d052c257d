//! The pipeline stages around the model: normalizer, pre-tokenizer,
//! post-processor and decoder, limited to what byte-level BPE files use.

use super::byte_level::token_to_bytes;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Normalizer {
    None,
    Nfc,
}

/// HF's ByteLevel pre-tokenizer (alone or as the only step of a Sequence).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PreTokenizer {
    pub add_prefix_space: bool,
    pub trim_offsets: bool,
    pub use_regex: bool,
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
