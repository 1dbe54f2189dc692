//! Bindings for `crate::vocab`: argument conversion and GIL release only.

use std::path::PathBuf;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

use super::guard::guard;
use pyo3::types::{PyIterator, PyList, PyString};
use pyo3_tch::PyTensor;

use crate::vocab::{quote, BuildOptions, Level, Vocab, EOS, UNK};

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyVocab>()
}

/// Ids as Python hands them over: a tensor or a numpy integer array of any
/// shape, or a sequence of ints.
enum Ids {
    Tensor(PyTensor),
    List(Vec<i64>),
}

/// A numpy integer array's values, read in place (no per-element Python objects).
fn numpy_ids(ob: &Bound<'_, PyAny>) -> Option<Vec<i64>> {
    if let Ok(a) = ob.extract::<numpy::PyReadonlyArrayDyn<'_, i64>>() {
        return Some(a.as_array().iter().copied().collect());
    }
    if let Ok(a) = ob.extract::<numpy::PyReadonlyArrayDyn<'_, i32>>() {
        return Some(a.as_array().iter().map(|&v| i64::from(v)).collect());
    }
    None
}

impl<'py> FromPyObject<'py> for Ids {
    fn extract_bound(ob: &Bound<'py, PyAny>) -> PyResult<Self> {
        if let Ok(t) = ob.extract::<PyTensor>() {
            return Ok(Ids::Tensor(t));
        }
        if let Some(v) = numpy_ids(ob) {
            return Ok(Ids::List(v));
        }
        let list = if ob.is_instance_of::<PyString>() {
            None
        } else {
            ob.extract().ok()
        };
        list.map(Ids::List).ok_or_else(|| {
            let ty = ob
                .get_type()
                .name()
                .map_or_else(|_| "?".to_string(), |n| n.to_string());
            PyTypeError::new_err(format!(
                "ids must be an integer tensor or a sequence of ints, got {ty}"
            ))
        })
    }
}

/// A token <-> id map at character or word level.
///
/// Build one with `Vocab.build(text, ...)` or read one with `Vocab.load(path)`.
/// Ids are deterministic: the specials first, in the given order, then the
/// other tokens by frequency descending, ties broken by the token (as Python
/// sorts str).
///
/// Tokens: at char level each Unicode character (`"\n"` included) is a token.
/// At word level a token is a maximal run of alphanumeric characters and `_`,
/// or any other single non-whitespace character (punctuation); combining
/// marks stay with the character they follow; each `"\n"` yields `<eos>` when
/// `<eos>` is a special; a special written literally in the text (such as
/// `<unk>` in WikiText) is one token unless it would split a word. With
/// `lower=True` the text is lower-cased (as `str.lower`) before all this.
///
/// `vocab[token]` and `token in vocab` look a token up exactly as written (no
/// lower-casing); `encode` normalizes the text first.
#[pyclass(name = "Vocab", module = "rustrnn._rustrnn", frozen, eq)]
#[derive(PartialEq)]
pub struct PyVocab {
    inner: Vocab,
}

impl PyVocab {
    /// The core vocabulary, for bindings that take one (generation's stop
    /// strings, checkpoints, training).
    pub(crate) fn core(&self) -> &Vocab {
        &self.inner
    }

    /// The pyclass around a core vocabulary (a loaded checkpoint's).
    pub(crate) fn new(inner: Vocab) -> PyVocab {
        PyVocab { inner }
    }
}

