//! Ids back to text (`decode`) and the vocabulary queries: token <-> id,
//! vocab size, the largest id.

use super::error::{Error, Result};
use super::tokenizer::Tokenizer;

impl Tokenizer {
    /// Ids -> text. Unknown ids are skipped, as HF does. As in HF, a token
    /// is skipped when the string it decodes from is a special token's
    /// content: a `normalized` special token the normalizer changes (Llama-2's
    /// "<s>" -> "▁<s>") decodes from its normalized form and is kept.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> String {
        let mut tokens: Vec<&str> = Vec::with_capacity(ids.len());
        for &id in ids {
            let Some(t) = self
                .added
                .text_of(id)
                .or_else(|| self.model.id_to_token(id))
            else {
                continue;
            };
            if !(skip_special_tokens && self.is_special(t)) {
                tokens.push(t);
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
            .text_of(id)
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
