//! Byte-level BPE tokenizer compatible with Hugging Face `tokenizers`
//! (`tokenizer.json` files with a ByteLevel pre-tokenizer and BPE model).

mod added;
mod byte_level;
mod cache;
mod components;
mod error;
mod json_read;
mod json_write;
mod merge;
mod model;
mod pretokenize;
mod tokenizer;
mod trainer;

pub use added::{AddedToken, AddedVocab};
pub use byte_level::{byte_to_char, char_to_byte};
pub use components::{Decoder, Normalizer, PostProcessor, PreStep, PreTokenizer};
pub use error::{Error, Result};
pub use json_read::{from_file, from_json_str};
pub use json_write::{save, to_json_string};
pub use model::{BpeModel, BpeOptions};
pub use pretokenize::{for_each_piece, pieces};
pub use tokenizer::Tokenizer;
pub use trainer::{Trainer, TrainerConfig};

#[cfg(test)]
mod tests;
