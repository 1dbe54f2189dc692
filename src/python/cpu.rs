//! Binding for `crate::cpu`: which vector instructions the kernels use.

use std::ffi::CString;

use pyo3::exceptions::{PyRuntimeWarning, PyValueError};
use pyo3::prelude::*;

use super::guard::guard;
use pyo3::types::PyDict;

use crate::cpu::{self, Problem};

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(cpu_features, m)?)?;
    Ok(())
}

/// The instruction set rustrnn's fused float32 kernels and dropout masks run on.
///
/// The extension is compiled for baseline x86-64; only those kernels have
/// AVX2 and AVX-512 variants, chosen at run time. The environment variable
/// `RUSTRNN_CPU` (`portable`, `avx2` or `avx512`), read once per process,
/// caps the choice. `import rustrnn` calls this, so a bad value shows at import.
///
/// Returns:
///     `{"isa": ..., "detected": ..., "requested": ...}`: the level in use, the
///     best this CPU supports (`"portable"`, `"avx2"` or `"avx512"`), and
///     `RUSTRNN_CPU` as set (None when unset).
///
/// Raises:
///     ValueError: `RUSTRNN_CPU` names no level.
///
/// Warns:
///     RuntimeWarning: `RUSTRNN_CPU` names a level this CPU lacks (the best it
///     has is used).
#[pyfunction]
#[pyo3(text_signature = "()")]
pub fn cpu_features(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    guard("cpu_features", || {
        let choice = cpu::choice();
        match &choice.problem {
            Some(p @ Problem::Unknown(_)) => return Err(PyValueError::new_err(p.to_string())),
            Some(p @ Problem::Unsupported { .. }) => {
                #[allow(clippy::expect_used, reason = "our own message has no NUL byte")]
                let message = CString::new(p.to_string()).expect("no NUL in the message");
                PyErr::warn(py, &py.get_type::<PyRuntimeWarning>(), &message, 1)?;
            }
            None => {}
        }
        let features = PyDict::new(py);
        features.set_item("isa", choice.level.name())?;
        features.set_item("detected", choice.detected.name())?;
        features.set_item("requested", choice.requested.as_deref())?;
        Ok(features)
    })
}
