//! The pipeline stages around the model, one file each: normalizer,
//! pre-tokenizer, post-processor and decoder, limited to what real BPE
//! checkpoints use (GPT-2/Llama-3/Qwen2 byte-level, Llama-2/Mistral
//! Metaspace + byte fallback).

mod aligned;
mod decoder;
mod hf_scripts;
mod normalizer;
mod post_processor;
mod pre_tokenizer;
mod precompiled;
mod split;
mod unicode_props;

pub use decoder::{DecStep, Decoder};
pub use normalizer::{NormStep, Normalizer};
pub use post_processor::{OverflowTypes, PostProcessor, Template, TemplatePiece};
pub use pre_tokenizer::{PreStep, PreTokenizer, PrependScheme};
pub use precompiled::{base64_decode, CharsMap};
pub use split::{Behavior, CharClass, Pattern, Splitter};
