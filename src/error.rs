//! The one error type of the Rust core.
//!
//! Each variant stands for the Python exception class that torch raises for the
//! same mistake; the mapping itself lives in `python/errors.rs`, in one place.

// Values from Python reach this module: no index or slice may panic.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use std::path::PathBuf;

use crate::dtype::dtype_code_name;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A bad argument value (torch raises `ValueError`): constructor arguments,
    /// wrong input rank, a dtype differing from the parameters.
    #[error("{0}")]
    Value(String),
    /// A shape, size or device mismatch found while computing (torch raises `RuntimeError`).
    #[error("{0}")]
    Shape(String),
    /// An argument of the wrong type (`TypeError`).
    #[error("{0}")]
    Type(String),
    /// An index outside its range (`IndexError`).
    #[error("{0}")]
    Index(String),
    /// A missing key, such as a token outside the vocabulary (`KeyError`).
    #[error("{0}")]
    Key(String),
    /// A file that exists but is not what it should be (`ValueError`, naming the file).
    #[error("{}: {message}", path.display())]
    Format { path: PathBuf, message: String },
    /// A file that could not be read or written (`OSError`, naming the file).
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Training produced a loss that is not a finite number (`FloatingPointError`).
    #[error("{0}")]
    NonFinite(String),
    /// The user asked the work to stop (Ctrl-C; `KeyboardInterrupt`).
    #[error("interrupted")]
    Interrupted,
    /// An error reported by libtorch (`RuntimeError`); a dtype tch does not
    /// know is named as torch names it.
    #[error("{}", torch_message(.0))]
    Torch(#[from] tch::TchError),
}

fn torch_message(err: &tch::TchError) -> String {
    match err {
        tch::TchError::UnknownKind(code) => format!(
            "unsupported dtype {}: rustrnn's libtorch binding has no such type",
            dtype_code_name(*code)
        ),
        other => other.to_string(),
    }
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn value(msg: impl Into<String>) -> Self {
        Error::Value(msg.into())
    }
    pub fn shape(msg: impl Into<String>) -> Self {
        Error::Shape(msg.into())
    }
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
    pub fn format(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Format {
            path: path.into(),
            message: message.into(),
        }
    }
}
