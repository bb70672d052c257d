//! BPE tokenizer compatible with Hugging Face `tokenizers` (`tokenizer.json`
//! with a BPE model: byte-level GPT-2/Llama-3/Qwen2 style, or Metaspace +
//! byte-fallback Llama-2/Mistral style).

mod added;
mod byte_level;
mod cache;
mod components;
mod error;
mod json_read;
mod json_write;
mod limits;
mod merge;
mod model;
mod models;
mod offsets;
mod overflow;
mod padded;
mod pair;
mod pool;
mod pretokenize;
pub mod split_regex;
mod tokenizer;
mod trainer;
mod trim_offsets;
mod vocab;

pub use added::{AddedToken, AddedVocab};
pub use byte_level::{byte_to_char, char_to_byte};
pub use components::{
    DecStep, Decoder, NormStep, Normalizer, PostProcessor, PreStep, PreTokenizer, PrependScheme,
    Template, TemplatePiece,
};
pub use error::{Error, Result};
pub use json_read::{from_file, from_json_str};
pub use json_write::{save, to_json_string};
pub use model::{BpeModel, BpeOptions};
pub use models::{Model, Unigram, WordLevel, WordPiece};
pub use padded::PaddedRows;
pub use pair::PairEncoding;
pub use pool::{pool, pool_of};
pub use pretokenize::{for_each_piece, pieces};
pub use tokenizer::{IdsWithOffsets, Tokenizer};
pub use trainer::{Trainer, TrainerConfig};

#[cfg(test)]
mod tests;

/// A byte-level tokenizer with this vocab (a JSON object) and no merges.
#[cfg(test)]
pub(crate) fn merge_free_tokenizer(vocab: &str) -> Tokenizer {
    let json = format!(
        r#"{{"version":"1.0","added_tokens":[],"normalizer":null,
        "pre_tokenizer":{{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":true}},
        "post_processor":null,"decoder":null,"model":{{"type":"BPE","vocab":{vocab},"merges":[]}}}}"#
    );
    from_json_str(&json).expect("a valid tokenizer")
}
