//! Generation on the fused CPU kernels (`crate::kernel`): float32 weights on
//! the CPU, a unidirectional stack without projections. The prompt's tokens
//! are fed first (the same in every row), then each token runs, on a small
//! team of threads in lock step (libtorch's OpenMP threads, see `kernel::omp`):
//!
//! 1. the output layer over the top layer's state (vocabulary blocks split
//!    between the threads), then a barrier;
//! 2. the draw for each row (rows split), which also writes the drawn
//!    token's embedding into the first layer's input, then a barrier;
//! 3. each layer in turn (hidden-unit blocks split), a barrier after each.
//!
//! The prompt goes through the same kernels: it is short, and a call of
//! libtorch's sequence kernel would cost more than the tokens it saves.
//!
//! Layer `l` reads `[x, h]` from `input[l][p]` and writes its new `h` both to
//! `input[l][1 - p]` (its own next step) and to the next layer's `x` in
//! `input[l + 1][p]` (or to `top`), so no thread ever writes what another is
//! reading in the same phase; `p` flips every token.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::Mutex;

use tch::{Device, Kind, Tensor};

use super::draw::RowDraw;
use super::stop::{RowText, Stop};
use super::{grow, GenerateOptions, Generated, LmWeights};
use crate::error::{Error, Result};
use crate::float::float_cpu;
use crate::kernel::block::{self, Dest, Isa, Job, Pointwise};
use crate::kernel::lanes::LANES;
use crate::kernel::packed::{Dense, PackedLayer, Source, SLOTS};
use crate::kernel::team::{self, split, SharedBuf, SpinBarrier};
use crate::rnn::direction::DirWeights;
use crate::rnn::fused::packing::{pack_layer, padded, pointwise, Floats};
use crate::rnn::{Mode, RnnConfig};
use crate::sampler::chain;
use crate::sampler::{nonfinite_logits, SampleOptions, UniformSource};

/// Tokens whose uniforms are fetched from the generator at once.
const UNIFORM_CHUNK: usize = 256;
/// Below this many weights per token one thread is faster than a team.
const MIN_WEIGHTS_PER_THREAD: usize = 1 << 15;

/// Whether [`generate`] can run this model.
pub fn supports(cfg: &RnnConfig, w: &LmWeights) -> bool {
    cfg.proj_size == 0
        && !cfg.bidirectional
        && float_cpu(w.embedding)
        && float_cpu(w.head_weight)
        && w.head_bias.is_none_or(float_cpu)
        && w.stack.iter().all(float_cpu)
}

/// The output layer as a packed "layer" whose input is the top state.
fn pack_head(w: &LmWeights, hp: usize) -> Result<PackedLayer> {
    let (vocab, hidden) = w.head_weight.size2()?;
    let weight = Floats::new(w.head_weight)?;
    let bias = w.head_bias.map(Floats::new).transpose()?;
    let width = SLOTS * LANES;
    let blocks = (vocab as usize).div_ceil(width);
    let dense = Dense {
        weight: weight.get(),
        cols: hidden as usize,
        bias: bias.as_ref().map(Floats::get),
    };
    Ok(PackedLayer::new(
        blocks,
        hp,
        0,
        dense,
        None,
        |b, slot, lane| {
            let row = (b * SLOTS + slot) * LANES + lane;
            (row < vocab as usize).then_some((row, Source::Input))
        },
    ))
}

