//! `rustrnn.train`'s options cross pyo3 as the dict it builds from its
//! keywords (the same names), converted option by option into the core's
//! [`TrainOptions`]: a wrong type is a TypeError naming the option, a number
//! past what the core can hold a ValueError naming it. The value rules are
//! the core's (`TrainOptions::validate`, when the run starts).

use std::path::PathBuf;

use pyo3::exceptions::{PyOverflowError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict};

use super::errors::type_name;
use crate::train::{Method, OptimConfig, Regularization, TrainOptions};

const NAMES: [&str; 27] = [
    "batch_size",
    "bptt",
    "epochs",
    "max_steps",
    "time_budget",
    "optimizer",
    "lr",
    "weight_decay",
    "momentum",
    "clip",
    "lr_decay",
    "patience",
    "eval_every",
    "checkpoint_dir",
    "rank",
    "world_size",
    "resume",
    "overwrite",
    "weight_drop",
    "dropout_input",
    "dropout_hidden",
    "dropout_output",
    "dropout_embedding",
    "alpha",
    "beta",
    "variable_bptt",
    "nonmono",
];

/// The options, typed.
pub struct PyTrainOptions(pub TrainOptions);

impl<'py> FromPyObject<'py> for PyTrainOptions {
    fn extract_bound(ob: &Bound<'py, PyAny>) -> PyResult<Self> {
        let o = Options::new(ob)?;
        let method = Method::parse(&o.string("optimizer")?)?;
        let optimizer = OptimConfig {
            weight_decay: o.float("weight_decay")?,
            momentum: o.float("momentum")?,
            ..OptimConfig::new(method, o.float("lr")?)
        };
        Ok(PyTrainOptions(TrainOptions {
            batch_size: o.int("batch_size")?,
            bptt: o.int("bptt")?,
            epochs: o.int("epochs")?,
            max_steps: o.maybe(Options::int, "max_steps")?,
            time_budget: o.maybe(Options::float, "time_budget")?,
            optimizer,
            clip: o.maybe(Options::float, "clip")?,
            lr_decay: o.float("lr_decay")?,
            patience: o.int("patience")?,
            eval_every: o.maybe(Options::int, "eval_every")?,
            checkpoint_dir: o.maybe(Options::path, "checkpoint_dir")?,
            rank: o.int("rank")?,
            world_size: o.int("world_size")?,
            resume: o.flag("resume")?,
            overwrite: o.flag("overwrite")?,
            regularization: Regularization {
                weight_drop: o.float("weight_drop")?,
                dropout_input: o.maybe(Options::float, "dropout_input")?,
                dropout_hidden: o.maybe(Options::float, "dropout_hidden")?,
                dropout_output: o.maybe(Options::float, "dropout_output")?,
                dropout_embedding: o.float("dropout_embedding")?,
                alpha: o.float("alpha")?,
                beta: o.float("beta")?,
            },
            variable_bptt: o.flag("variable_bptt")?,
            nonmono: o.int("nonmono")?,
        }))
    }
}

/// The dict, read one option at a time, each with Python's rule for its type.
struct Options<'py>(Bound<'py, PyDict>);

impl<'py> Options<'py> {
    /// No option but the known ones (as a call with keywords); a missing one
    /// is refused when it is read.
    fn new(ob: &Bound<'py, PyAny>) -> PyResult<Self> {
        let d = ob.downcast::<PyDict>().map_err(|_| {
            PyTypeError::new_err(format!(
                "the training options must be a dict, got {}",
                type_name(ob)
            ))
        })?;
        for key in d.keys() {
            let known = key
                .extract::<String>()
                .is_ok_and(|k| NAMES.contains(&k.as_str()));
            if !known {
                return Err(PyTypeError::new_err(format!(
                    "unknown training option {} (expected {})",
                    key.repr()?,
                    NAMES.join(", ")
                )));
            }
        }
        Ok(Options(d.clone()))
    }

    fn get(&self, name: &str) -> PyResult<Bound<'py, PyAny>> {
        self.0
            .get_item(name)?
            .ok_or_else(|| PyTypeError::new_err(format!("the training options have no '{name}'")))
    }

    /// `None`, or what `read` makes of the value.
    fn maybe<T>(&self, read: fn(&Self, &str) -> PyResult<T>, name: &str) -> PyResult<Option<T>> {
        if self.get(name)?.is_none() {
            Ok(None)
        } else {
            read(self, name).map(Some)
        }
    }

    /// An integer as torch takes one: `operator.index` (no float or bool
    /// silently truncated), within int64.
    fn int(&self, name: &str) -> PyResult<i64> {
        let v = self.get(name)?;
        let py = v.py();
        if v.is_instance_of::<PyBool>() {
            return Err(PyTypeError::new_err(format!(
                "{name} must be an integer, got {}",
                v.repr()?
            )));
        }
        v.extract().map_err(|e| {
            if e.is_instance_of::<PyOverflowError>(py) {
                let shown = v.repr().map_or_else(|_| "?".into(), |r| r.to_string());
                PyValueError::new_err(format!("{name} must fit in 64 bits, got {shown}"))
            } else if e.is_instance_of::<PyTypeError>(py) {
                PyTypeError::new_err(format!("{name} must be an integer, got {}", type_name(&v)))
            } else {
                e
            }
        })
    }

    /// A real number (`__float__` or `__index__`, as `math` functions take one).
    fn float(&self, name: &str) -> PyResult<f64> {
        let v = self.get(name)?;
        let py = v.py();
        v.extract().map_err(|e| {
            if e.is_instance_of::<PyOverflowError>(py) {
                PyValueError::new_err(format!("{name} does not fit in a float: {}", e.value(py)))
            } else if e.is_instance_of::<PyTypeError>(py) {
                PyTypeError::new_err(format!("{name} must be a number, got {}", type_name(&v)))
            } else {
                e
            }
        })
    }

    fn string(&self, name: &str) -> PyResult<String> {
        let v = self.get(name)?;
        if !v.is_instance_of::<pyo3::types::PyString>() {
            return Err(PyTypeError::new_err(format!(
                "{name} must be a str, got {}",
                type_name(&v)
            )));
        }
        v.extract()
    }

    fn flag(&self, name: &str) -> PyResult<bool> {
        let v = self.get(name)?;
        v.downcast::<PyBool>().map(|b| b.is_true()).map_err(|_| {
            PyTypeError::new_err(format!("{name} must be a bool, got {}", type_name(&v)))
        })
    }

    /// A str or `os.PathLike` (`os.fspath`).
    fn path(&self, name: &str) -> PyResult<PathBuf> {
        let v = self.get(name)?;
        let py = v.py();
        v.extract().map_err(|e| {
            if e.is_instance_of::<PyTypeError>(py) {
                PyTypeError::new_err(format!(
                    "{name} must be a str or os.PathLike, got {}",
                    type_name(&v)
                ))
            } else {
                e
            }
        })
    }
}
