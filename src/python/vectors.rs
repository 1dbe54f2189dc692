//! Bindings for `crate::vectors`: the core of `rustrnn.WordVectors`, whose
//! Python class turns gensim's flexible arguments (a key, a vector, a list
//! of either, `(key, weight)` pairs, numpy arrays) into the typed terms
//! these methods take.

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3_tch::PyTensor;
use tch::Tensor;

use super::guard::guard;
use crate::error::{Error, Result};
use crate::vectors::evaluate::{self, EvalOptions, Section};
use crate::vectors::query::Neighbours;
use crate::vectors::word2vec::{self, ReadOptions};
use crate::vectors::{Term, WordVectors};

/// A query term: a key or a 1-D float tensor.
#[derive(FromPyObject)]
enum PyTerm {
    Key(String),
    Vector(PyTensor),
}

impl PyTerm {
    fn into_term(self) -> Term {
        match self {
            PyTerm::Key(k) => Term::Key(k),
            PyTerm::Vector(v) => Term::Vector(v.0),
        }
    }
}

/// `[(key, similarity), ...]`, or every similarity as a tensor.
#[derive(IntoPyObject)]
enum PyNeighbours {
    Top(Vec<(String, f32)>),
    All(PyTensor),
}

impl From<Neighbours> for PyNeighbours {
    fn from(n: Neighbours) -> Self {
        match n {
            Neighbours::Top(v) => PyNeighbours::Top(v),
            Neighbours::All(v) => PyNeighbours::All(PyTensor(Tensor::from_slice(&v))),
        }
    }
}

/// `((pearson, p), (spearman, p), oov_percent)`.
type PyPairScores = ((f64, f64), (f64, f64), f64);

/// A section of the analogy benchmark: `(name, correct, incorrect)`.
type PySection = (String, Vec<[String; 4]>, Vec<[String; 4]>);

fn section(s: Section) -> PySection {
    (s.name, s.correct, s.incorrect)
}

/// Keys and their float32 vectors (`rustrnn.WordVectors` holds one).
///
/// Args:
///     keys: one unique key per row.
///     vectors: `[len(keys), dim]`, any floating dtype (copied to float32 on the CPU).
#[pyclass(name = "WordVectors", module = "rustrnn._rustrnn", frozen)]
pub struct PyWordVectors {
    inner: Mutex<WordVectors>,
}

impl PyWordVectors {
    fn lock(&self) -> PyResult<MutexGuard<'_, WordVectors>> {
        self.inner
            .lock()
            .map_err(|_| PyRuntimeError::new_err("word vectors lock poisoned"))
    }

    /// Runs `f` on the vectors with the GIL released.
    fn without_gil<R: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&WordVectors) -> Result<R> + Send,
    ) -> PyResult<R> {
        let inner = &self.inner;
        Ok(py.allow_threads(|| {
            let wv = inner
                .lock()
                .map_err(|_| Error::shape("word vectors lock poisoned"))?;
            f(&wv)
        })?)
    }

    fn wrap(wv: WordVectors) -> Self {
        PyWordVectors {
            inner: Mutex::new(wv),
        }
    }
}

fn options(restrict_vocab: usize, case_insensitive: bool, dummy4unknown: bool) -> EvalOptions {
    EvalOptions {
        restrict_vocab,
        case_insensitive,
        dummy4unknown,
    }
}

#[pymethods]
impl PyWordVectors {
    #[new]
    #[pyo3(signature = (keys, vectors))]
    fn new(keys: Vec<String>, vectors: PyTensor) -> PyResult<Self> {
        guard("WordVectors.new", || {
            Ok(Self::wrap(WordVectors::new(keys, &vectors.0)?))
        })
    }

    fn __len__(&self) -> PyResult<usize> {
        guard("WordVectors.__len__", || Ok(self.lock()?.len()))
    }

    /// The keys in row order.
    #[getter]
    fn keys(&self) -> PyResult<Vec<String>> {
        guard("WordVectors.keys", || Ok(self.lock()?.keys().to_vec()))
    }

