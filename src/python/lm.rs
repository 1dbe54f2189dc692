//! Binding for text generation (`crate::lm::generate_sampled`).

use pyo3::prelude::*;
use pyo3_tch::PyTensor;

use super::gil::interrupt_poller;
use super::rnn::PyRnnSpec;
use crate::lm::{self, GenerateOptions, LmWeights, Pregenerated};
use crate::sampler::{DefaultGenerator, SampleOptions, UniformSource};

/// Generates `num_samples` continuations of `prompt` in one batch, in Rust,
/// without the GIL and without autograd.
///
/// Args:
///     spec: the stack's RnnSpec.
///     embedding: `(V, E)` embedding matrix.
///     stack_weights: the stack's parameters in torch's flat order.
///     head_weight, head_bias: the `(V, H)` output layer (bias may be None).
///     prompt: 1-D int64 ids.
///     max_tokens, num_samples: how many tokens, how many continuations.
///     stop: ids that end a continuation (kept in it).
///     temperature, top_k, top_p, greedy: how each token is drawn.
///     uniform: `(max_tokens, num_samples)` float64 uniforms from a user's
///         generator, or None to draw from torch's default generator.
///
/// Returns:
///     `(ids (num_samples, steps), lengths)`: each row is valid up to its length.
#[pyfunction]
#[pyo3(signature = (spec, embedding, stack_weights, head_weight, head_bias, prompt, max_tokens,
                    num_samples, stop, temperature, top_k, top_p, greedy, uniform))]
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
    temperature: f64,
    top_k: Option<i64>,
    top_p: Option<f64>,
    greedy: bool,
    uniform: Option<PyTensor>,
) -> PyResult<(PyTensor, Vec<i64>)> {
    let cfg = spec.config().clone();
    let sample = SampleOptions {
        temperature,
        top_k,
        top_p,
        greedy,
    };
    sample.validate()?;
    let opts = GenerateOptions {
        max_tokens,
        num_samples,
        stop,
    };
    let stack: Vec<tch::Tensor> = stack_weights.into_iter().map(|t| t.0).collect();
    let (embedding, head_weight, head_bias) = (embedding.0, head_weight.0, head_bias.map(|t| t.0));
    let (prompt, uniform) = (prompt.0, uniform.map(|t| t.0));
    let out = py.allow_threads(move || {
        let weights = LmWeights {
            embedding: &embedding,
            stack: &stack,
            head_weight: &head_weight,
            head_bias: head_bias.as_ref(),
        };
        let mut rng: Box<dyn UniformSource> = match uniform {
            Some(table) => Box::new(Pregenerated::new(table)),
            None => Box::new(DefaultGenerator),
        };
        lm::generate_sampled(
            &cfg,
            &weights,
            &prompt,
            &opts,
            &sample,
            rng.as_mut(),
            interrupt_poller(16),
        )
    })?;
    Ok((PyTensor(out.ids), out.lengths))
}
