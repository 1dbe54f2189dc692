//! Binding for scoring many lines at once (`crate::lm::score`).

use pyo3::prelude::*;

use super::guard::guard;

use super::gil::interrupt_poller;
use super::model::PyLanguageModel;
use crate::lm::score::{self, Line};

/// The natural-log probability of every target id of every line, the lines
/// batched together (sorted by length, packed), in Rust without the GIL.
///
/// Args:
///     model: the `LanguageModel` (its config, Vocab and tensors by name).
///     contexts: per line, the ids it is read from.
///     targets: per line, the ids it predicts (as many as its context).
///
/// Returns:
///     One list of log-probabilities per line, in the lines' order.
#[pyfunction]
#[pyo3(signature = (model, contexts, targets))]
pub fn score_lines(
    py: Python<'_>,
    model: PyLanguageModel,
    contexts: Vec<Vec<i64>>,
    targets: Vec<Vec<i64>>,
) -> PyResult<Vec<Vec<f64>>> {
    guard("score_lines", || {
        if contexts.len() != targets.len() {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "{} contexts for {} target lists",
                contexts.len(),
                targets.len()
            )));
        }
        let lines: Vec<Line> = contexts
            .into_iter()
            .zip(targets)
            .map(|(context, targets)| Line { context, targets })
            .collect();
        let scores = py.allow_threads(move || {
            let _no_grad = tch::no_grad_guard();
            let params = model.params();
            score::score(&params.rnn, &params.weights(), &lines, interrupt_poller(1))
        })?;
        Ok(scores)
    })
}
