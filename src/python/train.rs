//! Bindings for `crate::train`: argument conversion (the model as
//! [`PyLanguageModel`], the options as [`PyTrainOptions`], the history back
//! through [`history_dict`]), the GIL released around the loop and re-taken
//! briefly for the Python hooks, errors mapped.

use std::path::PathBuf;
use std::sync::Mutex;

use pyo3::prelude::*;

use super::guard::guard;
use pyo3::types::PyDict;
use pyo3_tch::PyTensor;
use tch::Tensor;

use super::history::history_dict;
use super::model::PyLanguageModel;
use super::train_options::PyTrainOptions;
use crate::error::{Error, Result};
use crate::train::{self, EvalInfo, Hooks, Method, OptimConfig, Optimizer, RunError, StepInfo};

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyOptimizer>()?;
    m.add_function(wrap_pyfunction!(clip_grad_norm, m)?)?;
    m.add_function(wrap_pyfunction!(train_lm, m)?)?;
    m.add_function(wrap_pyfunction!(evaluate_lm, m)?)?;
    m.add_function(wrap_pyfunction!(claim_checkpoint_dir, m)?)?;
    Ok(())
}

/// Makes `path` ready for a run's checkpoints, as `rustrnn.train` does before
/// its first step: creates it, checks that it is a writable directory, and
/// refuses one that already holds files unless `allow_existing`.
///
/// Args:
///     path: the checkpoint directory.
///     allow_existing: the run resumes from it or replaces what is there.
///
/// Raises:
///     FileExistsError: it holds files and `allow_existing` is false.
///     NotADirectoryError: it is a file.
///     PermissionError, OSError: it cannot be created or written to.
#[pyfunction]
#[pyo3(signature = (path, allow_existing), text_signature = "(path, allow_existing)")]
fn claim_checkpoint_dir(py: Python<'_>, path: PathBuf, allow_existing: bool) -> PyResult<()> {
    guard("claim_checkpoint_dir", || {
        py.allow_threads(|| train::claim_checkpoint_dir(&path, allow_existing))?;
        Ok(())
    })
}

fn unwrap_all(v: Vec<PyTensor>) -> Vec<Tensor> {
    v.into_iter().map(|t| t.0).collect()
}

/// The Python object `rustrnn.train` passes: it draws the progress bar, runs
/// the user's callback, reads and restores torch's RNG and all-reduces
/// gradients. Its first exception is kept and re-raised once the loop has
/// stopped (the core only sees `Error::Interrupted`).
struct PyHooks {
    obj: Py<PyAny>,
    distributed: bool,
    error: Option<PyErr>,
}

impl PyHooks {
    /// Calls `f` with the GIL; `check` first runs `py.check_signals()` so
    /// Ctrl-C stops the loop within one step.
    fn call<R>(
        &mut self,
        check: bool,
        f: impl FnOnce(Python<'_>, &Bound<'_, PyAny>) -> PyResult<R>,
    ) -> Result<R> {
        Python::with_gil(|py| {
            let r = if check { py.check_signals() } else { Ok(()) };
            match r.and_then(|()| f(py, self.obj.bind(py))) {
                Ok(v) => Ok(v),
                Err(e) => {
                    if self.error.is_none() {
                        self.error = Some(e);
                    }
                    Err(Error::Interrupted)
                }
            }
        })
    }
}

impl Hooks for PyHooks {
    fn on_start(&mut self, total_steps: i64, done: i64) -> Result<()> {
        self.call(true, |_, o| {
            o.call_method1("on_start", (total_steps, done))?;
            Ok(())
        })
    }

    fn on_step(&mut self, i: &StepInfo) -> Result<()> {
        self.call(true, |py, o| {
            let d = PyDict::new(py);
            d.set_item("step", i.step)?;
            d.set_item("epoch", i.epoch)?;
            d.set_item("loss", i.loss)?;
            d.set_item("lr", i.lr)?;
            d.set_item("grad_norm", i.grad_norm)?;
            d.set_item("tokens", i.tokens)?;
            d.set_item("tokens_per_sec", i.tokens_per_sec)?;
            d.set_item("total_steps", i.total_steps)?;
            o.call_method1("on_step", (d,))?;
            Ok(())
        })
    }

