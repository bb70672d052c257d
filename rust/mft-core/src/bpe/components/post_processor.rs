//! Post-processors: templates that add special tokens around the text (one
//! text or a pair, with type ids), and offset trimming (ids unchanged).

/// One item of a template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TemplatePiece {
    /// Ids of a special token (HF allows several ids per entry) and their type id.
    Special(Vec<u32>, u32),
    /// The encoded text: the first ("A", `second == false`) or the pair's
    /// second ("B"), with the type id its tokens get.
    Sequence { second: bool, type_id: u32 },
}

/// TemplateProcessing; BertProcessing and RobertaProcessing are written as one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    pub single: Vec<TemplatePiece>,
    pub pair: Vec<TemplatePiece>,
    /// When an overflowing window keeps the type id the encoder gave it (A 0,
    /// B 1) instead of its template's: HF's TemplateProcessing sets type
    /// ids on the main windows only (XLM-R's "$B:0" windows stay 1);
    /// RobertaProcessing rebuilds its windows with type 0 when it adds
    /// special tokens, and leaves them as they are when it does not.
    pub overflow_types: OverflowTypes,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OverflowTypes {
    /// Windows keep the encoder's type ids (TemplateProcessing, BertProcessing).
    Raw,
    /// Raw without special tokens, the template's with them (RobertaProcessing).
    RawWithoutSpecials,
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
    Template(Template),
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

    /// The template that lays out a text or a pair (the first one in a Sequence).
    pub fn template(&self) -> Option<&Template> {
        match self {
            PostProcessor::Template(t) => Some(t),
            PostProcessor::Sequence(steps) => steps.iter().find_map(PostProcessor::template),
            _ => None,
        }
    }

    /// How many special ids the template adds to one text or a pair (HF's
    /// `added_tokens(is_pair)`, which truncation leaves room for).
    pub fn n_added(&self, pair: bool) -> usize {
        match self {
            PostProcessor::Identity | PostProcessor::TrimOffsets { .. } => 0,
            PostProcessor::Template(t) => {
                let pieces = if pair { &t.pair } else { &t.single };
                pieces
                    .iter()
                    .map(|p| match p {
                        TemplatePiece::Special(ids, _) => ids.len(),
                        TemplatePiece::Sequence { .. } => 0,
                    })
                    .sum()
            }
            PostProcessor::Sequence(steps) => steps.iter().map(|s| s.n_added(pair)).sum(),
        }
    }

    /// Special ids the template puts before / after the text (for bos/eos).
    pub fn added_ids(&self) -> (Vec<u32>, Vec<u32>) {
        match self {
            PostProcessor::Identity | PostProcessor::TrimOffsets { .. } => (vec![], vec![]),
            PostProcessor::Template(t) => {
                let (mut before, mut after) = (vec![], vec![]);
                let mut seen_seq = false;
                for p in &t.single {
                    match p {
                        TemplatePiece::Sequence { .. } => seen_seq = true,
                        TemplatePiece::Special(s, _) if seen_seq => after.extend_from_slice(s),
                        TemplatePiece::Special(s, _) => before.extend_from_slice(s),
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
