//! Errors of the BPE tokenizer; every message names the file or argument.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A file could not be read, written or renamed.
    Io(String),
    /// A tokenizer.json is malformed or inconsistent.
    Format(String),
    /// A tokenizer.json uses a component or option mft does not implement.
    Unsupported(String),
    /// A bad argument (unknown id, bad training option, ...).
    Invalid(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(m) | Error::Format(m) | Error::Unsupported(m) | Error::Invalid(m) => {
                f.write_str(m)
            }
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;