    /// A copy of the `[len, dim]` float32 vectors.
    #[getter]
    fn vectors(&self) -> PyResult<PyTensor> {
        guard("WordVectors.vectors", || {
            Ok(PyTensor(self.lock()?.to_tensor()?))
        })
    }

    /// The width of each vector.
    #[getter]
    fn dim(&self) -> PyResult<usize> {
        guard("WordVectors.dim", || Ok(self.lock()?.dim()))
    }

    /// The row of `key`, or None.
    fn index(&self, key: &str) -> PyResult<Option<usize>> {
        guard("WordVectors.index", || Ok(self.lock()?.get(key)))
    }

    /// A copy of the vector of `key` (unit length when `norm`); KeyError if absent.
    #[pyo3(signature = (key, norm=false))]
    fn get_vector(&self, key: &str, norm: bool) -> PyResult<PyTensor> {
        guard("WordVectors.get_vector", || {
            let wv = self.lock()?;
            Ok(PyTensor(wv.row(wv.index_of(key)?, norm)?.copy()))
        })
    }

    /// gensim's `get_mean_vector` over `(term, weight)` pairs.
    #[pyo3(signature = (terms, pre_normalize, post_normalize, ignore_missing))]
    fn mean(
        &self,
        terms: Vec<(PyTerm, f64)>,
        pre_normalize: bool,
        post_normalize: bool,
        ignore_missing: bool,
    ) -> PyResult<PyTensor> {
        guard("WordVectors.mean", || {
            let terms: Vec<(Term, f64)> =
                terms.into_iter().map(|(t, w)| (t.into_term(), w)).collect();
            let m = self
                .lock()?
                .mean(&terms, pre_normalize, post_normalize, ignore_missing)?;
            Ok(PyTensor(m))
        })
    }

    /// 3CosAdd over `(term, weight)` pairs in rows `start..end` (or
    /// `0..restrict_vocab`): the `topn` best `(key, similarity)`, or every
    /// similarity when `topn` is None.
    #[pyo3(signature = (terms, topn, start, end, restrict_vocab))]
    fn most_similar(
        &self,
        py: Python<'_>,
        terms: Vec<(PyTerm, f64)>,
        topn: Option<usize>,
        start: usize,
        end: Option<usize>,
        restrict_vocab: Option<usize>,
    ) -> PyResult<PyNeighbours> {
        guard("WordVectors.most_similar", || {
            let terms: Vec<(Term, f64)> =
                terms.into_iter().map(|(t, w)| (t.into_term(), w)).collect();
            let n = self.without_gil(py, move |wv| {
                wv.most_similar(&terms, topn, wv.search_range(start, end, restrict_vocab))
            })?;
            Ok(n.into())
        })
    }

    /// 3CosMul of the positive over the negative terms.
    #[pyo3(signature = (positive, negative, topn, restrict_vocab))]
    fn most_similar_cosmul(
        &self,
        py: Python<'_>,
        positive: Vec<PyTerm>,
        negative: Vec<PyTerm>,
        topn: Option<usize>,
        restrict_vocab: Option<usize>,
    ) -> PyResult<PyNeighbours> {
        guard("WordVectors.most_similar_cosmul", || {
            let pos: Vec<Term> = positive.into_iter().map(PyTerm::into_term).collect();
            let neg: Vec<Term> = negative.into_iter().map(PyTerm::into_term).collect();
            let n = self.without_gil(py, move |wv| {
                let range = wv.search_range(0, None, restrict_vocab);
                wv.most_similar_cosmul(&pos, &neg, topn, range)
            })?;
            Ok(n.into())
        })
    }

    /// The key that fits least with the others.
    fn doesnt_match(&self, words: Vec<String>) -> PyResult<String> {
        guard("WordVectors.doesnt_match", || {
            Ok(self.lock()?.doesnt_match(&words)?)
        })
    }

    /// Cosine similarity of two keys.
    fn similarity(&self, a: &str, b: &str) -> PyResult<f64> {
        guard("WordVectors.similarity", || {
            Ok(self.lock()?.similarity(a, b)?)
        })
    }

