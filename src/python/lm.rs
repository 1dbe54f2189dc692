//! Binding for text generation (`crate::lm::generate_sampled`).

use pyo3::prelude::*;

use super::guard::guard;
use pyo3_tch::PyTensor;

use super::gil::interrupt_poller;
use super::model::OwnedWeights;
use super::rnn::PyRnnSpec;
use super::sampler::with_rng;
use super::vocab::PyVocab;
use crate::lm::{self, GenerateOptions, Stop};
use crate::sampler::SampleOptions;

/// Generates `num_samples` continuations of `prompt` in one batch, in Rust,
/// without the GIL and without autograd.
///
/// Args:
///     spec: the stack's RnnSpec.
///     embedding: `(V, E)` embedding matrix.
///     stack_weights: the stack's parameters in torch's flat order.
///     head_weight, head_bias: the `(V', H)` output layer, `V' <= V` (bias may be None).
///     prompt: 1-D int64 ids.
///     max_tokens, num_samples: how many tokens at most, how many continuations.
///     stop: ids that end a continuation (kept in it).
///     stop_strings: strings that end a continuation at the token that
///         completes one in its decoded text (kept in it).
///     vocab: the Vocab the strings are matched with (None without strings).
///     temperature, top_k, top_p, greedy: how each token is drawn.
///     generator: a CPU `torch.Generator` for the uniforms, or None to draw
///         from torch's default generator.
///
/// Returns:
///     `(ids (num_samples, steps), lengths)`: each row is valid up to its length.
///
/// Raises:
///     RuntimeError: the embedding, stack and head do not fit together (as
///         forward would raise), or memory for num_samples rows (or for the
///         tokens so far) cannot be had.
///     IndexError: a prompt or stop id outside the vocabulary.
///     ValueError: a bad sampling option, max_tokens < 0, num_samples < 1, an
///         empty stop string.
///     KeyboardInterrupt: Ctrl-C during the loop.
#[pyfunction]
#[pyo3(signature = (spec, embedding, stack_weights, head_weight, head_bias, prompt, max_tokens,
                    num_samples, stop, stop_strings, vocab, temperature, top_k, top_p, greedy,
                    generator))]
#[allow(clippy::too_many_arguments)]
pub fn generate(
    py: Python<'_>,
    spec: &PyRnnSpec,
    embedding: PyTensor,
    stack_weights: Vec<PyTensor>,
    head_weight: PyTensor,
    head_bias: Option<PyTensor>,
    prompt: PyTensor,
    max_tokens: i64,
    num_samples: i64,
    stop: Vec<i64>,
    stop_strings: Vec<String>,
    vocab: Option<Py<PyVocab>>,
    temperature: f64,
    top_k: Option<i64>,
    top_p: Option<f64>,
    greedy: bool,
    generator: Option<Bound<'_, PyAny>>,
) -> PyResult<(PyTensor, Vec<i64>)> {
    guard("generate", || {
        let cfg = spec.config().clone();
        let sample = SampleOptions::new(temperature, top_k, top_p, greedy)?;
        let weights = OwnedWeights::new(embedding, stack_weights, head_weight, head_bias);
        let prompt = prompt.0;
        let out = with_rng(py, "generate", generator, true, move |rng| {
            // A frozen pyclass: its core is read without the GIL.
            let stop = Stop::new(stop, stop_strings, vocab.as_ref().map(|v| v.get().core()))?;
            let opts = GenerateOptions {
                max_tokens,
                num_samples,
                stop,
            };
            lm::generate_sampled(
                &cfg,
                &weights.view(),
                &prompt,
                &opts,
                &sample,
                rng,
                interrupt_poller(16),
            )
        })?;
        Ok((PyTensor(out.ids), out.lengths))
    })
}
