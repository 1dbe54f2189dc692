//! Bindings for `crate::checkpoint`: argument conversion and GIL release only.

use std::path::PathBuf;

use pyo3::prelude::*;

use super::guard::guard;
use pyo3_tch::PyTensor;

use super::model::{config_dict, PyLanguageModel};
use super::vocab::PyVocab;
use crate::checkpoint::{Checkpoint, FileKind};
use crate::dtype::bare_dtype_name;
use pyo3::types::PyDict;

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(save_model, m)?)?;
    m.add_function(wrap_pyfunction!(load_model, m)?)?;
    Ok(())
}

/// Writes a model checkpoint (a `.safetensors` file) atomically.
///
/// Args:
///     path: str or os.PathLike.
///     model: the `LanguageModel` (its config, Vocab and tensors by name).
///
/// Raises:
///     ValueError: the tensors do not fit the config.
///     OSError: the file cannot be written (a previous file is left intact).
#[pyfunction]
#[pyo3(signature = (path, model), text_signature = "(path, model)")]
fn save_model(py: Python<'_>, path: PathBuf, model: PyLanguageModel) -> PyResult<()> {
    guard("save_model", || {
        let vocab = model.vocab().clone();
        let params = model.into_params();
        let ckpt = Checkpoint::model(params.config.clone(), vocab, params.named_detached()?);
        py.allow_threads(move || ckpt.save(&path))?;
        Ok(())
    })
}

/// Reads and validates a checkpoint (model or training kind).
///
/// Args:
///     path: str or os.PathLike.
///
/// Returns:
///     `(kind, config, vocab, dtype, [(name, tensor)])`: the model's
///     tensors in `state_dict` order, on the CPU.
///
/// Raises:
///     OSError: the file cannot be read.
///     ValueError: the file is empty, truncated, not a rustrnn checkpoint, or
///         its tensors do not fit its config (the message names the file).
#[pyfunction]
#[pyo3(text_signature = "(path)")]
#[allow(clippy::type_complexity)]
fn load_model(
    py: Python<'_>,
    path: PathBuf,
) -> PyResult<(
    String,
    Bound<'_, PyDict>,
    PyVocab,
    String,
    Vec<(String, PyTensor)>,
)> {
    guard("load_model", || {
        let ckpt = py.allow_threads(|| Checkpoint::load(&path))?;
        let kind = match ckpt.kind {
            FileKind::Model => "model",
            FileKind::Training => "training",
        };
        let dtype = bare_dtype_name(ckpt.dtype()?).to_string();
        Ok((
            kind.to_string(),
            config_dict(py, &ckpt.config)?,
            PyVocab::new(ckpt.vocab),
            dtype,
            ckpt.params
                .into_iter()
                .map(|(n, t)| (n, PyTensor(t)))
                .collect(),
        ))
    })
}