/// What the team shares.
struct Shared<'a> {
    isa: Isa,
    threads: usize,
    rows: usize,
    vocab: usize,
    max_tokens: usize,
    /// Fed before the first draw.
    prompt: &'a [usize],
    greedy: bool,
    barrier: SpinBarrier,
    /// `[parity][layer]`.
    jobs: [Vec<Job<'a>>; 2],
    head: Job<'a>,
    /// `[rows, vocab padded]`.
    logits: &'a SharedBuf,
    embedding: &'a [f32],
    embed: usize,
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

/// What only team member 0 touches. `team::run` runs member 0 on the caller's
/// own thread, so the generator and the interrupt poller (which need not be
/// `Send`) stay on the thread that owns them.
struct CallerOnly<T>(UnsafeCell<Option<T>>);

// SAFETY: only member 0, on the creating thread, reads the cell (see above).
unsafe impl<T> Sync for CallerOnly<T> {}

impl<T> CallerOnly<T> {
    /// # Safety
    /// Called only on the thread that made `self`, by one member.
    unsafe fn take(&self) -> Option<T> {
        (*self.0.get()).take()
    }
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
    let vp = s.head.layer.blocks * SLOTS * LANES;
    let mut p = 0;
    let forced = s.prompt.len();
    for pos in 0..forced.saturating_add(s.max_tokens) {
        // `step`: the index of the token being generated, once past the prompt.
        let step = pos.checked_sub(forced);

        // 1. Logits, and the uniforms for the next chunk of tokens.
        if let Some(step) = step {
            // SAFETY (all `block::run` and buffer calls below): each phase
            // writes only this thread's blocks or rows; barriers separate phases.
            unsafe { block::run(s.isa, &s.head, split(s.head.layer.blocks, s.threads, tid)) };
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
            s.barrier.wait();
            if s.abort.load(Ordering::Relaxed) {
                return;
            }
        }

        // 2. The draw (or the prompt's token), and its embedding into the first layer.
        // The draw writes the `x` part of the first layer's input.
        let (first, k0) = (s.jobs[p][0].input, s.jobs[p][0].layer.k);
        for r in my_rows.clone() {
            let token = match step {
                None => Ok(s.prompt[pos]),
                Some(step) => {
                    let logits = unsafe { s.logits.get(r * vp..r * vp + s.vocab) };
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
                    let x = unsafe { first.get_mut(r * k0..r * k0 + s.embed) };
                    x.copy_from_slice(&s.embedding[token * s.embed..(token + 1) * s.embed]);
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
        s.barrier.wait();
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
        for job in &s.jobs[p] {
            unsafe { block::run(s.isa, job, split(job.layer.blocks, s.threads, tid)) };
            s.barrier.wait();
        }
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

/// A team buffer of `rows x width` values, or an error naming the sizes.
fn rows_buf<T: Copy + Default>(rows: usize, width: usize) -> Result<SharedBuf<T>> {
    let len = rows.checked_mul(width).ok_or_else(|| {
        Error::shape(format!(
            "num_samples = {rows} is too large: {rows} rows of {width} values overflow"
        ))
    })?;
    SharedBuf::try_new(len).map_err(|e| Error::shape(format!("num_samples = {rows}: {e}")))
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
    let pw = pointwise(cfg.mode);
    let hp = padded(cfg.hidden_size as usize, pw);
    let embed = cfg.input_size as usize;
    let n_layers = cfg.num_layers as usize;

    let per = cfg.params_per_direction();
    let layers = w
        .stack
        .chunks(per)
        .enumerate()
        .map(|(l, chunk)| {
            let w = DirWeights::from_slice(chunk, cfg.bias, false);
            let x_width = if l == 0 { embed } else { hp };
            pack_layer(cfg.mode, cfg.hidden_size as usize, &w, x_width)
        })
        .collect::<Result<Vec<_>>>()?;
    let head = pack_head(w, hp)?;
    let vocab = w.head_weight.size()[0] as usize;
    let vp = head.blocks * SLOTS * LANES;

    // Zero states: the prompt is fed first. Every buffer is sized by
    // `num_samples`, so each allocation may fail (an error, not an abort).
    let inputs: Vec<[SharedBuf; 2]> = layers
        .iter()
        .map(|layer| Ok([rows_buf(rows, layer.k)?, rows_buf(rows, layer.k)?]))
        .collect::<Result<_>>()?;
    let cells: Vec<SharedBuf> = match cfg.mode {
        Mode::Lstm => (0..n_layers)
            .map(|_| rows_buf(rows, hp))
            .collect::<Result<_>>()?,
        _ => Vec::new(),
    };
    let top = rows_buf(rows, hp)?;
    let logits = rows_buf(rows, vp)?;
    let uniforms = rows_buf(rows, UNIFORM_CHUNK.min(max_tokens.max(1)))?;
    let embedding = Floats::new(w.embedding)?;
    let tokens = try_rows(rows, |_| AtomicUsize::new(0))?;
    let lengths = try_rows(rows, |_| AtomicI64::new(-1))?;
    let texts = if !opts.stop.has_strings() {
        Vec::new()
    } else {
        try_rows(rows, |_| Mutex::new(RowText::default()))?
    };

    let make_jobs = |p: usize| -> Vec<Job> {
        (0..n_layers)
            .map(|l| {
                let layer = &layers[l];
                let next = if l + 1 < n_layers {
                    Dest {
                        buf: &inputs[l + 1][p],
                        stride: layers[l + 1].k,
                        offset: 0,
                    }
                } else {
                    Dest {
                        buf: &top,
                        stride: hp,
                        offset: 0,
                    }
                };
                Job {
                    layer,
                    pointwise: pw,
                    input: &inputs[l][p],
                    rows,
                    cell: cells.get(l).map(|c| Dest {
                        buf: c,
                        stride: hp,
                        offset: 0,
                    }),
                    out: [
                        Some(Dest {
                            buf: &inputs[l][1 - p],
                            stride: layer.k,
                            offset: layer.x_width,
                        }),
                        Some(next),
                    ],
                    gates: None,
                }
            })
            .collect()
    };
    let weights_per_token: usize =
        layers.iter().map(|l| l.blocks * l.k).sum::<usize>() * SLOTS * LANES
            + head.blocks * head.k * SLOTS * LANES;
    let threads = team::size(
        tch::get_num_threads().max(1) as usize,
        usize::MAX,
        weights_per_token.saturating_mul(rows),
        MIN_WEIGHTS_PER_THREAD,
    );
    let shared = Shared {
        isa: Isa::detect(),
        threads,
        rows,
        vocab,
        max_tokens,
        prompt: &prompt,
        greedy: sample.greedy,
        barrier: SpinBarrier::new(threads),
        jobs: [make_jobs(0), make_jobs(1)],
        head: Job {
            layer: &head,
            pointwise: Pointwise::Linear,
            input: &top,
            rows,
            cell: None,
            out: [
                Some(Dest {
                    buf: &logits,
                    stride: vp,
                    offset: 0,
                }),
                None,
            ],
            gates: None,
        },
        logits: &logits,
        embedding: embedding.get(),
        embed,
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
        let lead = CallerOnly(UnsafeCell::new(Some(&mut lead)));
        team::run(threads, &shared.barrier, |tid| {
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
