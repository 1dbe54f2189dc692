//! A language model crosses pyo3 in one shape, [`PyLanguageModel`]: the
//! Python `LanguageModel` itself, read as its config, its Vocab and its
//! tensors by name. The config is the dict `LanguageModel.config`, converted
//! field by field (so a wrong type is a TypeError naming the field) and
//! validated by the core's rules, the one place they are written.

use pyo3::exceptions::{PyAttributeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyFloat, PyInt};

use super::errors::type_name;
use super::guard::guard;
use super::rnn::PyRnnSpec;
use super::vocab::PyVocab;
use crate::lm::adaptive::{AdaptiveConfig, CUTOFFS_RULE, DEFAULT_DIV_VALUE};
use crate::lm::{HeadConfig, LmConfig, LmParams};
use crate::vocab::Vocab;
use pyo3_tch::PyTensor;

/// The config's fields; the last three (the head's) may be left out, for
/// the full head.
const FIELDS: [&str; 9] = [
    "embed_size",
    "hidden_size",
    "num_layers",
    "cell",
    "dropout",
    "tie_weights",
    "head",
    "cutoffs",
    "div_value",
];

/// A `cutoffs` argument: a sequence of ints, or None. A float among them (or
/// an int beyond int64) is torch's ValueError (its rules `int(c) == c` and
/// `c <= n_classes - 1`); anything else not an int is a TypeError.
pub struct PyCutoffs(pub Option<Vec<i64>>);

impl<'py> FromPyObject<'py> for PyCutoffs {
    fn extract_bound(ob: &Bound<'py, PyAny>) -> PyResult<Self> {
        if ob.is_none() {
            return Ok(PyCutoffs(None));
        }
        let items = ob.try_iter().map_err(|_| {
            PyTypeError::new_err(format!(
                "cutoffs must be a sequence of ints or None, got {}",
                type_name(ob)
            ))
        })?;
        let mut cutoffs = Vec::new();
        for item in items {
            let item = item?;
            // A number that is no i64 (a float, an int past 2**63) breaks torch's
            // rules (integers in [1, n_classes - 1]): its ValueError.
            let number = item.is_instance_of::<PyFloat>() || item.is_instance_of::<PyInt>();
            cutoffs.push(item.extract::<i64>().map_err(|_| {
                if number {
                    return crate::error::Error::value(CUTOFFS_RULE).into();
                }
                PyTypeError::new_err(format!(
                    "cutoffs must be a sequence of ints, got an item of type {}",
                    type_name(&item)
                ))
            })?);
        }
        Ok(PyCutoffs(Some(cutoffs)))
    }
}

/// `LanguageModel.config`, validated.
pub struct PyLmConfig(pub LmConfig);

impl<'py> FromPyObject<'py> for PyLmConfig {
    fn extract_bound(ob: &Bound<'py, PyAny>) -> PyResult<Self> {
        let d = ob.downcast::<PyDict>().map_err(|_| {
            PyTypeError::new_err(format!(
                "a language model config must be a dict, got {}",
                type_name(ob)
            ))
        })?;
        for key in d.keys() {
            let key: String = key.extract()?;
            if !FIELDS.contains(&key.as_str()) {
                return Err(PyValueError::new_err(format!(
                    "unknown language model config field '{key}' (expected {})",
                    FIELDS.join(", ")
                )));
            }
        }
        fn field<'py, T: FromPyObject<'py>>(d: &Bound<'py, PyDict>, key: &str) -> PyResult<T> {
            let value = d.get_item(key)?.ok_or_else(|| {
                PyValueError::new_err(format!("the language model config has no '{key}'"))
            })?;
            convert(d, key, &value)
        }
        fn convert<'py, T: FromPyObject<'py>>(
            d: &Bound<'py, PyDict>,
            key: &str,
            value: &Bound<'py, PyAny>,
        ) -> PyResult<T> {
            value.extract().map_err(|e| {
                if e.is_instance_of::<PyValueError>(d.py()) {
                    return e;
                }
                PyTypeError::new_err(format!(
                    "language model config '{key}': {}",
                    e.value(d.py())
                ))
            })
        }
        /// A head field, None when left out.
        fn head_field<'py, T: FromPyObject<'py>>(
            d: &Bound<'py, PyDict>,
            key: &str,
        ) -> PyResult<Option<T>> {
            match d.get_item(key)? {
                Some(v) if !v.is_none() => convert(d, key, &v).map(Some),
                _ => Ok(None),
            }
        }
        let cell: String = field(d, "cell")?;
        let head: Option<String> = head_field(d, "head")?;
        let cutoffs: Option<PyCutoffs> = head_field(d, "cutoffs")?;
        let config = LmConfig {
            embed_size: field(d, "embed_size")?,
            hidden_size: field(d, "hidden_size")?,
            num_layers: field(d, "num_layers")?,
            cell: LmConfig::parse_cell(&cell)?,
            dropout: field(d, "dropout")?,
            tie_weights: field(d, "tie_weights")?,
            head: HeadConfig::new(
                head.as_deref().unwrap_or("full"),
                cutoffs.and_then(|c| c.0),
                head_field(d, "div_value")?,
            )?,
        };
        config.validate()?;
        Ok(PyLmConfig(config))
    }
}

