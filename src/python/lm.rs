//! Binding for text generation (`crate::lm::generate_sampled`).

use pyo3::prelude::*;

use super::guard::guard;
use pyo3_tch::PyTensor;

use super::gil::interrupt_poller;
use super::model::PyLanguageModel;
use super::sampler::{with_chain, with_rng};
use crate::lm::beam::BeamOptions;
use crate::lm::{self, GenerateOptions, Stop};
use crate::sampler::SampleOptions;

/// Generates `num_samples` continuations of `prompt` in one batch, in Rust,
/// without the GIL and without autograd.
///
/// Args:
///     model: the `LanguageModel` (its config, Vocab and tensors by name).
///     prompt: 1-D int64 ids.
///     max_tokens, num_samples: how many tokens at most, how many continuations.
///     stop: ids that end a continuation (kept in it).
///     stop_strings: strings that end a continuation at the token that
///         completes one in its decoded text (kept in it), matched with the
///         model's Vocab.
///     temperature, top_k, top_p, greedy, min_p, typical_p, repetition_penalty,
///         frequency_penalty, presence_penalty, no_repeat_ngram_size: how each
///         token is drawn (`sample`'s decoding chain; the penalties look at the
///         prompt and the continuation).
///     generator: a `torch.Generator` for the uniforms, on the CPU or on the
///         model's device, or None to draw from torch's default generator of
///         the model's device.
///
/// Returns:
///     `(ids (num_samples, steps), lengths)`: each row is valid up to its length.
///
/// Raises:
///     ValueError: the model's tensors do not fit its config.
///     RuntimeError: memory for num_samples rows (or for the tokens so far)
///         cannot be had.
///     IndexError: a prompt or stop id outside the vocabulary.
///     ValueError: a bad sampling option, max_tokens < 0, num_samples < 1, an
///         empty stop string.
///     KeyboardInterrupt: Ctrl-C during the loop.
#[pyfunction]
#[pyo3(signature = (model, prompt, max_tokens, num_samples, stop, stop_strings, temperature,
                    top_k, top_p, greedy, generator, *, min_p=None, typical_p=None,
                    repetition_penalty=1.0, frequency_penalty=0.0, presence_penalty=0.0,
                    no_repeat_ngram_size=0))]
#[allow(clippy::too_many_arguments)]
pub fn generate(
    py: Python<'_>,
    model: PyLanguageModel,
    prompt: PyTensor,
    max_tokens: i64,
    num_samples: i64,
    stop: Vec<i64>,
    stop_strings: Vec<String>,
    temperature: f64,
    top_k: Option<i64>,
    top_p: Option<f64>,
    greedy: bool,
    generator: Option<Bound<'_, PyAny>>,
    min_p: Option<f64>,
    typical_p: Option<f64>,
    repetition_penalty: f64,
    frequency_penalty: f64,
    presence_penalty: f64,
    no_repeat_ngram_size: usize,
) -> PyResult<(PyTensor, Vec<i64>)> {
    guard("generate", || {
        let sample = with_chain(
            SampleOptions::new(temperature, top_k, top_p, greedy)?,
            min_p,
            typical_p,
            [repetition_penalty, frequency_penalty, presence_penalty],
            no_repeat_ngram_size,
        )?;
        let prompt = prompt.0;
        let out = with_rng(py, "generate", generator, true, move |rng| {
            let _no_grad = tch::no_grad_guard();
            let params = model.params();
            let stop = Stop::new(stop, stop_strings, Some(model.vocab()))?;
            let opts = GenerateOptions {
                max_tokens,
                num_samples,
                stop,
            };
            lm::generate_sampled(
                &params.rnn,
                &params.weights(),
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

/// Beam search after `prompt`: the best `num_return_sequences` continuations
/// of `num_beams` beams, in Rust without the GIL.
///
/// Args:
///     model: the `LanguageModel`.
///     prompt: 1-D int64 ids.
///     max_tokens: tokens per continuation, at most.
///     stop: ids that end a continuation (kept in it).
///     num_beams, length_penalty, early_stopping, num_return_sequences: as
///         transformers' `generate` takes them.
///
/// Returns:
///     `[(ids, log_prob), ...]`, best first: `log_prob` is log P(ids | prompt).
///
/// Raises:
///     ValueError: a bad option (num_beams < 1, num_return_sequences outside
///         1..num_beams, max_tokens < 0), tensors that do not fit the config.
///     IndexError: a prompt or stop id outside the vocabulary.
///     KeyboardInterrupt: Ctrl-C during the search.
#[pyfunction]
#[pyo3(signature = (model, prompt, max_tokens, stop, num_beams, length_penalty, early_stopping,
                    num_return_sequences))]
#[allow(clippy::too_many_arguments)]
pub fn beam_search(
    py: Python<'_>,
    model: PyLanguageModel,
    prompt: PyTensor,
    max_tokens: i64,
    stop: Vec<i64>,
    num_beams: usize,
    length_penalty: f64,
    early_stopping: bool,
    num_return_sequences: usize,
) -> PyResult<Vec<(Vec<i64>, f64)>> {
    guard("beam_search", || {
        let prompt = prompt.0;
        let opts = BeamOptions {
            num_beams,
            length_penalty,
            early_stopping,
            num_return: num_return_sequences,
        };
        let hyps = py.allow_threads(move || {
            let params = model.params();
            let gen = GenerateOptions {
                max_tokens,
                num_samples: 1,
                stop: Stop::new(stop, Vec::new(), None)?,
            };
            lm::beam::beam_search(
                &params.rnn,
                &params.weights(),
                &prompt,
                &gen,
                &opts,
                interrupt_poller(16),
            )
        })?;
        Ok(hyps.into_iter().map(|h| (h.ids, h.log_prob)).collect())
    })
}
