//! Binding for scoring many lines at once (`crate::lm::score`).

use pyo3::prelude::*;

use super::guard::guard;
use pyo3_tch::PyTensor;

use super::gil::interrupt_poller;
use super::model::OwnedWeights;
use super::rnn::PyRnnSpec;
use crate::lm::score::{self, Line};

/// The natural-log probability of every target id of every line, the lines
/// batched together (sorted by length, packed), in Rust without the GIL.
///
/// Args:
///     spec: the stack's RnnSpec.
///     embedding: `(V, E)` embedding matrix.
///     stack_weights: the stack's parameters in torch's flat order.
///     head_weight, head_bias: the `(V, H)` output layer (bias may be None).
///     contexts: per line, the ids it is read from.
///     targets: per line, the ids it predicts (as many as its context).
///
/// Returns:
///     One list of log-probabilities per line, in the lines' order.
#[pyfunction]
#[pyo3(signature = (spec, embedding, stack_weights, head_weight, head_bias, contexts, targets))]
#[allow(clippy::too_many_arguments)]
pub fn score_lines(
    py: Python<'_>,
    spec: &PyRnnSpec,
    embedding: PyTensor,
    stack_weights: Vec<PyTensor>,
    head_weight: PyTensor,
    head_bias: Option<PyTensor>,
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
        let cfg = spec.config().clone();
        let weights = OwnedWeights::new(embedding, stack_weights, head_weight, head_bias);
        let lines: Vec<Line> = contexts
            .into_iter()
            .zip(targets)
            .map(|(context, targets)| Line { context, targets })
            .collect();
        let scores = py.allow_threads(move || {
            score::score(&cfg, &weights.view(), &lines, interrupt_poller(1))
        })?;
        Ok(scores)
    })
}
