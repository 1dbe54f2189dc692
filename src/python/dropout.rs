//! Binding for `crate::dropout`.

use pyo3::intern;
use pyo3::prelude::*;

use super::guard::guard;
use pyo3_tch::PyTensor;

use crate::dropout;

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(dropout_mask, m)?)?;
    m.add_function(wrap_pyfunction!(check_dropout, m)?)?;
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

/// Raises torch's ValueError unless `p` is a dropout probability (in [0, 1]),
/// naming `p` as torch's f-string does (`format(p)`: `2` for an int, `1.5`
/// for a 0-d tensor): the one check of `rustrnn.nn.Dropout` and
/// `rustrnn.functional.dropout`, also where no mask is drawn.
///
/// Args:
///     p: a real number (a TypeError otherwise).
#[pyfunction]
#[pyo3(text_signature = "(p)")]
pub fn check_dropout(p: &Bound<'_, PyAny>) -> PyResult<()> {
    guard("check_dropout", || {
        let value: f64 = p.extract()?;
        let shown: String = p
            .call_method1(intern!(p.py(), "__format__"), ("",))?
            .extract()?;
        Ok(dropout::check_probability_as(value, &shown)?)
    })
}
