//! The language model (embedding -> recurrent stack -> head, linear or
//! adaptive softmax (`adaptive`)): its definition (`model`: config, parameter
//! names and shapes, the rules, the weights by name), the linear head and its
//! loss computed in chunks of rows (`cross_entropy`), scoring many lines
//! (`score`), and text generation, here: the model run token by token
//! entirely in Rust, with no autograd graph kept.
//!
//! How the next token is chosen is the caller's: `generate` hands each step's
//! logits to a `draw` function (multinomial sampling, greedy argmax, ...);
//! for an adaptive head they are its log-probabilities (see `head`).
//! When a sample ends is [`Stop`]'s rule (ids, or strings in the decoded text).
//! Beam search (`beam`) is the deterministic alternative. Both run float32
//! CPU models with a linear head on the fused kernels (`fused`: the whole
//! token loop on a team of threads) and every other model on libtorch ops,
//! with the same results.
//!
//! Everything the loops index is validated before they start ([`check_model`]),
//! and the output grows as tokens come: `max_tokens` is a bound, not a size
//! to reserve (a run may stop, or be interrupted, long before it).

pub mod adaptive;
pub mod beam;
pub mod cross_entropy;
mod draw;
mod fused;
mod head;
pub mod model;
pub mod score;
pub mod stop;
#[cfg(test)]
mod tests;

use tch::{Kind, Tensor};

use self::head::HeadOp;
pub use self::model::{HeadConfig, HeadParams, HeadWeights, LmConfig, LmParams, LmWeights};
use self::stop::RowText;
pub use self::stop::Stop;
use crate::dtype::{device_name, dtype_name};
use crate::error::{Error, Result};
use crate::kernel::team::{no_memory, try_vec};
use crate::rnn::check::check_weights;
use crate::rnn::token::{TokenState, TokenStepper};
use crate::rnn::{stack, RnnConfig};
use crate::sampler::{chain, sample_deferred, sample_validated, SampleOptions, UniformSource};

pub struct GenerateOptions<'a> {
    pub max_tokens: i64,
    pub num_samples: i64,
    /// What ends a sample; the token that ends it is kept, nothing after it.
    pub stop: Stop<'a>,
}

/// Generated ids `[num_samples, steps]` and, per sample, how many are valid
/// (up to and including the token that stopped it).
pub struct Generated {
    pub ids: Tensor,
    pub lengths: Vec<i64>,
}

/// Runs the prompt `[P]` once through the stack from zero states; returns the
/// top layer's last output `[1, H_out]` and the final `h_n`, `c_n`.
fn prime(
    cfg: &RnnConfig,
    w: &LmWeights,
    prompt: &Tensor,
) -> Result<(Tensor, Tensor, Option<Tensor>)> {
    let x = w.embedding.f_index_select(0, prompt)?.f_unsqueeze(1)?;
    // The prompt is laid out time-major whatever layout the stack was built for.
    let cfg = RnnConfig {
        batch_first: false,
        ..cfg.clone()
    };
    let out = stack::forward(&cfg, &x, None, None, None, w.stack, false, false)?;
    let last = out.output.f_select(0, prompt.size()[0] - 1)?;
    Ok((last, out.h_n, out.c_n))
}

