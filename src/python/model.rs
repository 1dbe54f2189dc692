//! A language model crosses pyo3 in one shape, [`PyLanguageModel`]: the
//! Python `LanguageModel` itself, read as its config, its Vocab and its
//! tensors by name. The config is the dict `LanguageModel.config`, converted
//! field by field (so a wrong type is a TypeError naming the field) and
//! validated by the core's rules, the one place they are written.

use pyo3::exceptions::{PyAttributeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::errors::type_name;
use super::guard::guard;
use super::rnn::PyRnnSpec;
use super::vocab::PyVocab;
use crate::lm::{LmConfig, LmParams};
use crate::vocab::Vocab;
use pyo3_tch::PyTensor;

const FIELDS: [&str; 6] = [
    "embed_size",
    "hidden_size",
    "num_layers",
    "cell",
    "dropout",
    "tie_weights",
];

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
            value.extract().map_err(|e| {
                PyTypeError::new_err(format!(
                    "language model config '{key}': {}",
                    e.value(d.py())
                ))
            })
        }
        let cell: String = field(d, "cell")?;
        let config = LmConfig {
            embed_size: field(d, "embed_size")?,
            hidden_size: field(d, "hidden_size")?,
            num_layers: field(d, "num_layers")?,
            cell: LmConfig::parse_cell(&cell)?,
            dropout: field(d, "dropout")?,
            tie_weights: field(d, "tie_weights")?,
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
    Ok(d)
}

/// The recurrent stack a language model of this config has (its input is
/// the embedding; dropout between layers only when there are several).
///
/// Raises:
///     ValueError: the config breaks a rule (a cell name, dropout outside
///         [0, 1], tied weights of different widths, a size below 1).
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
    Ok(())
}
