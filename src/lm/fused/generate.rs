//! Sampled generation on the fused stack ([`FusedStack`]). The prompt's
//! tokens are fed first (the same in every row), then each token runs, on a
//! small team of threads in lock step (libtorch's OpenMP threads, see
//! `kernel::omp`):
//!
//! 1. the output layer over the top layer's state (vocabulary blocks split
//!    between the threads), then a barrier;
//! 2. the draw for each row (rows split), which also writes the drawn
//!    token's embedding into the first layer's input, then a barrier;
//! 3. each layer in turn (hidden-unit blocks split), a barrier after each.
//!
//! The prompt goes through the same kernels: it is short, and a call of
//! libtorch's sequence kernel would cost more than the tokens it saves.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::Mutex;

use tch::{Device, Kind, Tensor};

use super::stack::{rows_buf, FusedStack};
use super::CallerOnly;
use crate::error::{Error, Result};
use crate::kernel::team::{self, split, SharedBuf};
use crate::lm::draw::RowDraw;
use crate::lm::stop::{RowText, Stop};
use crate::lm::{grow, GenerateOptions, Generated, LmWeights};
use crate::rnn::fused::packing::Floats;
use crate::rnn::RnnConfig;
use crate::sampler::chain;
use crate::sampler::{nonfinite_logits, SampleOptions, UniformSource};

/// Tokens whose uniforms are fetched from the generator at once.
const UNIFORM_CHUNK: usize = 256;

/// What the team shares.
struct Shared<'a> {
    stack: &'a FusedStack<'a>,
    threads: usize,
    rows: usize,
    max_tokens: usize,
    /// Fed before the first draw.
    prompt: &'a [usize],
    greedy: bool,
    /// `[UNIFORM_CHUNK, rows]`, refilled by thread 0 during the head phase.
    uniforms: &'a SharedBuf<f64>,
    tokens: Vec<AtomicUsize>,
    stop: &'a Stop<'a>,
    /// Per row: how many tokens it keeps (-1 while it runs), and its text
    /// for stop strings; each written by the thread that draws the row.
    lengths: Vec<AtomicI64>,
    texts: Vec<Mutex<RowText>>,
    /// Rows that have stopped.
    stopped: AtomicUsize,
    sample: SampleOptions,
    /// Rows whose logits were not finite, with their maximum.
    faults: Mutex<Vec<(usize, f32)>>,
    /// Set when the loop must end early: a fault, an interrupt, or the generator failed.
    abort: AtomicBool,
}

/// What only thread 0 does: talk to the generator and the interrupt poller,
/// and keep the output.
struct Lead<'r, I> {
    rng: &'r mut dyn UniformSource,
    interrupted: I,
    error: Option<Error>,
    /// `[steps, rows]`, grown as tokens come.
    out: Vec<i64>,
}