/// Checks that the embedding, the stack and the head fit together as
/// `forward` needs them to (RuntimeError, as forward raises, for a shape;
/// ValueError for a dtype), and that each drawn token can be fed back: the
/// head draws no more tokens than the embedding has rows. Returns the
/// vocabulary size (embedding rows) and the head's outputs.
pub(crate) fn check_model(cfg: &RnnConfig, w: &LmWeights) -> Result<(i64, i64)> {
    check_weights(cfg, w.stack)?;
    let (kind, device) = (w.stack[0].f_kind()?, w.stack[0].device());
    let emb = w.embedding.size();
    let &[vocab, width] = emb.as_slice() else {
        return Err(Error::shape(format!(
            "the embedding must be a 2-D (vocabulary, width) matrix, got shape {emb:?}"
        )));
    };
    if width != cfg.input_size {
        return Err(Error::shape(format!(
            "the embedding's rows are {width} wide but the stack's input_size is {}: \
             input.size(-1) must be equal to input_size. Expected {}, got {width}",
            cfg.input_size, cfg.input_size
        )));
    }
    if vocab == 0 {
        return Err(Error::shape(
            "the embedding has no rows: the vocabulary is empty",
        ));
    }
    let top = cfg.real_hidden_size();
    let outputs = match w.head {
        HeadWeights::Linear {
            weight,
            bias,
            projection,
        } => {
            let width = match projection {
                Some(p) => check_projection(p, top)?,
                None => top,
            };
            check_linear_head(weight, bias, width, vocab)?
        }
        HeadWeights::Adaptive(a) => {
            let (width, outputs) = (a.in_features(), a.n_classes());
            if width != top {
                return Err(Error::shape(format!(
                    "the adaptive head takes inputs {width} wide but the stack's output is \
                     {top} wide"
                )));
            }
            if outputs > vocab {
                return Err(Error::shape(format!(
                    "the adaptive head has {outputs} classes (the tokens it draws) but the \
                     embedding has {vocab} rows: every drawn token is fed back through the \
                     embedding"
                )));
            }
            outputs
        }
    };
    let named = w.head.named();
    let parts = std::iter::once(("the embedding", w.embedding))
        .chain(named.iter().map(|(name, t)| (name.as_str(), *t)));
    for (name, t) in parts {
        if t.f_kind()? != kind {
            return Err(Error::value(format!(
                "{name} is {} but the stack's weights are {}: the model must have one dtype",
                dtype_name(t.f_kind()?),
                dtype_name(kind)
            )));
        }
        if t.device() != device {
            return Err(Error::shape(format!(
                "{name} is on {} but the stack's weights are on {}",
                device_name(t.device()),
                device_name(device)
            )));
        }
    }
    Ok((vocab, outputs))
}

/// The projection `[K, top]` before a linear head; returns `K`, the width
/// the head reads.
fn check_projection(p: &Tensor, top: i64) -> Result<i64> {
    match p.size().as_slice() {
        &[width, cols] if cols == top => Ok(width),
        shape => Err(Error::shape(format!(
            "projection.weight must be a 2-D (width, {top}) matrix, as the stack's output is \
             {top} wide, got shape {shape:?}"
        ))),
    }
}

/// The linear head against the stack's output width `top` and the
/// embedding's `vocab` rows; returns its outputs.
fn check_linear_head(weight: &Tensor, bias: Option<&Tensor>, top: i64, vocab: i64) -> Result<i64> {
    let head = weight.size();
    let &[outputs, cols] = head.as_slice() else {
        return Err(Error::shape(format!(
            "head.weight must be a 2-D (outputs, {top}) matrix, got shape {head:?}"
        )));
    };
    if cols != top {
        return Err(Error::shape(format!(
            "head.weight has shape {head:?} but its input (the stack's output, or the \
             projection's) is {top} wide: head.weight must be ({outputs}, {top})"
        )));
    }
    if outputs == 0 || outputs > vocab {
        return Err(Error::shape(format!(
            "head.weight has {outputs} rows (the tokens it draws) but the embedding has {vocab}: \
             every drawn token is fed back through the embedding, so the head needs \
             between 1 and {vocab} rows"
        )));
    }
    if let Some(bias) = bias {
        if bias.size() != [outputs] {
            return Err(Error::shape(format!(
                "head.bias has shape {:?} but head.weight has {outputs} rows: \
                 head.bias must have shape [{outputs}]",
                bias.size()
            )));
        }
    }
    Ok(outputs)
}