    /// Cosine similarity of the means of two sets of keys.
    fn n_similarity(&self, a: Vec<String>, b: Vec<String>) -> PyResult<f64> {
        guard("WordVectors.n_similarity", || {
            Ok(self.lock()?.n_similarity(&a, &b)?)
        })
    }

    /// `1 - cosine` from a key or vector to `others` (every row when empty).
    fn distances(&self, term: PyTerm, others: Vec<String>) -> PyResult<PyTensor> {
        guard("WordVectors.distances", || {
            let d = self.lock()?.distances(&term.into_term(), &others)?;
            Ok(PyTensor(Tensor::from_slice(&d)))
        })
    }

    /// The keys closer to `a` than `b` is.
    fn closer_than(&self, a: &str, b: &str) -> PyResult<Vec<String>> {
        guard("WordVectors.closer_than", || {
            Ok(self.lock()?.closer_than(a, b)?)
        })
    }

    /// 1 + the number of keys closer to `a` than `b` is.
    fn rank(&self, a: &str, b: &str) -> PyResult<usize> {
        guard("WordVectors.rank", || Ok(self.lock()?.rank(a, b)?))
    }

    /// `((pearson, p), (spearman, p), oov_percent)` over a word-pair file.
    #[pyo3(signature = (path, delimiter, restrict_vocab, case_insensitive, dummy4unknown))]
    fn evaluate_word_pairs(
        &self,
        py: Python<'_>,
        path: PathBuf,
        delimiter: &str,
        restrict_vocab: usize,
        case_insensitive: bool,
        dummy4unknown: bool,
    ) -> PyResult<PyPairScores> {
        guard("WordVectors.evaluate_word_pairs", || {
            let opts = options(restrict_vocab, case_insensitive, dummy4unknown);
            let s = self.without_gil(py, |wv| evaluate::word_pairs(wv, &path, delimiter, &opts))?;
            Ok((
                (s.pearson.statistic, s.pearson.pvalue),
                (s.spearman.statistic, s.spearman.pvalue),
                s.oov_ratio,
            ))
        })
    }

    /// `(accuracy, [(section, correct, incorrect), ...], oov_percent)` over
    /// an analogy file; the last section is "Total accuracy".
    #[pyo3(signature = (path, restrict_vocab, case_insensitive, dummy4unknown))]
    fn evaluate_word_analogies(
        &self,
        py: Python<'_>,
        path: PathBuf,
        restrict_vocab: usize,
        case_insensitive: bool,
        dummy4unknown: bool,
    ) -> PyResult<(f64, Vec<PySection>, f64)> {
        guard("WordVectors.evaluate_word_analogies", || {
            let opts = options(restrict_vocab, case_insensitive, dummy4unknown);
            let s = self.without_gil(py, |wv| evaluate::word_analogies(wv, &path, &opts))?;
            Ok((
                s.accuracy,
                s.sections.into_iter().map(section).collect(),
                s.oov_ratio,
            ))
        })
    }

    /// Writes the word2vec text or binary format, atomically.
    #[pyo3(signature = (path, binary, write_header))]
    fn save_word2vec_format(
        &self,
        py: Python<'_>,
        path: PathBuf,
        binary: bool,
        write_header: bool,
    ) -> PyResult<()> {
        guard("WordVectors.save_word2vec_format", || {
            self.without_gil(py, |wv| word2vec::save(wv, &path, binary, write_header))
        })
    }

    /// Reads a word2vec text or binary file (GloVe's with `no_header`).
    #[staticmethod]
    #[pyo3(signature = (path, binary, limit, no_header))]
    fn load_word2vec_format(
        py: Python<'_>,
        path: PathBuf,
        binary: bool,
        limit: Option<usize>,
        no_header: bool,
    ) -> PyResult<Self> {
        guard("WordVectors.load_word2vec_format", || {
            let opts = ReadOptions {
                binary,
                limit,
                no_header,
            };
            let wv = py.allow_threads(|| word2vec::load(&path, opts))?;
            Ok(Self::wrap(wv))
        })
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyWordVectors>()?;
    Ok(())
}