fn token_loop<I: FnMut() -> bool>(s: &Shared, tid: usize, mut lead: Option<&mut Lead<I>>) {
    let my_rows = split(s.rows, s.threads, tid);
    let mut draw = RowDraw::new(s.sample);
    // The tokens each of this thread's rows has seen, for the penalties.
    let mut seen: Vec<chain::Seen> = if s.sample.uses_chain() {
        let prompt: Vec<i64> = s.prompt.iter().map(|&t| t as i64).collect();
        my_rows.clone().map(|_| chain::Seen::new(&prompt)).collect()
    } else {
        Vec::new()
    };
    let mut p = 0;
    let forced = s.prompt.len();
    for pos in 0..forced.saturating_add(s.max_tokens) {
        // `step`: the index of the token being generated, once past the prompt.
        let step = pos.checked_sub(forced);

        // 1. Logits, and the uniforms for the next chunk of tokens.
        if let Some(step) = step {
            // SAFETY (all stack and buffer calls below): each phase writes
            // only this thread's blocks or rows; barriers separate phases.
            unsafe { s.stack.head(tid, s.rows) };
            if let Some(lead) = lead.as_deref_mut() {
                if !s.greedy && step % UNIFORM_CHUNK == 0 {
                    let n = UNIFORM_CHUNK.min(s.max_tokens - step);
                    let fetched = lead
                        .rng
                        .uniform_steps(n as i64, s.rows as i64, Device::Cpu)
                        .and_then(|u| Ok(u.f_to_kind(Kind::Double)?.f_contiguous()?))
                        .and_then(|u| {
                            let dst = unsafe { s.uniforms.get_mut(0..n * s.rows) };
                            Ok(u.f_copy_data(dst, n * s.rows)?)
                        });
                    if let Err(e) = fetched {
                        lead.error = Some(e);
                        s.abort.store(true, Ordering::Relaxed);
                    }
                }
            }
            s.stack.barrier().wait();
            if s.abort.load(Ordering::Relaxed) {
                return;
            }
        }

        // 2. The draw (or the prompt's token), and its embedding into the first layer.
        for r in my_rows.clone() {
            let token = match step {
                None => Ok(s.prompt[pos]),
                Some(step) => {
                    let logits = unsafe { s.stack.logits(r) };
                    let u = if s.greedy {
                        0.0
                    } else {
                        let at = (step % UNIFORM_CHUNK) * s.rows + r;
                        unsafe { s.uniforms.get(at..at + 1)[0] }
                    };
                    match seen.get(r - my_rows.start) {
                        Some(prev) => draw.draw_after(logits, prev, u),
                        None => draw.draw(logits, u),
                    }
                }
            };
            match token {
                Ok(token) => {
                    s.tokens[r].store(token, Ordering::Relaxed);
                    if let (Some(_), Some(prev)) = (step, seen.get_mut(r - my_rows.start)) {
                        prev.push(token as i64);
                    }
                    // `check` made sure every token has an embedding row.
                    unsafe { s.stack.embed(p, r, token) };
                    if let Some(step) = step {
                        stop_row(s, r, token as i64, step);
                    }
                }
                Err(max) => {
                    s.faults
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((r, max));
                    s.abort.store(true, Ordering::Relaxed);
                }
            }
        }
        if let Some(lead) = lead.as_deref_mut() {
            if (lead.interrupted)() {
                lead.error = Some(Error::Interrupted);
                s.abort.store(true, Ordering::Relaxed);
            }
        }
        s.stack.barrier().wait();
        if s.abort.load(Ordering::Relaxed) {
            return;
        }
        if let Some(step) = step {
            if let Some(lead) = lead.as_deref_mut() {
                keep_tokens(s, lead);
            }
            // Every thread reads the same count after the barrier, so all
            // leave together.
            let all_stopped = s.stopped.load(Ordering::Relaxed) == s.rows;
            if step + 1 == s.max_tokens || (!s.stop.is_empty() && all_stopped) {
                return;
            }
        }

        // 3. The layers.
        unsafe { s.stack.layers(tid, p, s.rows) };
        p = 1 - p;
    }
}

/// The stop rule for row `r`, which drew `token` as its `step`-th: marks
/// the row stopped when the token ends it. Only the row's own thread calls it.
fn stop_row(s: &Shared, r: usize, token: i64, step: usize) {
    if s.stop.is_empty() || s.lengths[r].load(Ordering::Relaxed) >= 0 {
        return;
    }
    let hit = match s.texts.get(r) {
        Some(text) => s
            .stop
            .hit(&mut text.lock().unwrap_or_else(|e| e.into_inner()), token),
        None => s.stop.hit(&mut RowText::default(), token),
    };
    if hit {
        s.lengths[r].store(step as i64 + 1, Ordering::Relaxed);
        s.stopped.fetch_add(1, Ordering::Relaxed);
    }
}

/// The lead keeps every row's token of this step; should the memory run
/// out, the loop ends (at the next check, all threads together) with an error.
fn keep_tokens<I>(s: &Shared, lead: &mut Lead<I>) {
    if lead.error.is_some() {
        return;
    }
    if let Err(e) = grow(&mut lead.out, s.rows) {
        lead.error = Some(e);
        s.abort.store(true, Ordering::Relaxed);
        return;
    }
    lead.out
        .extend(s.tokens.iter().map(|t| t.load(Ordering::Relaxed) as i64));
}

/// `rows` values made by `f`, or an error when the memory cannot be had.
fn try_rows<T>(rows: usize, f: impl FnMut(usize) -> T) -> Result<Vec<T>> {
    let mut v = Vec::new();
    grow(&mut v, rows)?;
    v.extend((0..rows).map(f));
    Ok(v)
}