/// A `rustrnn.LanguageModel` as every binding that runs one takes it (duck
/// typed: anything with its `config`, `vocab` and `state_dict`). The tensors
/// are `state_dict(keep_vars=True)`'s, the module's Parameters themselves, so
/// training updates the module in place; [`LmParams::new`] finds them by name
/// and checks them against the config (shapes, one dtype and device, tying).
/// They require grad: whatever only reads them runs under `no_grad`.
pub struct PyLanguageModel {
    params: LmParams,
    vocab: Py<PyVocab>,
}

impl PyLanguageModel {
    /// The weights (shared with the module): `params().weights()` is the
    /// view generation and scoring read, `params().rnn` the stack's config.
    pub fn params(&self) -> &LmParams {
        &self.params
    }

    pub fn into_params(self) -> LmParams {
        self.params
    }

    /// The vocabulary; readable without the GIL (the pyclass is frozen).
    pub fn vocab(&self) -> &Vocab {
        self.vocab.get().core()
    }
}

impl<'py> FromPyObject<'py> for PyLanguageModel {
    fn extract_bound(ob: &Bound<'py, PyAny>) -> PyResult<Self> {
        let py = ob.py();
        let attr = |name: &str| {
            ob.getattr(name).map_err(|e| {
                if e.is_instance_of::<PyAttributeError>(py) {
                    PyTypeError::new_err(format!(
                        "expected a rustrnn.LanguageModel (with .config, .vocab and \
                         .state_dict()), got {} (it has no '{name}')",
                        type_name(ob)
                    ))
                } else {
                    e
                }
            })
        };
        let (config, vocab, state_dict) = (attr("config")?, attr("vocab")?, attr("state_dict")?);
        let config: PyLmConfig = config.extract()?;
        let vocab = vocab.downcast_into::<PyVocab>().map_err(|e| {
            PyTypeError::new_err(format!(
                "a LanguageModel's vocab must be a rustrnn.Vocab, got {}",
                type_name(&e.into_inner())
            ))
        })?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("keep_vars", true)?;
        let mut named = Vec::new();
        for item in state_dict
            .call((), Some(&kwargs))?
            .call_method0("items")?
            .try_iter()?
        {
            let (name, t): (String, PyTensor) = item?.extract().map_err(|e| {
                PyTypeError::new_err(format!(
                    "a LanguageModel's state_dict must map names to tensors: {}",
                    e.value(py)
                ))
            })?;
            named.push((name, t.0));
        }
        Ok(PyLanguageModel {
            params: LmParams::new(config.0, named)?,
            vocab: vocab.unbind(),
        })
    }
}

/// `LanguageModel.config` as the dict Python holds.
pub fn config_dict<'py>(py: Python<'py>, c: &LmConfig) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("embed_size", c.embed_size)?;
    d.set_item("hidden_size", c.hidden_size)?;
    d.set_item("num_layers", c.num_layers)?;
    d.set_item("cell", LmConfig::cell_name(c.cell))?;
    d.set_item("dropout", c.dropout)?;
    d.set_item("tie_weights", c.tie_weights)?;
    d.set_item("head", c.head.name())?;
    match &c.head {
        HeadConfig::Full => {
            d.set_item("cutoffs", py.None())?;
            d.set_item("div_value", DEFAULT_DIV_VALUE)?;
        }
        HeadConfig::Adaptive(a) => {
            d.set_item("cutoffs", a.cutoffs.clone())?;
            d.set_item("div_value", a.div_value)?;
        }
    }
    Ok(d)
}

/// The adaptive head's cutoffs for a vocabulary of `vocab_size` tokens:
/// `cutoffs` checked against it as torch checks them, or, when None, the
/// default split: the boundaries 2,000, 10,000, 50,000, ... (each five times
/// the last) up to half the vocabulary, or one cutoff at `max(1, V // 4)`
/// for a vocabulary under 4,000 tokens.
///
/// Args:
///     vocab_size: the vocabulary's size (torch's `n_classes`).
///     cutoffs: a sequence of ints, or None.
///
/// Returns:
///     The cutoffs, a list of ints.
///
/// Raises:
///     ValueError: cutoffs that are empty, not increasing, not unique, or
///         outside [1, vocab_size - 1] (torch's message); a vocabulary of
///         fewer than 2 tokens.
///     TypeError: an item that is not an int.
#[pyfunction]
#[pyo3(signature = (vocab_size, cutoffs=None), text_signature = "(vocab_size, cutoffs=None)")]
fn adaptive_cutoffs(vocab_size: i64, cutoffs: Option<PyCutoffs>) -> PyResult<Vec<i64>> {
    guard("adaptive_cutoffs", || {
        Ok(AdaptiveConfig::resolve_cutoffs(
            vocab_size,
            cutoffs.and_then(|c| c.0),
        )?)
    })
}

/// The recurrent stack a language model of this config has (its input is
/// the embedding; dropout between layers only when there are several).
///
/// Raises:
///     ValueError: the config breaks a rule (a cell name, dropout outside
///         [0, 1], tied weights with an adaptive head,
///         a size below 1, a head name, cutoffs out of order, a div_value
///         that is not positive).
///     TypeError: a field of the wrong type.
#[pyfunction]
#[pyo3(text_signature = "(config)")]
fn lm_stack_spec(config: PyLmConfig) -> PyResult<PyRnnSpec> {
    guard("lm_stack_spec", || {
        Ok(PyRnnSpec::from_config(config.0.rnn_config()?))
    })
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(lm_stack_spec, m)?)?;
    m.add_function(wrap_pyfunction!(adaptive_cutoffs, m)?)?;
    Ok(())
}