#[pymethods]
impl PyVocab {
    /// Counts the tokens of `text` and numbers them.
    ///
    /// Args:
    ///     text: the training text (str).
    ///     level: 'char' (Unicode characters) or 'word'.
    ///     min_freq: tokens seen fewer times are left out (at least 1).
    ///     max_size: the largest size of the vocabulary, specials included;
    ///         None for no limit.
    ///     lower: lower-case the text before counting and before encoding.
    ///     specials: tokens given the first ids, in this order; `<unk>` is
    ///         what unknown tokens map to, `<eos>` marks word-level line ends.
    ///
    /// Returns:
    ///     Vocab
    #[staticmethod]
    #[pyo3(signature = (text, level="char", min_freq=1, max_size=None, lower=false,
                        specials=vec![UNK.to_string(), EOS.to_string()]),
           text_signature = "(text, level='char', min_freq=1, max_size=None, lower=False, \
                             specials=('<unk>', '<eos>'))")]
    fn build(
        py: Python<'_>,
        text: &str,
        level: &str,
        min_freq: i64,
        max_size: Option<i64>,
        lower: bool,
        specials: Vec<String>,
    ) -> PyResult<Self> {
        guard("Vocab.build", || {
            let level = Level::parse(level)?;
            let min_freq = usize::try_from(min_freq).map_err(|_| {
                PyValueError::new_err(format!("min_freq must be at least 1, got {min_freq}"))
            })?;
            let max_size = max_size
                .map(|m| {
                    usize::try_from(m).map_err(|_| {
                        PyValueError::new_err(format!(
                            "max_size must be None or non-negative, got {m}"
                        ))
                    })
                })
                .transpose()?;
            let opts = BuildOptions {
                min_freq,
                max_size,
                lower,
                specials,
            };
            let inner = py.allow_threads(|| Vocab::build(text, level, &opts))?;
            Ok(PyVocab { inner })
        })
    }

    /// Reads a vocabulary written by `save`.
    ///
    /// Args:
    ///     path: str or os.PathLike.
    ///
    /// Raises:
    ///     OSError: the file cannot be read (naming it).
    ///     ValueError: the file is not a rustrnn vocabulary of a known version,
    ///         or is corrupt (naming it).
    #[staticmethod]
    fn load(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        guard("Vocab.load", || {
            let inner = py.allow_threads(|| Vocab::load(&path))?;
            Ok(PyVocab { inner })
        })
    }

    /// Writes the vocabulary as versioned JSON (`"format": "rustrnn.vocab"`,
    /// `"version": 1`, level, lower, specials, tokens in id order), atomically:
    /// a temporary file in the same directory is fsynced, then renamed over `path`.
    ///
    /// Args:
    ///     path: str or os.PathLike.
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        guard("Vocab.save", || {
            py.allow_threads(|| self.inner.save(&path))?;
            Ok(())
        })
    }

    /// The document `save` writes, as a str.
    fn to_json(&self) -> String {
        self.inner.to_json()
    }

    /// Reads the document `to_json` returns (as `load` reads a file).
    ///
    /// Args:
    ///     text: str.
    ///
    /// Raises:
    ///     ValueError: not a rustrnn vocabulary of a known version, or corrupt.
    #[staticmethod]
    fn from_json(text: &str) -> PyResult<Self> {
        guard("Vocab.from_json", || {
            Ok(PyVocab {
                inner: Vocab::from_json(text.as_bytes())?,
            })
        })
    }

    /// `(Vocab.from_json, (self.to_json(),))`: pickling, `copy` and
    /// `torch.save` carry the versioned JSON document that `save` writes, and
    /// read it back through the same validation as `load`.
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<(Bound<'py, PyAny>, (String,))> {
        guard("Vocab.__reduce__", || {
            let from_json = slf.get_type().getattr("from_json")?;
            Ok((from_json, (slf.get().inner.to_json(),)))
        })
    }

    /// The ids of `text`'s tokens.
    ///
    /// Args:
    ///     text: str.
    ///
    /// Returns:
    ///     LongTensor `(T)`, T the number of tokens.
    ///
    /// Raises:
    ///     KeyError: a token is unknown and the vocabulary has no `<unk>`.
    fn encode(&self, py: Python<'_>, text: &str) -> PyResult<PyTensor> {
        guard("Vocab.encode", || {
            Ok(PyTensor(py.allow_threads(|| self.inner.encode(text))?))
        })
    }

    /// The text of `ids`.
    ///
    /// Char level concatenates the tokens. Word level joins them with one
    /// space, except that `<eos>` becomes `"\n"` with no space on either side;
    /// so `decode(encode(t))` is `t` with each line's tokens separated by
    /// single spaces and no other whitespace. Other specials appear as
    /// themselves (`<unk>`).
    ///
    /// Args:
    ///     ids: an integer tensor of any shape (flattened) or a sequence of ints.
    ///
    /// Raises:
    ///     IndexError: an id is outside `range(len(self))`.
    fn decode(&self, py: Python<'_>, ids: Ids) -> PyResult<String> {
        guard("Vocab.decode", || {
            let text = match ids {
                Ids::Tensor(t) => py.allow_threads(move || self.inner.decode_tensor(&t.0))?,
                Ids::List(v) => py.allow_threads(|| self.inner.decode(&v))?,
            };
            Ok(text)
        })
    }

    /// One-hot rows of `ids`, as `torch.nn.functional.one_hot(ids, len(self)).float()`.
    ///
    /// Args:
    ///     ids: an integer tensor `(*)` of any shape, or a sequence of ints.
    ///
    /// Returns:
    ///     float32 tensor `(*, len(self))` on the device of `ids`.
    ///
    /// Raises:
    ///     IndexError: an id is outside `range(len(self))`.
    fn one_hot(&self, py: Python<'_>, ids: Ids) -> PyResult<PyTensor> {
        guard("Vocab.one_hot", || {
            let ids = match ids {
                Ids::Tensor(t) => t.0,
                Ids::List(v) => tch::Tensor::from_slice(&v),
            };
            Ok(PyTensor(
                py.allow_threads(move || self.inner.one_hot(&ids))?,
            ))
        })
    }

    /// The tokens of `text` before lookup (lower-cased when the vocabulary is).
    ///
    /// Args:
    ///     text: str.
    ///
    /// Returns:
    ///     list[str]
    fn tokenize(&self, py: Python<'_>, text: &str) -> Vec<String> {
        py.allow_threads(|| self.inner.tokenize(text))
    }

    /// The token of `id`.
    ///
    /// Raises:
    ///     IndexError: `id` is outside `range(len(self))` (negative ids too).
    fn token(&self, id: i64) -> PyResult<String> {
        guard("Vocab.token", || Ok(self.inner.token(id)?.to_string()))
    }

    /// Every token in id order, the specials first.
    fn tokens(&self) -> Vec<String> {
        self.inner.tokens().to_vec()
    }

    /// 'char' or 'word'.
    #[getter]
    fn level(&self) -> &'static str {
        self.inner.level().name()
    }

    /// Whether text is lower-cased before counting and encoding.
    #[getter]
    fn lower(&self) -> bool {
        self.inner.lower()
    }

    /// The special tokens, in id order (ids `0..len(specials)`).
    #[getter]
    fn specials(&self) -> Vec<String> {
        self.inner.specials().to_vec()
    }

    /// The id of `<unk>`, or None when it is not a special.
    #[getter]
    fn unk_id(&self) -> Option<i64> {
        self.inner.unk_id()
    }

    /// The id of `<eos>`, or None when it is not a special.
    #[getter]
    fn eos_id(&self) -> Option<i64> {
        self.inner.eos_id()
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    /// The id of `token`, exactly as written; `<unk>`'s id for an unknown
    /// token, or KeyError when there is no `<unk>`.
    fn __getitem__(&self, token: &str) -> PyResult<i64> {
        guard("Vocab.__getitem__", || Ok(self.inner.id(token)?))
    }

    fn __contains__(&self, token: &Bound<'_, PyAny>) -> bool {
        token
            .downcast::<PyString>()
            .ok()
            .and_then(|s| s.to_str().ok())
            .is_some_and(|s| self.inner.contains(s))
    }

    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyIterator>> {
        guard("Vocab.__iter__", || {
            PyList::new(py, self.inner.tokens())?.try_iter()
        })
    }

    fn __repr__(&self) -> String {
        let v = &self.inner;
        let mut s = format!("Vocab(level='{}', size={}", v.level().name(), v.len());
        if v.lower() {
            s.push_str(", lower=True");
        }
        if v.specials() != [UNK, EOS] {
            let quoted: Vec<String> = v.specials().iter().map(|t| quote(t)).collect();
            let trailing = if quoted.len() == 1 { "," } else { "" };
            s.push_str(&format!(", specials=({}{trailing})", quoted.join(", ")));
        }
        s.push(')');
        s
    }
}