/// Feeds `prompt` (checked by the caller) from zero states and generates as
/// [`super::generate`] does, drawing each token by `sample`'s rule.
pub fn generate(
    cfg: &RnnConfig,
    w: &LmWeights,
    prompt: &Tensor,
    opts: &GenerateOptions,
    sample: &SampleOptions,
    rng: &mut dyn UniformSource,
    interrupted: impl FnMut() -> bool,
) -> Result<Generated> {
    let prompt: Vec<usize> = Vec::<i64>::try_from(prompt)?
        .into_iter()
        .map(|t| usize::try_from(t).unwrap_or(usize::MAX))
        .collect();
    let too_large = |what: &str| Error::value(format!("{what} is too large for this machine"));
    let rows = usize::try_from(opts.num_samples).map_err(|_| too_large("num_samples"))?;
    let max_tokens = usize::try_from(opts.max_tokens).map_err(|_| too_large("max_tokens"))?;
    // Zero states: the prompt is fed first.
    let embedding = Floats::new(w.embedding)?;
    let stack = FusedStack::new(cfg, w, embedding.get(), rows, "num_samples")?;
    let uniforms = rows_buf(rows, UNIFORM_CHUNK.min(max_tokens.max(1)), "num_samples")?;
    let tokens = try_rows(rows, |_| AtomicUsize::new(0))?;
    let lengths = try_rows(rows, |_| AtomicI64::new(-1))?;
    let texts = if !opts.stop.has_strings() {
        Vec::new()
    } else {
        try_rows(rows, |_| Mutex::new(RowText::default()))?
    };
    let threads = stack.threads();
    let shared = Shared {
        stack: &stack,
        threads,
        rows,
        max_tokens,
        prompt: &prompt,
        greedy: sample.greedy,
        uniforms: &uniforms,
        tokens,
        stop: &opts.stop,
        lengths,
        texts,
        stopped: AtomicUsize::new(0),
        sample: *sample,
        faults: Mutex::new(Vec::new()),
        abort: AtomicBool::new(false),
    };
    let mut lead = Lead {
        rng,
        interrupted,
        error: None,
        out: Vec::new(),
    };
    if max_tokens > 0 {
        let lead = CallerOnly::new(&mut lead);
        team::run(threads, stack.barrier(), |tid| {
            if tid == 0 {
                // SAFETY: member 0 runs once, on this thread (`team::run`'s
                // contract), so the lead is taken once and never crosses threads.
                token_loop(&shared, 0, unsafe { lead.take() });
            } else {
                token_loop::<fn() -> bool>(&shared, tid, None);
            }
        })?;
    }
    let faults = shared
        .faults
        .into_inner()
        .unwrap_or_else(|e| e.into_inner());
    if !faults.is_empty() {
        let mut maxima = vec![0.0f64; rows];
        for (r, m) in faults {
            maxima[r] = m as f64;
        }
        return Err(nonfinite_logits(&maxima, true));
    }
    if let Some(e) = lead.error {
        return Err(e);
    }
    let steps = lead.out.len() / rows.max(1);
    let lengths = shared
        .lengths
        .iter()
        .map(|l| match l.load(Ordering::Relaxed) {
            len if len >= 0 => len,
            _ => steps as i64,
        })
        .collect();
    Ok(Generated {
        ids: transposed(&lead.out, rows, steps)?,
        lengths,
    })
}

/// `[rows, steps]` int64 ids from `out` laid out `[steps, rows]`, written
/// straight into the tensor (one copy of the output besides `out`).
fn transposed(out: &[i64], rows: usize, steps: usize) -> Result<Tensor> {
    let ids = Tensor::f_empty([rows as i64, steps as i64], (Kind::Int64, Device::Cpu))?;
    if rows * steps > 0 {
        // SAFETY: a fresh contiguous int64 CPU tensor of `rows * steps`
        // elements, written here only, before anyone else sees it.
        let dst =
            unsafe { std::slice::from_raw_parts_mut(ids.data_ptr() as *mut i64, rows * steps) };
        for (t, step) in out.chunks_exact(rows).enumerate() {
            for (r, &id) in step.iter().enumerate() {
                dst[r * steps + t] = id;
            }
        }
    }
    Ok(ids)
}
