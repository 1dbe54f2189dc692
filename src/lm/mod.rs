//! Text generation: a language model (embedding -> recurrent stack -> linear
//! head) run token by token entirely in Rust, with no autograd graph kept.
//!
//! How the next token is chosen is the caller's: `generate` hands each step's
//! logits to a `draw` function (multinomial sampling, greedy argmax, ...).

mod draw;
mod fused;
#[cfg(test)]
mod tests;

use tch::{Kind, Tensor};

use crate::error::{Error, Result};
use crate::rnn::check::check_weights;
use crate::rnn::product::Product;
use crate::rnn::step::{StepState, Stepper};
use crate::rnn::{stack, RnnConfig};
use crate::sampler::{sample_logits, SampleOptions, UniformSource};

/// The parameters of a language model, borrowed from the Python module.
pub struct LmWeights<'a> {
    /// `[V, E]`.
    pub embedding: &'a Tensor,
    /// The stack's parameters in torch's flat order.
    pub stack: &'a [Tensor],
    /// `[V, H]`.
    pub head_weight: &'a Tensor,
    pub head_bias: Option<&'a Tensor>,
}

pub struct GenerateOptions {
    pub max_tokens: i64,
    pub num_samples: i64,
    /// Ids that end a sample; the stop id itself is kept, nothing after it.
    pub stop: Vec<i64>,
}

/// Generated ids `[num_samples, steps]` and, per sample, how many are valid
/// (up to and including its stop id).
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

fn check(cfg: &RnnConfig, w: &LmWeights, prompt: &Tensor, opts: &GenerateOptions) -> Result<()> {
    check_weights(cfg, w.stack)?;
    if cfg.bidirectional {
        return Err(Error::value(
            "a bidirectional stack cannot generate: its reverse pass needs the future",
        ));
    }
    if prompt.dim() != 1 || prompt.size()[0] == 0 {
        return Err(Error::value(format!(
            "the prompt must be a non-empty 1-D tensor of ids, got shape {:?}",
            prompt.size()
        )));
    }
    if prompt.f_kind()? != Kind::Int64 {
        return Err(Error::Type("the prompt ids must be an int64 tensor".into()));
    }
    let vocab = w.embedding.size()[0];
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
    Ok(())
}

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
    mut draw: impl FnMut(&Tensor, i64) -> Result<Tensor>,
    mut interrupted: impl FnMut() -> bool,
) -> Result<Generated> {
    let _guard = tch::no_grad_guard();
    check(cfg, w, prompt, opts)?;
    let n = opts.num_samples;
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
    let mut state = StepState {
        h: widen(&h_n)?,
        c: match &c_n {
            Some(c) => widen(c)?,
            None => Vec::new(),
        },
    };
    let stepper = Stepper::new(cfg, w.stack)?;
    let head = Product::new(w.head_weight, w.head_bias.map(Tensor::shallow_clone))?;
    let logits = head.apply(&last)?;
    let mut logits = logits
        .f_expand([n, logits.size()[1]], false)?
        .f_contiguous()?;
    let mut out: Vec<Tensor> = Vec::with_capacity(opts.max_tokens as usize);
    let mut lengths = vec![-1i64; n as usize];
    let stop = Tensor::f_from_slice(&opts.stop)?.f_to_device(device)?;
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
        out.push(next.shallow_clone());
        if !opts.stop.is_empty() {
            let hit = Vec::<bool>::try_from(
                Tensor::f_isin(&next, &stop, false, false)?.f_to_device(tch::Device::Cpu)?,
            )?;
            for (len, h) in lengths.iter_mut().zip(hit) {
                if *len < 0 && h {
                    *len = step + 1;
                }
            }
            if lengths.iter().all(|l| *l >= 0) {
                break;
            }
        }
        if step + 1 == opts.max_tokens {
            break;
        }
        let x = w.embedding.f_index_select(0, &next)?;
        let top = stepper.step(&x, &mut state)?;
        logits = head.apply(&top)?;
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
/// [`sample_logits`]) from `rng`'s uniforms, one per row and token. float32
/// models on the CPU run on the fused kernels (`crate::kernel`), others on
/// libtorch ops; both draw the same way from the same uniforms.
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
    generate(
        cfg,
        w,
        prompt,
        opts,
        |logits, _| sample_logits(logits, sample, rng),
        interrupted,
    )
}

/// Uniforms drawn up front (`[steps, N]`, float64), handed out one row per
/// token: how an explicit `torch.Generator` reaches a loop that runs without
/// Python.
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
