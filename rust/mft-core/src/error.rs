//! The error type shared by the file-format modules (indexed datasets,
//! safetensors, resharding). Messages already name the file (and tensor).
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A file could not be opened, read, written or renamed.
    Io(String),
    /// The bytes or the arguments are not valid for the format.
    Invalid(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(m) | Error::Invalid(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;