fn check(cfg: &RnnConfig, w: &LmWeights, prompt: &Tensor, opts: &GenerateOptions) -> Result<()> {
    if cfg.bidirectional {
        return Err(Error::value(
            "a bidirectional stack cannot generate: its reverse pass needs the future",
        ));
    }
    let (vocab, outputs) = check_model(cfg, w)?;
    if prompt.dim() != 1 || prompt.size()[0] == 0 {
        return Err(Error::value(format!(
            "the prompt must be a non-empty 1-D tensor of ids, got shape {:?}",
            prompt.size()
        )));
    }
    if prompt.f_kind()? != Kind::Int64 {
        return Err(Error::Type("the prompt ids must be an int64 tensor".into()));
    }
    let (lo, hi) = (
        prompt.f_min()?.f_int64_value(&[])?,
        prompt.f_max()?.f_int64_value(&[])?,
    );
    if lo < 0 || hi >= vocab {
        return Err(Error::Index(format!(
            "prompt id {} is outside the vocabulary of size {vocab}",
            if lo < 0 { lo } else { hi }
        )));
    }
    if opts.max_tokens < 0 {
        return Err(Error::value(format!(
            "max_tokens must be >= 0, got {}",
            opts.max_tokens
        )));
    }
    if opts.num_samples < 1 {
        return Err(Error::value(format!(
            "num_samples must be >= 1, got {}",
            opts.num_samples
        )));
    }
    opts.stop.check(vocab, outputs)
}

/// Grows `out` for `more` elements, or an error (RuntimeError) when the
/// memory cannot be had: generated tokens are kept as they come, since a
/// run may stop (or be stopped) long before `max_tokens`.
fn grow<T>(out: &mut Vec<T>, more: usize) -> Result<()> {
    out.try_reserve(more)
        .map_err(|e| no_memory::<T>(out.len().saturating_add(more), e))
}

/// Tokens drawn between two looks at the stop rule on a device other than the
/// CPU, each look a copy to the host that waits for the device.
pub const STOP_CHECK_EVERY: usize = 16;

/// Primes the state with `prompt`, then draws `max_tokens` tokens for
/// `num_samples` continuations at once (one batch).
///
/// `draw(logits [N, V], step)` returns the next ids `[N]`; `interrupted()` is
/// polled every token so a long generation can be stopped.
pub fn generate(
    cfg: &RnnConfig,
    w: &LmWeights,
    prompt: &Tensor,
    opts: &GenerateOptions,
    draw: impl FnMut(&Tensor, i64) -> Result<Tensor>,
    interrupted: impl FnMut() -> bool,
) -> Result<Generated> {
    // Off the CPU, reading the drawn ids back waits for the device: the stop rule
    // looks at them every `STOP_CHECK_EVERY` tokens there, and after every one here.
    let check_every = if w.embedding.device() == tch::Device::Cpu {
        1
    } else {
        STOP_CHECK_EVERY
    };
    generate_checking(cfg, w, prompt, opts, draw, interrupted, check_every)
}

