//! Binding for the chunked head and loss (`crate::lm::cross_entropy`): the forward and
//! backward halves of `rustrnn.functional.linear_cross_entropy`'s autograd
//! Function, run without the GIL.

use pyo3::prelude::*;
use pyo3_tch::PyTensor;

use super::guard::guard;
use crate::lm::cross_entropy::{self, Grads, LinearCrossEntropy, Needs, Reduction};

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(linear_cross_entropy, m)?)?;
    m.add_function(wrap_pyfunction!(linear_cross_entropy_backward, m)?)?;
    m.add_function(wrap_pyfunction!(linear_cross_entropy_chunk_rows, m)?)?;
    Ok(())
}

type OptGrads = (Option<PyTensor>, Option<PyTensor>, Option<PyTensor>);
type LossGrads = (
    PyTensor,
    Option<PyTensor>,
    Option<PyTensor>,
    Option<PyTensor>,
);

fn needs((input, weight, bias): (bool, bool, bool)) -> Needs {
    Needs {
        input,
        weight,
        bias,
    }
}

fn out(g: Grads) -> OptGrads {
    (
        g.input.map(PyTensor),
        g.weight.map(PyTensor),
        g.bias.map(PyTensor),
    )
}

/// `cross_entropy(linear(input, weight, bias), target)` a chunk of rows at a
/// time, never holding the `(N, V)` logits; with `needs`, the gradients of
/// the loss in the same pass.
///
/// Args:
///     input: `(N, H)` floating point.
///     weight: `(V, H)`, input's dtype and device.
///     target: `(N,)` int64 (or uint8) class ids in `[0, V)` or `ignore_index`.
///     bias: `(V,)` or None.
///     reduction: "mean", "sum" or "none".
///     ignore_index: a target that counts for nothing.
///     needs: `(input, weight, bias)`: which gradients to compute (not with "none").
///     chunk_rows: rows per chunk (> 0); None: the measured default.
///
/// Returns:
///     `(loss, d_input, d_weight, d_bias)`, each gradient None unless asked for.
///
/// Raises:
///     RuntimeError: shapes, dtypes or devices that do not fit, as torch's.
///     ValueError: target's length not N; an unknown reduction.
///     IndexError: a target out of range ("Target 7 is out of bounds.").
#[pyfunction]
#[pyo3(signature = (input, weight, target, bias=None, reduction="mean", ignore_index=-100,
                    needs=(false, false, false), *, chunk_rows=None),
       text_signature = "(input, weight, target, bias=None, reduction='mean', ignore_index=-100, \
                         needs=(False, False, False), *, chunk_rows=None)")]
#[allow(clippy::too_many_arguments)]
pub fn linear_cross_entropy(
    py: Python<'_>,
    input: PyTensor,
    weight: PyTensor,
    target: PyTensor,
    bias: Option<PyTensor>,
    reduction: &str,
    ignore_index: i64,
    needs: (bool, bool, bool),
    chunk_rows: Option<i64>,
) -> PyResult<LossGrads> {
    guard("linear_cross_entropy", || {
        let reduction = Reduction::parse(reduction)?;
        let needs = self::needs(needs);
        let (x, w, y, b) = (input.0, weight.0, target.0, bias.map(|b| b.0));
        let (loss, grads) = py.allow_threads(move || {
            let head = LinearCrossEntropy {
                ignore_index,
                chunk_rows,
                ..LinearCrossEntropy::new(&x, &w, b.as_ref(), &y)
            };
            if needs == Needs::default() {
                return Ok((head.loss(reduction)?, Grads::default()));
            }
            head.loss_and_grads(reduction, needs)
        })?;
        let (d_x, d_w, d_b) = out(grads);
        Ok((PyTensor(loss), d_x, d_w, d_b))
    })
}

/// The gradients of `sum(grad_output * losses)` for the per-row losses of
/// `linear_cross_entropy(..., reduction="none")`: the chunks computed again.
///
/// Args:
///     input, weight, target, bias, ignore_index, chunk_rows: as the forward's.
///     grad_output: `(N,)`, the gradient of the per-row losses.
///     needs: `(input, weight, bias)`: which gradients to compute.
///
/// Returns:
///     `(d_input, d_weight, d_bias)`, each None unless asked for.
#[pyfunction]
#[pyo3(signature = (input, weight, target, bias, grad_output, ignore_index, needs, *,
                    chunk_rows=None),
       text_signature = "(input, weight, target, bias, grad_output, ignore_index, needs, *, \
                         chunk_rows=None)")]
#[allow(clippy::too_many_arguments)]
pub fn linear_cross_entropy_backward(
    py: Python<'_>,
    input: PyTensor,
    weight: PyTensor,
    target: PyTensor,
    bias: Option<PyTensor>,
    grad_output: PyTensor,
    ignore_index: i64,
    needs: (bool, bool, bool),
    chunk_rows: Option<i64>,
) -> PyResult<OptGrads> {
    guard("linear_cross_entropy_backward", || {
        let needs = self::needs(needs);
        let (x, w, y, b, g) = (
            input.0,
            weight.0,
            target.0,
            bias.map(|b| b.0),
            grad_output.0,
        );
        let grads = py.allow_threads(move || {
            let head = LinearCrossEntropy {
                ignore_index,
                chunk_rows,
                ..LinearCrossEntropy::new(&x, &w, b.as_ref(), &y)
            };
            head.backward(&g, needs)
        })?;
        Ok(out(grads))
    })
}

/// The rows of one chunk the head computes at a time, for `rows` rows of
/// `classes` classes (what the tests need to reach a chunk's edges).
#[pyfunction]
#[pyo3(text_signature = "(rows, classes)")]
pub fn linear_cross_entropy_chunk_rows(rows: i64, classes: i64) -> i64 {
    cross_entropy::chunk_rows(rows, classes)
}
