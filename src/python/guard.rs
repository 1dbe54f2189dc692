//! The one place a Rust panic is stopped before it reaches Python.
//!
//! pyo3 turns a panic in a binding into `pyo3_runtime.PanicException`, which
//! derives from `BaseException`: `except Exception:` in user code does not
//! catch it, and it reads as a crash. Every binding body runs inside [`guard`],
//! which turns any panic that got past the core's own checks into a
//! `RuntimeError` naming the function, as torch reports an internal assert.
//! Panics are bugs (the core validates what it indexes and returns errors);
//! this only makes sure a bug surfaces as an ordinary exception.

use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::exceptions::PyRuntimeError;
use pyo3::PyResult;

/// Runs `body`, turning a panic inside it (or inside work it ran without the
/// GIL) into a `RuntimeError` that names `function`.
pub fn guard<T>(function: &str, body: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(result) => result,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".into());
            Err(PyRuntimeError::new_err(format!(
                "rustrnn internal error in {function}: {what} (this is a bug in rustrnn; \
                 please report it with the call that caused it)"
            )))
        }
    }
}

/// Panics inside [`guard`]: lets the test suite check that a panic reaches
/// Python as a `RuntimeError` naming the function, not as `PanicException`.
#[pyo3::pyfunction]
pub fn _guard_selftest(message: &str) -> PyResult<()> {
    guard("_guard_selftest", || panic!("{message}"))
}