/// [`generate`] looking at the stop rule after every `check_every` tokens (and
/// the last): the same result for any `check_every`, with more tokens drawn
/// (and dropped) for larger ones.
pub(crate) fn generate_checking(
    cfg: &RnnConfig,
    w: &LmWeights,
    prompt: &Tensor,
    opts: &GenerateOptions,
    mut draw: impl FnMut(&Tensor, i64) -> Result<Tensor>,
    mut interrupted: impl FnMut() -> bool,
    check_every: usize,
) -> Result<Generated> {
    let _guard = tch::no_grad_guard();
    check(cfg, w, prompt, opts)?;
    let n = opts.num_samples;
    let rows = usize::try_from(n).map_err(|_| Error::value("num_samples is too large"))?;
    let per_row = |e: Error| Error::shape(format!("num_samples = {rows}: {e}"));
    let mut lengths = try_vec(-1i64, rows).map_err(per_row)?;
    let mut texts = if opts.stop.is_empty() {
        Vec::new()
    } else {
        try_vec(RowText::default(), rows).map_err(per_row)?
    };
    let device = w.embedding.device();
    let prompt = prompt.f_to_device(device)?;
    // The prompt is the same for every sample: run it once as a sequence, then
    // widen the state to `n` rows and step token by token.
    let (last, h_n, c_n) = prime(cfg, w, &prompt)?;
    let widen = |t: &Tensor| -> Result<Vec<Tensor>> {
        let s = t.size();
        let wide = t.f_expand([s[0], n, s[2]], false)?.f_contiguous()?;
        Ok(wide.f_unbind(0)?)
    };
    let mut state = TokenState {
        h: widen(&h_n)?,
        c: match &c_n {
            Some(c) => widen(c)?,
            None => Vec::new(),
        },
    };
    let stepper = TokenStepper::new(cfg, w.stack)?;
    let head = HeadOp::new(&w.head)?;
    let logits = head.scores(&last)?;
    let mut logits = logits
        .f_expand([n, logits.size()[1]], false)?
        .f_contiguous()?;
    let mut out: Vec<Tensor> = Vec::new();
    let mut stopped = 0;
    let mut checked = 0;
    for step in 0..opts.max_tokens {
        if interrupted() {
            return Err(Error::Interrupted);
        }
        let next = draw(&logits, step)?;
        if next.size() != [n] {
            return Err(Error::shape(format!(
                "draw must return {n} ids, got shape {:?}",
                next.size()
            )));
        }
        grow(&mut out, 1)?;
        out.push(next.shallow_clone());
        let last = step + 1 == opts.max_tokens;
        if !opts.stop.is_empty() && (out.len() - checked >= check_every || last) {
            // The tokens drawn since the last check, `[n, k]`, in one copy to the host.
            let block = out.get(checked..).unwrap_or_default();
            let k = block.len();
            let ids = Vec::<i64>::try_from(
                Tensor::f_stack(block, 1)?
                    .f_to_device(tch::Device::Cpu)?
                    .f_reshape([-1])?,
            )?;
            for (r, (len, text)) in lengths.iter_mut().zip(texts.iter_mut()).enumerate() {
                for j in 0..k {
                    let id = ids.get(r * k + j).copied().unwrap_or(-1);
                    if *len < 0 && opts.stop.hit(text, id) {
                        *len = (checked + j + 1) as i64;
                        stopped += 1;
                    }
                }
            }
            checked = out.len();
            if stopped == rows {
                // Drawn past the last row's stop while the check waited: dropped, so the
                // result is what a check after every token gives.
                let longest = lengths.iter().copied().max().unwrap_or(0);
                out.truncate(usize::try_from(longest).unwrap_or(0));
                break;
            }
        }
        if last {
            break;
        }
        let x = w.embedding.f_index_select(0, &next)?;
        let top = stepper.step(&x, &mut state)?;
        logits = head.scores(&top)?;
    }
    let steps = out.len() as i64;
    for len in lengths.iter_mut().filter(|l| **l < 0) {
        *len = steps;
    }
    let ids = if out.is_empty() {
        Tensor::f_empty([n, 0], (Kind::Int64, device))?
    } else {
        Tensor::f_stack(&out, 1)?
    };
    Ok(Generated { ids, lengths })
}

