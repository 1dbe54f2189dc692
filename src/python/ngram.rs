//! Bindings for `crate::ngram`: argument conversion, GIL release and the
//! `generator=` hook; the algorithms are in the core. Natural logs cross the
//! boundary (log10 only where asked); ids are the vocabulary's.

use std::path::PathBuf;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

use super::guard::guard;
use pyo3::types::{PyBool, PyFloat, PyString};
use pyo3_tch::PyTensor;
use tch::{Kind, Tensor};

use super::gil::interrupt_poller;
use super::sampler::with_rng;
use super::vocab::PyVocab;
use crate::error::{Error, Result};
use crate::ngram::arpa::{self, LoadOptions};
use crate::ngram::generate::GenerateOptions;
use crate::ngram::{
    check_order, Counter, Evaluation, Input, NGramModel, Smoothing, Words, MAX_ORDER,
};
use crate::sampler::SampleOptions;
use crate::vocab::Level;

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyNGramModel>()
}

/// Text pieces gathered from an iterable before one call without the GIL.
const FIT_BATCH_BYTES: usize = 1 << 20;

/// Text, or vocabulary ids (a 1-D integer tensor or a sequence of ints).
enum TextOrIds {
    Text(String),
    Ids(Vec<i64>),
}

/// The ids of a 1-D integer tensor.
fn tensor_ids(t: &Tensor) -> Result<Vec<i64>> {
    if t.dim() != 1 {
        return Err(Error::value(format!(
            "expected a 1-D sequence of ids, got shape {:?}",
            t.size()
        )));
    }
    let kind = t.f_kind()?;
    if !matches!(
        kind,
        Kind::Int64 | Kind::Int | Kind::Int16 | Kind::Int8 | Kind::Uint8
    ) {
        return Err(Error::Type(format!(
            "ids must be an integer tensor, got dtype {kind:?}"
        )));
    }
    let t = t.f_to_kind(Kind::Int64)?.f_to_device(tch::Device::Cpu)?;
    Ok(Vec::<i64>::try_from(&t)?)
}

impl<'py> FromPyObject<'py> for TextOrIds {
    fn extract_bound(ob: &Bound<'py, PyAny>) -> PyResult<Self> {
        if let Ok(s) = ob.downcast::<PyString>() {
            return Ok(TextOrIds::Text(s.to_str()?.to_string()));
        }
        if let Ok(t) = ob.extract::<PyTensor>() {
            return Ok(TextOrIds::Ids(tensor_ids(&t.0)?));
        }
        let ints = ob
            .extract::<Vec<Bound<'py, PyAny>>>()
            .ok()
            .and_then(|items| {
                items
                    .iter()
                    .map(|i| {
                        if i.is_instance_of::<PyBool>() || i.is_instance_of::<PyFloat>() {
                            None
                        } else {
                            i.extract::<i64>().ok()
                        }
                    })
                    .collect::<Option<Vec<i64>>>()
            });
        ints.map(TextOrIds::Ids).ok_or_else(|| {
            let ty = ob
                .get_type()
                .name()
                .map_or_else(|_| "?".to_string(), |n| n.to_string());
            PyTypeError::new_err(format!(
                "expected text (str) or ids (an integer tensor or a sequence of ints), got {ty}"
            ))
        })
    }
}

/// The words of `ids`, or the text, as the core's input.
enum Owned {
    Text(String),
    Words(Vec<u32>),
}

impl Owned {
    fn new(model: &NGramModel, x: TextOrIds) -> Result<Owned> {
        Ok(match x {
            TextOrIds::Text(s) => Owned::Text(s),
            TextOrIds::Ids(ids) => Owned::Words(model.words().map_ids(&ids)?),
        })
    }

    fn input(&self) -> Input<'_> {
        match self {
            Owned::Text(s) => Input::Text(s),
            Owned::Words(w) => Input::Words(w),
        }
    }
}

fn level_arg(level: Option<&str>) -> Result<Option<Level>> {
    level.map(Level::parse).transpose()
}

