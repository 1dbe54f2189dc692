//! Bindings for the recurrent stack and the cells: argument conversion and
//! GIL release only; the work is in `crate::rnn`.

use std::sync::Mutex;

use pyo3::prelude::*;

use super::guard::guard;
use pyo3::types::PyType;
use pyo3_tch::PyTensor;
use tch::Tensor;

use crate::rnn::{cell, stack, CellConfig, Mode, Preference, RnnConfig, Tape};

/// `(d_input or None, d_hx, d_cx or None, [d_weight, ...])`, as `Tape.backward` returns them.
type StackGrads = (Option<PyTensor>, PyTensor, Option<PyTensor>, Vec<PyTensor>);

/// `RnnSpec`'s constructor arguments, in its signature's order.
type SpecArgs = (&'static str, i64, i64, i64, bool, bool, f64, bool, i64);

fn unwrap_all(v: Vec<PyTensor>) -> Vec<Tensor> {
    v.into_iter().map(|t| t.0).collect()
}

fn wrap_all(v: Vec<Tensor>) -> Vec<PyTensor> {
    v.into_iter().map(PyTensor).collect()
}

/// The configuration of a recurrent stack, validated as torch.nn.RNNBase does.
///
/// Args:
///     mode: 'LSTM', 'GRU', 'RNN_TANH' or 'RNN_RELU', as torch.nn.RNNBase spells it.
///     input_size, hidden_size, num_layers, bias, batch_first, dropout,
///     bidirectional, proj_size: as for torch.nn.LSTM.
#[pyclass(name = "RnnSpec", module = "rustrnn._rustrnn", frozen, eq)]
#[derive(PartialEq)]
pub struct PyRnnSpec {
    cfg: RnnConfig,
}

impl PyRnnSpec {
    /// The spec of a stack the core configured (a language model's).
    pub(crate) fn from_config(cfg: RnnConfig) -> PyRnnSpec {
        PyRnnSpec { cfg }
    }
}

#[pymethods]
impl PyRnnSpec {
    #[new]
    #[pyo3(signature = (mode, input_size, hidden_size, num_layers=1, bias=true, batch_first=false,
                        dropout=0.0, bidirectional=false, proj_size=0))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        mode: &str,
        input_size: i64,
        hidden_size: i64,
        num_layers: i64,
        bias: bool,
        batch_first: bool,
        dropout: f64,
        bidirectional: bool,
        proj_size: i64,
    ) -> PyResult<Self> {
        guard("RnnSpec.new", || {
            let cfg = RnnConfig {
                mode: Mode::parse(mode)?,
                input_size,
                hidden_size,
                num_layers,
                bias,
                batch_first,
                dropout,
                bidirectional,
                proj_size,
            };
            cfg.validate()?;
            Ok(PyRnnSpec { cfg })
        })
    }

    /// `(RnnSpec, constructor arguments)`: pickling, `copy` and `torch.save`
    /// rebuild the spec through `RnnSpec(...)`, validated again.
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> (Bound<'py, PyType>, SpecArgs) {
        (slf.get_type(), slf.get().arguments())
    }

    /// The constructor's arguments, in its order: what a copy is built from.
    #[getter]
    fn arguments(&self) -> SpecArgs {
        let c = &self.cfg;
        (
            c.mode.name(),
            c.input_size,
            c.hidden_size,
            c.num_layers,
            c.bias,
            c.batch_first,
            c.dropout,
            c.bidirectional,
            c.proj_size,
        )
    }

    /// `(name, shape)` of every parameter, in torch's `_flat_weights_names` order.
    fn param_specs(&self) -> Vec<(String, Vec<i64>)> {
        self.cfg
            .param_specs()
            .into_iter()
            .map(|p| (p.name, p.shape))
            .collect()
    }

    /// Refuses (RuntimeError) parameters that would not fit in this machine's
    /// memory at `element_size` bytes each, before any is created: for
    /// parameters in host memory (the CPU), where running out kills the
    /// process instead of raising.
    ///
    /// Args:
    ///     element_size: bytes per element of the parameters' dtype.
    #[pyo3(text_signature = "(self, element_size)")]
    fn check_host_allocation(&self, element_size: usize) -> PyResult<()> {
        guard("RnnSpec.check_host_allocation", || {
            Ok(self.cfg.check_host_allocation(element_size)?)
        })
    }

    fn extra_repr(&self) -> String {
        self.cfg.extra_repr()
    }

    #[getter]
    fn mode(&self) -> &'static str {
        self.cfg.mode.name()
    }

    /// Runs the stack.
    ///
    /// Args:
    ///     input: `(L, N, H_in)`, `(N, L, H_in)` with batch_first, or unbatched `(L, H_in)`.
    ///     hx: `(D*num_layers, N, H_out)` or None for zeros.
    ///     cx: LSTM cell state `(D*num_layers, N, H_cell)` or None.
    ///     weights: the parameters in torch's flat order.
    ///     train: whether dropout between layers is active.
    ///     keep_tape: return a Tape for `Tape.backward`.
    ///     batch_sizes: a PackedSequence's batch sizes (a list of ints); `input`
    ///         is then its data `(N, H_in)` and hx, cx are in its sorted order.
    ///
    /// Returns:
    ///     `(output, h_n, c_n or None, tape or None)`.
    #[pyo3(signature = (input, hx, cx, weights, train, keep_tape, batch_sizes=None))]
    #[allow(clippy::too_many_arguments)]
    fn forward(
        &self,
        py: Python<'_>,
        input: PyTensor,
        hx: Option<PyTensor>,
        cx: Option<PyTensor>,
        weights: Vec<PyTensor>,
        train: bool,
        keep_tape: bool,
        batch_sizes: Option<Vec<i64>>,
    ) -> PyResult<(PyTensor, PyTensor, Option<PyTensor>, Option<PyTape>)> {
        guard("RnnSpec.forward", || {
            let cfg = self.cfg.clone();
            let weights = unwrap_all(weights);
            let (input, hx, cx) = (input.0, hx.map(|t| t.0), cx.map(|t| t.0));
            let out = py.allow_threads(move || {
                stack::forward(
                    &cfg,
                    &input,
                    batch_sizes.as_deref(),
                    hx.as_ref(),
                    cx.as_ref(),
                    &weights,
                    train,
                    keep_tape,
                )
            })?;
            Ok((
                PyTensor(out.output),
                PyTensor(out.h_n),
                out.c_n.map(PyTensor),
                out.tape.map(|t| PyTape {
                    tape: Mutex::new(t),
                }),
            ))
        })
    }
}

