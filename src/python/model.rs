//! A language model's config crosses pyo3 as the Python dict
//! `LanguageModel.config`, converted field by field (so a wrong type is a
//! TypeError naming the field) and validated by the core's rules, the one
//! place they are written.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::guard::guard;
use super::rnn::PyRnnSpec;
use crate::lm::{LmConfig, LmWeights};
use pyo3_tch::PyTensor;
use tch::Tensor;

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
                ob.get_type()
                    .name()
                    .map_or_else(|_| "?".into(), |n| n.to_string())
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

/// A language model's tensors as generation and scoring receive them: owned,
/// so the work can run without the GIL, and lent to the core as [`LmWeights`].
pub struct OwnedWeights {
    embedding: Tensor,
    stack: Vec<Tensor>,
    head_weight: Tensor,
    head_bias: Option<Tensor>,
}

impl OwnedWeights {
    pub fn new(
        embedding: PyTensor,
        stack: Vec<PyTensor>,
        head_weight: PyTensor,
        head_bias: Option<PyTensor>,
    ) -> OwnedWeights {
        OwnedWeights {
            embedding: embedding.0,
            stack: stack.into_iter().map(|t| t.0).collect(),
            head_weight: head_weight.0,
            head_bias: head_bias.map(|t| t.0),
        }
    }

    pub fn view(&self) -> LmWeights<'_> {
        LmWeights {
            embedding: &self.embedding,
            stack: &self.stack,
            head_weight: &self.head_weight,
            head_bias: self.head_bias.as_ref(),
        }
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
