//! Megatron-compatible indexed datasets (`.bin` token data + `.idx` index).
//!
//! `.idx` layout (little-endian), as Megatron-LM's `indexed_dataset.py` writes it:
//! magic `b"MMIDIDX\0\0"`, version u64 = 1, dtype code u8, sequence count u64,
//! document count u64 (= number of document-index entries, i.e. documents + 1),
//! then sequence lengths i32[seq], sequence byte pointers i64[seq] into `.bin`,
//! and document indices i64[documents + 1] starting at 0. Here one document is
//! one sequence. `.bin` is the concatenated tokens in the dtype named by the code.

mod writer;

pub use writer::{IndexedWriter, Summary};

pub const MAGIC: &[u8; 9] = b"MMIDIDX\x00\x00";
pub const VERSION: u64 = 1;

/// Token storage type; Megatron's codes are 8 (uint16) and 4 (int32).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenDtype {
    U16,
    I32,
}

impl TokenDtype {
    /// Megatron's rule: uint16 when every id fits with room to spare.
    pub fn for_vocab(vocab_size: u64) -> TokenDtype {
        if vocab_size < 65500 {
            TokenDtype::U16
        } else {
            TokenDtype::I32
        }
    }

    pub fn code(self) -> u8 {
        match self {
            TokenDtype::U16 => 8,
            TokenDtype::I32 => 4,
        }
    }

    pub fn size(self) -> usize {
        match self {
            TokenDtype::U16 => 2,
            TokenDtype::I32 => 4,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            TokenDtype::U16 => "uint16",
            TokenDtype::I32 => "int32",
        }
    }
}

pub use crate::error::{Error, Result};