    fn on_eval(&mut self, i: &EvalInfo) -> Result<()> {
        self.call(true, |py, o| {
            let d = PyDict::new(py);
            d.set_item("step", i.step)?;
            d.set_item("epoch", i.epoch)?;
            d.set_item("valid_ppl", i.valid_ppl)?;
            d.set_item("best_valid_ppl", i.best_valid_ppl)?;
            d.set_item("lr", i.lr)?;
            d.set_item("improved", i.improved)?;
            o.call_method1("on_eval", (d,))?;
            Ok(())
        })
    }

    fn poll(&mut self) -> Result<()> {
        self.call(true, |_, _| Ok(()))
    }

    fn rng_state(&mut self) -> Result<Vec<(String, Tensor)>> {
        self.call(false, |_, o| {
            let v: Vec<(String, PyTensor)> = o.call_method0("rng_state")?.extract()?;
            Ok(v.into_iter().map(|(n, t)| (n, t.0)).collect())
        })
    }

    fn set_rng_state(&mut self, state: Vec<(String, Tensor)>) -> Result<()> {
        self.call(false, |_, o| {
            let v: Vec<(String, PyTensor)> =
                state.into_iter().map(|(n, t)| (n, PyTensor(t))).collect();
            o.call_method1("set_rng_state", (v,))?;
            Ok(())
        })
    }

    fn reduces(&self) -> bool {
        self.distributed
    }

    fn all_reduce(&mut self, grads: &[Tensor]) -> Result<()> {
        if !self.distributed {
            return Ok(());
        }
        self.call(false, |_, o| {
            let v: Vec<PyTensor> = grads.iter().map(|g| PyTensor(g.shallow_clone())).collect();
            o.call_method1("all_reduce", (v,))?;
            Ok(())
        })
    }
}

/// Runs the training loop (see `rustrnn.train`, which prepares the arguments).
///
/// Args:
///     model: the `rustrnn.LanguageModel` (its Parameters are updated in place).
///     train, valid: 1-D int64 ids (valid may be None).
///     options: `rustrnn.train`'s options as a dict of its keyword names
///         (`batch_size`, ..., `optimizer`, `lr`, ..., `checkpoint_dir`), with
///         `rank`, `world_size`, and `resume` and `overwrite` as bools.
///     resume: a training checkpoint to continue from, or None.
///     hooks: the object with `on_start`, `on_step`, `on_eval`, `rng_state`,
///         `set_rng_state` and `all_reduce` methods.
///     distributed: whether to call `hooks.all_reduce` every step.
///
/// Returns:
///     dict: the history, `rustrnn.History`'s fields (its `stop_reason` says
///     how the run ended).
///
/// Raises:
///     whatever a hook raised (KeyboardInterrupt for Ctrl-C) once the loop has
///     stopped and written its last checkpoint; FloatingPointError for a
///     non-finite loss; TypeError for an option of the wrong type; ValueError,
///     OSError for bad values or files. Once the run has started the exception
///     carries the history so far (the same dict) in its `history` attribute.
#[pyfunction]
#[pyo3(signature = (model, train, valid, options, resume, hooks, distributed))]
#[allow(clippy::too_many_arguments)]
fn train_lm<'py>(
    py: Python<'py>,
    model: PyLanguageModel,
    train: PyTensor,
    valid: Option<PyTensor>,
    options: &Bound<'py, PyAny>,
    resume: Option<PathBuf>,
    hooks: Py<PyAny>,
    distributed: bool,
) -> PyResult<Bound<'py, PyDict>> {
    guard("train_lm", || {
        // Converted here, not as the argument, so that pyo3 does not prefix a
        // TypeError ("lr must be a number, got str") with "argument 'options': ".
        let PyTrainOptions(options) = options.extract()?;
        let vocab = model.vocab().clone();
        let params = model.into_params();
        let mut hooks = PyHooks {
            obj: hooks,
            distributed,
            error: None,
        };
        let (train, valid) = (train.0, valid.map(|v| v.0));
        let hooks_ref = &mut hooks;
        let run = py.allow_threads(move || {
            train::run(
                params,
                vocab,
                &train,
                valid.as_ref(),
                options,
                resume.as_deref(),
                hooks_ref,
            )
        });
        match run {
            Ok(history) => history_dict(py, &history),
            Err(RunError { error, history }) => {
                let err = match (error, hooks.error.take()) {
                    (Error::Interrupted, Some(py_err)) => py_err,
                    (e, _) => PyErr::from(e),
                };
                if let Some(d) = history.and_then(|h| history_dict(py, &h).ok()) {
                    let _ = err.value(py).setattr("history", d);
                }
                Err(err)
            }
        }
    })
}

