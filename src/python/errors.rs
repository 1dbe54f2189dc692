//! The single place where core errors become Python exceptions: each variant
//! maps to the built-in class torch raises for the same mistake, so user code
//! written against torch.nn (`except RuntimeError`, `except ValueError`) works.
//! Also how the glue's own messages name a Python value's type.

use pyo3::exceptions::{
    PyFileExistsError, PyFileNotFoundError, PyFloatingPointError, PyIndexError,
    PyIsADirectoryError, PyKeyError, PyKeyboardInterrupt, PyNotADirectoryError, PyOSError,
    PyPermissionError, PyRuntimeError, PyTypeError, PyValueError,
};
use pyo3::prelude::*;
use pyo3::PyErr;

use crate::error::Error;

impl From<Error> for PyErr {
    fn from(err: Error) -> PyErr {
        let msg = err.to_string();
        match err {
            Error::Value(_) | Error::Format { .. } => PyValueError::new_err(msg),
            Error::Shape(_) | Error::Torch(_) => PyRuntimeError::new_err(msg),
            Error::Type(_) => PyTypeError::new_err(msg),
            Error::Index(_) => PyIndexError::new_err(msg),
            Error::Key(k) => PyKeyError::new_err(k),
            Error::Io { source, .. } => match source.kind() {
                std::io::ErrorKind::NotFound => PyFileNotFoundError::new_err(msg),
                std::io::ErrorKind::PermissionDenied => PyPermissionError::new_err(msg),
                std::io::ErrorKind::AlreadyExists => PyFileExistsError::new_err(msg),
                std::io::ErrorKind::IsADirectory => PyIsADirectoryError::new_err(msg),
                std::io::ErrorKind::NotADirectory => PyNotADirectoryError::new_err(msg),
                _ => PyOSError::new_err(msg),
            },
            Error::NonFinite(_) => PyFloatingPointError::new_err(msg),
            Error::Interrupted => PyKeyboardInterrupt::new_err(msg),
        }
    }
}

/// `type(ob).__name__`, as Python's own TypeErrors name what they got.
pub fn type_name(ob: &Bound<'_, PyAny>) -> String {
    ob.get_type()
        .name()
        .map_or_else(|_| "?".into(), |n| n.to_string())
}
