//! Binding for `crate::dropout`.

use pyo3::prelude::*;

use super::guard::guard;
use pyo3_tch::PyTensor;

use crate::dropout;

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(dropout_mask, m)?)?;
    Ok(())
}

/// A dropout mask shaped like `input` (its dtype and device): `1 / (1 - p)`
/// with probability `1 - p`, else 0. Draws one seed from torch's default
/// generator.
#[pyfunction]
pub fn dropout_mask(py: Python<'_>, input: PyTensor, p: f64) -> PyResult<PyTensor> {
    guard("dropout_mask", || {
        let input = input.0;
        Ok(PyTensor(
            py.allow_threads(move || dropout::mask(&input, p))?,
        ))
    })
}