/// [`generate`] with each token drawn by `sample`'s rule (see
/// [`crate::sampler::sample_logits`]) from `rng`'s uniforms, one per row and token. float32
/// models on the CPU with a linear head run on the fused kernels
/// (`crate::kernel`), others on libtorch ops; both draw the same way from the
/// same uniforms.
pub fn generate_sampled(
    cfg: &RnnConfig,
    w: &LmWeights,
    prompt: &Tensor,
    opts: &GenerateOptions,
    sample: &SampleOptions,
    rng: &mut dyn UniformSource,
    interrupted: impl FnMut() -> bool,
) -> Result<Generated> {
    sample.validate()?;
    if fused::supports(cfg, w) {
        let _guard = tch::no_grad_guard();
        check(cfg, w, prompt, opts)?;
        return fused::generate(cfg, w, prompt, opts, sample, rng, interrupted);
    }
    if !sample.uses_chain() {
        if w.embedding.device() != tch::Device::Cpu {
            return generate_deferred(cfg, w, prompt, opts, sample, rng, interrupted);
        }
        return generate(
            cfg,
            w,
            prompt,
            opts,
            |logits, _| sample_validated(logits, sample, rng), // validated above
            interrupted,
        );
    }
    // The tokens each row has seen, for the penalties: the prompt, then what
    // it drew (each draw adds its token).
    let ids = Vec::<i64>::try_from(prompt.f_to_device(tch::Device::Cpu)?)?;
    let rows = usize::try_from(opts.num_samples).unwrap_or(0);
    let rows = if sample.penalties.is_off() { 0 } else { rows };
    let mut seen = try_vec(chain::Seen::new(&ids), rows)
        .map_err(|e| Error::shape(format!("num_samples = {rows}: {e}")))?;
    generate(
        cfg,
        w,
        prompt,
        opts,
        |logits, _| chain::sample_rows_seen(logits, &mut seen, sample, rng, true),
        interrupted,
    )
}

/// Uniforms drawn up front (`[steps, N]`, float64), handed out one row per
/// token: a fixed table for tests that compare two paths on the same draws.
pub struct Pregenerated {
    table: Tensor,
    next: i64,
}

impl Pregenerated {
    pub fn new(table: Tensor) -> Self {
        Pregenerated { table, next: 0 }
    }
}

impl Pregenerated {
    /// The next `take` rows.
    fn rows(&mut self, take: i64) -> Result<Tensor> {
        let rows = self.table.size()[0];
        if self.next + take > rows {
            return Err(Error::shape(format!(
                "the uniform table has only {rows} rows"
            )));
        }
        let out = self.table.f_narrow(0, self.next, take)?;
        self.next += take;
        Ok(out)
    }
}

impl crate::sampler::UniformSource for Pregenerated {
    /// One row of the table, whatever the shape asked for.
    fn uniform(&mut self, shape: &[i64], device: tch::Device) -> Result<Tensor> {
        let row = self.rows(1)?;
        let numel: i64 = shape.iter().product();
        if row.numel() as i64 != numel {
            return Err(Error::shape(format!(
                "the uniform table has rows of {} values, {numel} were asked for",
                row.numel()
            )));
        }
        Ok(row.f_reshape(shape)?.f_to_device(device)?)
    }

    fn uniform_steps(&mut self, steps: i64, rows: i64, device: tch::Device) -> Result<Tensor> {
        let table = self.rows(steps)?;
        if table.size()[1] != rows {
            return Err(Error::shape(format!(
                "the uniform table has rows of {} values, {rows} were asked for",
                table.size()[1]
            )));
        }
        Ok(table.f_to_device(device)?)
    }
}

/// [`generate_sampled`] off the CPU, where reading a value back waits for the
/// device: each token is drawn by [`sample_deferred`], which reads nothing
/// back, and whether any row's logits were not finite is read once, at the
/// end (the same error [`sample_validated`] gives at once).
pub(crate) fn generate_deferred(
    cfg: &RnnConfig,
    w: &LmWeights,
    prompt: &Tensor,
    opts: &GenerateOptions,
    sample: &SampleOptions,
    rng: &mut dyn UniformSource,
    interrupted: impl FnMut() -> bool,
) -> Result<Generated> {
    let mut bad: Option<Tensor> = None;
    let out = generate(
        cfg,
        w,
        prompt,
        opts,
        |logits, _| {
            let (tokens, row_bad) = sample_deferred(logits, sample, rng)?;
            bad = Some(match bad.take() {
                Some(b) => b.f_logical_or(&row_bad)?,
                None => row_bad,
            });
            Ok(tokens)
        },
        interrupted,
    )?;
    if let Some(b) = bad {
        if b.f_int64_value(&[])? != 0 {
            return Err(Error::shape(
                "sample: the logits contain nan or inf, or a row of them is all -inf \
                 (the model's weights or inputs are not finite)",
            ));
        }
    }
    Ok(out)
}
