//! The whole pipeline: added tokens -> normalizer -> ByteLevel
//! pre-tokenizer -> BPE -> post-processor, and the reverse for decoding.

use super::added::{AddedVocab, Segment};
use super::components::{Decoder, Normalizer, PostProcessor, PreTokenizer};
use super::error::{Error, Result};
use super::model::BpeModel;
use rayon::prelude::*;
use serde_json::Value;
use std::borrow::Cow;
use unicode_normalization::UnicodeNormalization;

pub struct Tokenizer {
    pub model: BpeModel,
    pub added: AddedVocab,
    pub normalizer: Normalizer,
    pub pre_tokenizer: PreTokenizer,
    pub post_processor: PostProcessor,
    pub decoder: Decoder,
    /// The file's own JSON for the non-model stages, written back verbatim by `save`.
    pub raw: RawStages,
}

#[derive(Clone, Debug, Default)]
pub struct RawStages {
    pub normalizer: Value,
    pub pre_tokenizer: Value,
    pub post_processor: Value,
    pub decoder: Value,
}

impl Tokenizer {
    /// Text -> ids; `add_special_tokens` applies the post-processor (HF's default).
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Vec<u32> {
        let mut ids = Vec::with_capacity(text.len() / 3 + 2);
        let mut segments = Vec::new();
        self.added.split(text, &mut segments);
        for seg in segments {
            match seg {
                Segment::Token(id) => ids.push(id),
                Segment::Text(t) => self.encode_text(t, &mut ids),
            }
        }
        if add_special_tokens {
            self.post_processor.apply(ids)
        } else {
            ids
        }
    }

    fn encode_text(&self, text: &str, ids: &mut Vec<u32>) {
        let normalized: Cow<str> = match self.normalizer {
            Normalizer::None => Cow::Borrowed(text),
            Normalizer::Nfc => Cow::Owned(text.nfc().collect()),
        };
        if normalized.is_empty() {
            return;
        }
        self.pre_tokenizer
            .for_each_piece(&normalized, &mut |piece| {
                self.model.encode_piece(piece, ids)
            });
    }

    /// Many texts on rayon's pool; results in input order.
    pub fn encode_batch<S: AsRef<str> + Sync>(
        &self,
        texts: &[S],
        add_special_tokens: bool,
    ) -> Vec<Vec<u32>> {
        texts
            .par_iter()
            .map(|t| self.encode(t.as_ref(), add_special_tokens))
            .collect()
    }

    /// Ids -> text. Unknown ids are skipped, as HF does.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> String {
        let mut tokens: Vec<&str> = Vec::with_capacity(ids.len());
        for &id in ids {
            if let Some(t) = self.added.by_id(id) {
                if !(skip_special_tokens && t.special) {
                    tokens.push(&t.content);
                }
            } else if let Some(t) = self.model.id_to_token(id) {
                if !(skip_special_tokens && self.is_special(t)) {
                    tokens.push(t);
                }
            }
        }
        self.decoder.decode(&tokens)
    }

    fn is_special(&self, token: &str) -> bool {
        self.added.by_content(token).is_some_and(|t| t.special)
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.added
            .by_content(token)
            .map(|t| t.id)
            .or_else(|| self.model.token_to_id(token))
    }

    pub fn id_to_token(&self, id: u32) -> Option<&str> {
        self.added
            .by_id(id)
            .map(|t| t.content.as_str())
            .or_else(|| self.model.id_to_token(id))
    }

    /// Distinct tokens in the model vocab and the added tokens (HF's
    /// `get_vocab_size(with_added_tokens=True)`).
    pub fn vocab_size(&self) -> usize {
        let extra = self
            .added
            .tokens
            .iter()
            .filter(|t| self.model.token_to_id(&t.content).is_none())
            .count();
        self.model.vocab_len() + extra
    }

    /// One more than the largest id in use (the embedding table size).
    pub fn max_id_plus_one(&self) -> usize {
        let model_max = self.model.id_upper_bound();
        let added_max = self
            .added
            .tokens
            .iter()
            .map(|t| t.id as usize + 1)
            .max()
            .unwrap_or(0);
        model_max.max(added_max)
    }

    pub fn check_ids(&self, ids: &[u32]) -> Result<()> {
        for &id in ids {
            if self.id_to_token(id).is_none() {
                return Err(Error::Invalid(format!("id {id} is not in the vocabulary")));
            }
        }
        Ok(())
    }
}