fn usize_arg(name: &str, value: i64, least: i64) -> PyResult<usize> {
    if value < least {
        return Err(PyValueError::new_err(format!(
            "{name} must be at least {least}, got {value}"
        )));
    }
    usize::try_from(value)
        .map_err(|_| PyValueError::new_err(format!("{name} is too large: {value}")))
}

/// A backoff n-gram language model in Rust (`rustrnn.NGramLM` wraps it).
///
/// Holds the n-grams of orders 1..N (each a hash-map key of its context's
/// id and its last word) with their log10 probabilities and backoff
/// weights, and the Vocab that reads text into its words: `<unk>`, `<s>`,
/// `</s>`, then the vocabulary's other tokens (its `<eos>`, and at char
/// level `"\n"`, are `</s>`).
#[pyclass(name = "NGramModel", module = "rustrnn._rustrnn", frozen)]
pub struct PyNGramModel {
    inner: NGramModel,
}

#[pymethods]
impl PyNGramModel {
    /// Counts the n-grams of a text and estimates a model.
    ///
    /// Args:
    ///     source: text (str; its lines are the sentences), ids (a 1-D integer
    ///         tensor of the vocabulary's ids; `<eos>` ends a sentence), or an
    ///         iterable of str (an open file, a list of lines), each item
    ///         one or more whole lines, read as it goes.
    ///     vocab: the Vocab that tokenizes the text; it must have the
    ///         specials `<unk>` and `<eos>`.
    ///     order: 1 to 8.
    ///     smoothing: 'modified_kneser_ney', 'kneser_ney' or 'add_k'.
    ///     k: add-k's pseudo-count (> 0, default 1); only for 'add_k'.
    ///
    /// Raises:
    ///     ValueError: a bad order, smoothing or k, a vocabulary without
    ///         `<unk>` and `<eos>`, no text.
    ///     IndexError: an id outside the vocabulary.
    ///     TypeError: an item of the iterable is not a str.
    ///     KeyboardInterrupt: Ctrl-C while counting.
    #[staticmethod]
    #[pyo3(signature = (source, vocab, order=3, smoothing="modified_kneser_ney", k=None),
           text_signature = "(source, vocab, order=3, smoothing='modified_kneser_ney', k=None)")]
    fn fit(
        py: Python<'_>,
        source: &Bound<'_, PyAny>,
        vocab: &Bound<'_, PyVocab>,
        order: i64,
        smoothing: &str,
        k: Option<f64>,
    ) -> PyResult<Self> {
        guard("NGramModel.fit", || {
            let order = match usize::try_from(order) {
                Ok(o) => o,
                Err(_) => {
                    return Err(PyValueError::new_err(format!(
                        "order must be between 1 and {MAX_ORDER}, got {order}"
                    )))
                }
            };
            check_order(order)?;
            let smoothing = Smoothing::parse(smoothing, k)?;
            let words = Words::new(vocab.get().core().clone())?;
            let mut counter = Counter::new(words, order)?;
            if let Ok(text) = source.downcast::<PyString>() {
                let text = text.to_str()?;
                py.allow_threads(|| counter.add_text(text, &mut interrupt_poller(1)))?;
            } else if let Ok(t) = source.extract::<PyTensor>() {
                let ids = tensor_ids(&t.0)?;
                py.allow_threads(|| counter.add_ids(&ids, &mut interrupt_poller(1)))?;
            } else {
                let items = source.try_iter().map_err(|_| {
                    PyTypeError::new_err(format!(
                        "fit() takes text (str), ids (a tensor) or an iterable of str, got {}",
                        source
                            .get_type()
                            .name()
                            .map_or_else(|_| "?".to_string(), |n| n.to_string())
                    ))
                })?;
                let mut batch = String::new();
                for item in items {
                    let item = item?;
                    let s = item.downcast::<PyString>().map_err(|_| {
                        PyTypeError::new_err(format!(
                            "fit() reads an iterable of str (lines), got an item of type {}",
                            item.get_type()
                                .name()
                                .map_or_else(|_| "?".to_string(), |n| n.to_string())
                        ))
                    })?;
                    let s = s.to_str()?;
                    batch.push_str(s);
                    if !s.ends_with('\n') {
                        batch.push('\n');
                    }
                    if batch.len() >= FIT_BATCH_BYTES {
                        py.allow_threads(|| counter.add_text(&batch, &mut interrupt_poller(1)))?;
                        batch.clear();
                        py.check_signals()?;
                    }
                }
                py.allow_threads(|| counter.add_text(&batch, &mut interrupt_poller(1)))?;
            }
            let inner =
                py.allow_threads(move || NGramModel::from_counts(counter.finish()?, smoothing))?;
            Ok(PyNGramModel { inner })
        })
    }

    /// Reads an ARPA file (rustrnn's or another toolkit's).
    ///
    /// Args:
    ///     path: str or os.PathLike.
    ///     level: 'char' or 'word': how text is tokenized into the file's
    ///         words. None: what the file's rustrnn comment says, else 'word'.
    ///     lower: lower-case text before scoring it. None: the file's
    ///         rustrnn comment, else False.
    ///
    /// Raises:
    ///     OSError: the file cannot be read (naming it).
    ///     ValueError: the file is not a well-formed ARPA file (naming it and
    ///         the line), or its words do not fit `level`.
    #[staticmethod]
    #[pyo3(signature = (path, level=None, lower=None))]
    fn load_arpa(
        py: Python<'_>,
        path: PathBuf,
        level: Option<&str>,
        lower: Option<bool>,
    ) -> PyResult<Self> {
        guard("NGramModel.load_arpa", || {
            let opts = LoadOptions {
                level: level_arg(level)?,
                lower,
            };
            let inner =
                py.allow_threads(|| arpa::load_arpa(&path, opts, &mut interrupt_poller(1)))?;
            Ok(PyNGramModel { inner })
        })
    }

    /// Writes the model as an ARPA file (log10 probabilities and backoff
    /// weights), atomically: a temporary file beside `path` is fsynced, then
    /// renamed over it.
    ///
    /// Args:
    ///     path: str or os.PathLike.
    fn save_arpa(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        guard("NGramModel.save_arpa", || {
            py.allow_threads(|| self.inner.save_arpa(&path, &mut interrupt_poller(1)))?;
            Ok(())
        })
    }

    /// The log-probability of each token of a stream read after a line break.
    ///
    /// Args:
    ///     text_or_ids: text (each `"\n"` is `</s>`, and the next line begins
    ///         with `<s>`) or 1-D vocabulary ids.
    ///     log10: log10 instead of natural logs.
    ///
    /// Returns:
    ///     A float64 tensor `(m,)`, one value per token.
    #[pyo3(signature = (text_or_ids, log10=false))]
    fn stream_scores(
        &self,
        py: Python<'_>,
        text_or_ids: TextOrIds,
        log10: bool,
    ) -> PyResult<PyTensor> {
        guard("NGramModel.stream_scores", || {
            let m = &self.inner;
            let mut out = py.allow_threads(|| -> Result<Vec<f64>> {
                match Owned::new(m, text_or_ids)? {
                    Owned::Text(s) => m.text_stream_scores(&s, &mut interrupt_poller(1)),
                    Owned::Words(w) => m.stream_scores(&w, &mut interrupt_poller(1)),
                }
            })?;
            if !log10 {
                out.iter_mut().for_each(|x| *x *= std::f64::consts::LN_10);
            }
            Ok(PyTensor(Tensor::f_from_slice(&out).map_err(Error::from)?))
        })
    }

    /// The log-probability of each line as sentences (KenLM's `score`).
    ///
    /// Args:
    ///     lines: a list of lines, each text (several lines in one str are
    ///         summed) or 1-D vocabulary ids.
    ///     bos: begin each sentence with `<s>`.
    ///     eos: end each sentence with `</s>` (scored).
    ///     log10: log10 (as KenLM returns) instead of natural logs.
    ///
    /// Returns:
    ///     list[float], one per line.
    #[pyo3(signature = (lines, bos=true, eos=true, log10=false))]
    fn score(
        &self,
        py: Python<'_>,
        lines: Vec<TextOrIds>,
        bos: bool,
        eos: bool,
        log10: bool,
    ) -> PyResult<Vec<f64>> {
        guard("NGramModel.score", || {
            let m = &self.inner;
            let scale = if log10 { 1.0 } else { std::f64::consts::LN_10 };
            let out = py.allow_threads(|| -> Result<Vec<f64>> {
                let mut poll = interrupt_poller(1);
                lines
                    .into_iter()
                    .map(|l| Ok(m.score(Owned::new(m, l)?.input(), bos, eos, &mut poll)? * scale))
                    .collect()
            })?;
            Ok(out)
        })
    }

    /// Every token of a line with its score, `(token, log_prob, ngram_order, oov)`.
    ///
    /// Args:
    ///     line: text (several lines are read one after another) or 1-D ids.
    ///     bos, eos, log10: as for `score`.
    #[pyo3(signature = (line, bos=true, eos=true, log10=false))]
    fn full_scores(
        &self,
        py: Python<'_>,
        line: TextOrIds,
        bos: bool,
        eos: bool,
        log10: bool,
    ) -> PyResult<Vec<(String, f64, u8, bool)>> {
        guard("NGramModel.full_scores", || {
            let m = &self.inner;
            let scale = if log10 { 1.0 } else { std::f64::consts::LN_10 };
            let out = py.allow_threads(|| -> Result<_> {
                let owned = Owned::new(m, line)?;
                Ok(m.full_scores(owned.input(), bos, eos)?
                    .into_iter()
                    .map(|(t, s)| (t, s.log10 * scale, s.order, s.oov))
                    .collect())
            })?;
            Ok(out)
        })
    }

    /// KenLM's corpus figures over lines.
    ///
    /// Args:
    ///     lines: a list of lines (text, several lines to a str allowed, or ids).
    ///     bos, eos: as for `score`.
    ///
    /// Returns:
    ///     `(tokens, oovs, log_prob, oov_log_prob)`, natural logs.
    #[pyo3(signature = (lines, bos=true, eos=true))]
    fn evaluate(
        &self,
        py: Python<'_>,
        lines: Vec<TextOrIds>,
        bos: bool,
        eos: bool,
    ) -> PyResult<(u64, u64, f64, f64)> {
        guard("NGramModel.evaluate", || {
            let m = &self.inner;
            let e = py.allow_threads(|| -> Result<Evaluation> {
                let mut acc = Evaluation::default();
                let mut poll = interrupt_poller(1);
                for l in lines {
                    m.evaluate(Owned::new(m, l)?.input(), bos, eos, &mut acc, &mut poll)?;
                }
                Ok(acc)
            })?;
            let ln = std::f64::consts::LN_10;
            Ok((e.tokens, e.oovs, e.log10_prob * ln, e.log10_prob_oovs * ln))
        })
    }

    /// The natural-log distribution of the next word after a context, over
    /// `words()` (`<s>` is -inf).
    ///
    /// Args:
    ///     context: text or 1-D ids, read after a line break when `bos`.
    ///     bos: begin the context with `<s>`.
    ///
    /// Returns:
    ///     A float64 tensor `(len(words()),)`.
    #[pyo3(signature = (context, bos=true))]
    fn next_log_probs(&self, py: Python<'_>, context: TextOrIds, bos: bool) -> PyResult<PyTensor> {
        guard("NGramModel.next_log_probs", || {
            let m = &self.inner;
            let d = py.allow_threads(|| -> Result<Vec<f64>> {
                let words = match context {
                    TextOrIds::Text(s) => m.stream_words(&s)?,
                    TextOrIds::Ids(ids) => m.words().map_ids(&ids)?,
                };
                let state = m.advance(m.begin(bos), &words);
                Ok(m.distribution(&state).into_iter().map(f64::ln).collect())
            })?;
            Ok(PyTensor(Tensor::f_from_slice(&d).map_err(Error::from)?))
        })
    }

    /// Samples continuations of a prompt with rustrnn's sampler.
    ///
    /// Args:
    ///     prompt: text or 1-D ids, read after a line break.
    ///     max_tokens: tokens per sample at most (>= 0).
    ///     num_samples: samples, drawn as one batch (>= 1).
    ///     stop: vocabulary ids that end a sample (kept in it).
    ///     temperature, top_k, top_p, greedy: as for `rustrnn.sample`.
    ///     generator: a CPU `torch.Generator`, or None for torch's default one.
    ///
    /// Returns:
    ///     One list of vocabulary ids per sample.
    #[pyo3(signature = (prompt, max_tokens, num_samples=1, stop=vec![], temperature=1.0,
                        top_k=None, top_p=None, greedy=false, generator=None))]
    #[allow(clippy::too_many_arguments)]
    fn generate(
        &self,
        py: Python<'_>,
        prompt: TextOrIds,
        max_tokens: i64,
        num_samples: i64,
        stop: Vec<i64>,
        temperature: f64,
        top_k: Option<i64>,
        top_p: Option<f64>,
        greedy: bool,
        generator: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Vec<Vec<i64>>> {
        guard("NGramModel.generate", || {
            let m = &self.inner;
            let opts = GenerateOptions {
                max_tokens: usize_arg("max_tokens", max_tokens, 0)?,
                num_samples: usize_arg("num_samples", num_samples, 1)?,
                stop: m.words().map_ids(&stop)?,
            };
            let sample = SampleOptions::new(temperature, top_k, top_p, greedy)?;
            let prompt = Owned::new(m, prompt)?;
            let out = with_rng(py, "generate", generator, true, move |rng| {
                let words = match &prompt {
                    Owned::Words(w) => w.clone(),
                    Owned::Text(s) => m.stream_words(s)?,
                };
                let drawn = m.generate(&words, &opts, &sample, rng, &mut interrupt_poller(1))?;
                Ok(drawn
                    .into_iter()
                    .map(|s| {
                        s.into_iter()
                            .filter_map(|w| m.words().vocab_id(w))
                            .collect()
                    })
                    .collect())
            })?;
            Ok(out)
        })
    }

    /// The order N.
    #[getter]
    fn order(&self) -> usize {
        self.inner.order()
    }

    /// 'modified_kneser_ney', 'kneser_ney', 'add_k', or None for a model read
    /// from an ARPA file.
    #[getter]
    fn smoothing(&self) -> Option<&'static str> {
        self.inner.smoothing().map(Smoothing::name)
    }

    /// add-k's k, or None.
    #[getter]
    fn k(&self) -> Option<f64> {
        match self.inner.smoothing() {
            Some(Smoothing::AddK(k)) => Some(k),
            _ => None,
        }
    }

    /// The Kneser-Ney discounts `(D1, D2, D3+)` of each order (one value
    /// three times for 'kneser_ney'); empty for add-k and loaded models.
    #[getter]
    fn discounts(&self) -> Vec<(f64, f64, f64)> {
        self.inner
            .discounts()
            .iter()
            .map(|d| (d[0], d[1], d[2]))
            .collect()
    }

    /// The number of n-grams of each order, as the ARPA file's header lists them.
    #[getter]
    fn counts(&self) -> Vec<usize> {
        self.inner.counts()
    }

    /// The model's words by id: `<unk>`, `<s>`, `</s>`, then the others.
    fn words(&self) -> Vec<String> {
        self.inner.words().words().to_vec()
    }

    /// The Vocab that reads text into the model's words (a new object).
    fn vocab<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        guard("NGramModel.vocab", || {
            // PyVocab has no constructor from a core Vocab outside its module; its
            // own validated JSON reader is the one door in.
            py.get_type::<PyVocab>()
                .call_method1("from_json", (self.inner.vocab().to_json(),))
        })
    }

    fn __repr__(&self) -> String {
        let m = &self.inner;
        let smoothing = m.smoothing().map_or("arpa", Smoothing::name);
        format!(
            "NGramModel(order={}, smoothing='{smoothing}', level='{}', counts={:?})",
            m.order(),
            m.vocab().level().name(),
            m.counts()
        )
    }
}