/// Activations a forward call kept for its backward pass.
#[pyclass(name = "Tape", module = "rustrnn._rustrnn", frozen)]
pub struct PyTape {
    tape: Mutex<Tape>,
}

#[pymethods]
impl PyTape {
    /// Back-propagates through the recorded forward call.
    ///
    /// Args:
    ///     d_output, d_hn, d_cn: gradients of the forward's outputs (d_cn for LSTM only).
    ///     need_input_grad: whether to compute the input's gradient.
    ///
    /// Returns:
    ///     `(d_input or None, d_hx, d_cx or None, [d_weight, ...])`.
    #[pyo3(signature = (d_output, d_hn, d_cn, need_input_grad))]
    fn backward(
        &self,
        py: Python<'_>,
        d_output: PyTensor,
        d_hn: PyTensor,
        d_cn: Option<PyTensor>,
        need_input_grad: bool,
    ) -> PyResult<StackGrads> {
        guard("Tape.backward", || {
            // A shallow copy lets the work run without the GIL and keeps the tape
            // usable for a second backward (retain_graph=True).
            let tape = self
                .tape
                .lock()
                .map_err(|_| pyo3::exceptions::PyRuntimeError::new_err("tape lock poisoned"))?
                .shallow_clone();
            let (d_output, d_hn, d_cn) = (d_output.0, d_hn.0, d_cn.map(|t| t.0));
            let g = py.allow_threads(move || {
                stack::backward(&tape, &d_output, &d_hn, d_cn.as_ref(), need_input_grad)
            })?;
            Ok((
                g.input.map(PyTensor),
                PyTensor(g.hx),
                g.cx.map(PyTensor),
                wrap_all(g.weights),
            ))
        })
    }
}

/// One step of a cell, differentiated by torch's autograd.
///
/// Args:
///     mode: 'LSTM', 'GRU', 'RNN_TANH' or 'RNN_RELU' (torch.nn.RNNBase's names).
///     input: `(N, H_in)` or `(H_in)`.
///     hx, cx: the states or None for zeros (cx for LSTM only).
///     weights: `[weight_ih, weight_hh]` plus `[bias_ih, bias_hh]` when biased.
///
/// Returns:
///     `(h', c' or None)`.
#[pyfunction]
#[pyo3(signature = (mode, input, hx, cx, weights))]
pub fn cell_forward(
    mode: &str,
    input: PyTensor,
    hx: Option<PyTensor>,
    cx: Option<PyTensor>,
    weights: Vec<PyTensor>,
) -> PyResult<(PyTensor, Option<PyTensor>)> {
    guard("cell_forward", || {
        let mode = Mode::parse(mode)?;
        let weights = unwrap_all(weights);
        let (h, c) = cell::cell_forward(mode, &input, hx.as_deref(), cx.as_deref(), &weights)?;
        Ok((PyTensor(h), c.map(PyTensor)))
    })
}

/// `(name, shape)` of a cell's parameters, in torch.nn.RNNCellBase's order,
/// with what torch.empty refuses of them refused (see `CellConfig::new`).
///
/// Args:
///     mode: 'LSTM', 'GRU', 'RNN_TANH' or 'RNN_RELU' (torch.nn.RNNBase's names).
///     input_size, hidden_size: as for torch.nn.LSTMCell; 0 is allowed.
///     bias: whether there are `bias_ih` and `bias_hh`.
///
/// Raises:
///     ValueError: an unknown mode.
///     RuntimeError: a negative size, or a parameter of more than 2**63 elements.
///     TypeError: `gates * hidden_size` past a 64-bit size.
#[pyfunction]
#[pyo3(signature = (mode, input_size, hidden_size, bias))]
pub fn cell_param_specs(
    mode: &str,
    input_size: i64,
    hidden_size: i64,
    bias: bool,
) -> PyResult<Vec<(String, Vec<i64>)>> {
    guard("cell_param_specs", || {
        let cfg = CellConfig::new(Mode::parse(mode)?, input_size, hidden_size, bias)?;
        Ok(cfg
            .param_specs()
            .into_iter()
            .map(|p| (p.name, p.shape))
            .collect())
    })
}

/// The engine preference of this process's stacks: 'auto' (libtorch's ops,
/// cuDNN, on CUDA; the fastest of rustrnn's engines for each layer on the CPU)
/// or 'libtorch' (libtorch's ops on every device).
#[pyfunction]
pub fn get_rnn_engine() -> &'static str {
    Preference::get().name()
}

/// Sets the engine preference (see `get_rnn_engine`) and returns the one it replaces.
///
/// Raises:
///     ValueError: `name` is neither 'auto' nor 'libtorch'.
#[pyfunction]
#[pyo3(signature = (name))]
pub fn set_rnn_engine(name: &str) -> PyResult<&'static str> {
    guard("set_rnn_engine", || {
        Ok(Preference::parse(name)?.set().name())
    })
}