/// Perplexity of a language model on 1-D ids, in eval mode.
///
/// Args:
///     model: the `rustrnn.LanguageModel`.
///     ids: 1-D int64 ids.
///     batch_size: streams read in parallel (fewer if the data is short).
///     bptt: window length; the state is carried across windows.
///
/// Returns:
///     float: `exp(mean cross-entropy)` over every next-token prediction.
#[pyfunction]
#[pyo3(signature = (model, ids, batch_size, bptt))]
fn evaluate_lm(
    py: Python<'_>,
    model: PyLanguageModel,
    ids: PyTensor,
    batch_size: i64,
    bptt: i64,
) -> PyResult<f64> {
    guard("evaluate_lm", || {
        let ids = ids.0;
        let ppl = py.allow_threads(move || {
            train::evaluate(model.params(), &ids, batch_size, bptt, &mut || {
                Python::with_gil(|py| py.check_signals()).map_err(|_| Error::Interrupted)
            })
        })?;
        Ok(ppl)
    })
}

/// An optimizer with torch.optim's update rule, updating tensors in place.
///
/// Args:
///     method: 'sgd', 'adam' or 'adamw'.
///     params: the tensors to update (in place, without autograd).
///     lr: learning rate.
///     weight_decay: L2 penalty (decoupled for 'adamw').
///     momentum: SGD momentum (dampening 0, no Nesterov).
///     betas, eps: Adam's coefficients.
#[pyclass(name = "Optimizer", module = "rustrnn._rustrnn")]
pub struct PyOptimizer {
    inner: Mutex<(Optimizer, Vec<Tensor>)>,
}

#[pymethods]
impl PyOptimizer {
    #[new]
    #[pyo3(signature = (method, params, lr, weight_decay=0.0, momentum=0.0, betas=(0.9, 0.999), eps=1e-8))]
    fn new(
        method: &str,
        params: Vec<PyTensor>,
        lr: f64,
        weight_decay: f64,
        momentum: f64,
        betas: (f64, f64),
        eps: f64,
    ) -> PyResult<Self> {
        guard("Optimizer.new", || {
            let cfg = OptimConfig {
                method: Method::parse(method)?,
                lr,
                weight_decay,
                momentum,
                betas,
                eps,
            };
            let params = unwrap_all(params);
            Ok(PyOptimizer {
                inner: Mutex::new((Optimizer::new(cfg, params.len())?, params)),
            })
        })
    }

    /// One update from `grads` (one per parameter, same shapes).
    fn step(&self, grads: Vec<PyTensor>) -> PyResult<()> {
        guard("Optimizer.step", || {
            let mut inner = self.lock()?;
            let (opt, params) = &mut *inner;
            Ok(opt.step(params, &unwrap_all(grads))?)
        })
    }

    /// The learning rate; assigning it takes effect at the next step.
    #[getter]
    fn get_lr(&self) -> PyResult<f64> {
        guard("Optimizer.get_lr", || Ok(self.lock()?.0.lr()))
    }

    #[setter]
    fn set_lr(&self, lr: f64) -> PyResult<()> {
        guard("Optimizer.set_lr", || Ok(self.lock()?.0.set_lr(lr)?))
    }
}

impl PyOptimizer {
    /// The optimizer. Its methods check their arguments before changing
    /// anything, so a lock poisoned by an unforeseen panic still guards a
    /// consistent optimizer: take it back rather than refuse every later call.
    fn lock(&self) -> PyResult<std::sync::MutexGuard<'_, (Optimizer, Vec<Tensor>)>> {
        Ok(self.inner.lock().unwrap_or_else(|poisoned| {
            self.inner.clear_poison();
            poisoned.into_inner()
        }))
    }
}

/// Scales `grads` in place to a global L2 norm of at most `max_norm`, as
/// `torch.nn.utils.clip_grad_norm_`; returns the norm before clipping.
#[pyfunction]
#[pyo3(signature = (grads, max_norm))]
fn clip_grad_norm(grads: Vec<PyTensor>, max_norm: f64) -> PyResult<f64> {
    guard("clip_grad_norm", || {
        Ok(train::clip_grad_norm(&unwrap_all(grads), max_norm)?)
    })
}
