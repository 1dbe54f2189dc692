//! A run's [`History`] crosses pyo3 here only: as a dict whose keys are the
//! struct's fields, which the Python dataclass `rustrnn.History` is built
//! from (`History(**d)`). The destructuring below names every field, so a
//! field added to the struct fails to compile until it crosses too;
//! `HISTORY_FIELDS` (the keys) and `STOP_REASONS` let the Python tests hold
//! the dataclass and its documented stop reasons to the struct and the enum.

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use crate::train::{History, StopReason};

/// `h` as the keyword arguments of `rustrnn.History`.
pub fn history_dict<'py>(py: Python<'py>, h: &History) -> PyResult<Bound<'py, PyDict>> {
    let History {
        steps,
        epochs,
        losses,
        lrs,
        grad_norms,
        tokens_per_sec,
        eval_steps,
        valid_ppls,
        best_valid_ppl,
        averaged_from,
        stop_reason,
    } = h;
    let stop_reason = stop_reason.map(StopReason::name);
    let d = PyDict::new(py);
    macro_rules! set {
        ($($field:ident),*) => { $( d.set_item(stringify!($field), $field)?; )* };
    }
    set!(
        steps,
        epochs,
        losses,
        lrs,
        grad_norms,
        tokens_per_sec,
        eval_steps,
        valid_ppls,
        best_valid_ppl,
        averaged_from,
        stop_reason
    );
    Ok(d)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let fields = history_dict(py, &History::default())?.keys();
    m.add("HISTORY_FIELDS", PyTuple::new(py, fields)?)?;
    let reasons = StopReason::ALL.map(StopReason::name);
    m.add("STOP_REASONS", PyTuple::new(py, reasons)?)?;
    Ok(())
}
