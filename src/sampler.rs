//! Sampling: `multinomial` with torch.multinomial's contract, and next-token
//! sampling from logits (`sample_logits`: temperature, top-k, top-p, greedy).
//!
//! # Randomness
//! Every random number is a float64 uniform in `[0, 1)` asked of a
//! [`UniformSource`]. [`DefaultGenerator`] draws them with `torch.rand` from
//! libtorch's default generator of the input's device, so `torch.manual_seed`
//! makes every draw repeat exactly; the Python glue supplies a source that
//! calls `torch.rand(..., generator=g)` to honour an explicit `torch.Generator`.
//! Nothing is drawn before the input has been validated, so a call that fails
//! leaves the generator where it was.
//!
//! # Algorithms
//! On the CPU (the hot path of a generation loop) the work is done here, over
//! the tensor's memory; large inputs are split by rows across up to
//! `torch.get_num_threads()` threads (the result does not depend on how many):
//! * every row is cut into blocks of [`BLOCK`] weights whose float64 sums are
//!   taken in one vectorised pass that also validates the weights;
//! * a Fenwick tree over the block sums finds the block holding `u * total`
//!   in O(log blocks), and a scan of that block the category: the first whose
//!   running float64 sum exceeds `u * total`. A zero weight never raises the
//!   running sum, so it is never returned.
//! * with replacement, each sample is one such search; without replacement the
//!   rows are sampled sequentially, exactly as the definition says: after each
//!   draw the category is removed (its block sum recomputed, the tree updated)
//!   and the next draw is taken from what remains. One uniform per sample.
//!
//! On other devices the same contract is met with whole-tensor ops: a float64
//! `cumsum` and `searchsorted` for draws with replacement, and the exponential
//! race (Gumbel-top-k: `topk(log w - log E)`, `E ~ Exp(1)`, zero weights
//! masked to `-inf`) without replacement, which is exactly sequential sampling
//! without replacement, in draw order.
//!
//! `sample_logits` shifts and scales the logits with tensor ops, takes the
//! top-k candidates (for top-p alone: a `topk` grown eightfold until the
//! candidates hold `p` of every row's mass, rather than sorting the whole
//! vocabulary), and draws one token per row with the same kernel.

// Values from Python reach this module: no index or slice may panic.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use std::cmp::Reverse;
use std::sync::Mutex;

use tch::{Device, Kind, Tensor};

use crate::dtype::{dtype_name, is_floating_point};
use crate::error::{Error, Result};
use crate::kernel::team::try_vec;

/// Weights per block: the unit of the scan after the Fenwick search.
pub const BLOCK: usize = 64;

/// Below this many weights (or weight visits) per thread, threads cost more than they save.
const WORK_PER_THREAD: usize = 1 << 16;

/// Uniforms asked of the source at once when a draw needs more (8 MiB).
const UNIFORM_CHUNK: usize = 1 << 20;

// ---------------------------------------------------------------------------
// Randomness

/// Where the uniforms come from.
pub trait UniformSource {
    /// A float64 tensor of `shape` on `device`, uniform in `[0, 1)`.
    fn uniform(&mut self, shape: &[i64], device: Device) -> Result<Tensor>;

    /// `[steps, rows]` uniforms for `steps` successive draws of `rows` values
    /// each: the same values as `steps` calls asking for `[rows]`.
    fn uniform_steps(&mut self, steps: i64, rows: i64, device: Device) -> Result<Tensor> {
        self.uniform(&[steps, rows], device)
    }
}

/// libtorch's default generator of each device (what `torch.manual_seed` seeds).
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultGenerator;

impl UniformSource for DefaultGenerator {
    fn uniform(&mut self, shape: &[i64], device: Device) -> Result<Tensor> {
        Ok(Tensor::f_rand(shape, (Kind::Double, device))?)
    }
}

/// Asks `rng` for uniforms and checks that it answered what was asked.
fn uniforms<R: UniformSource + ?Sized>(
    rng: &mut R,
    shape: &[i64],
    device: Device,
) -> Result<Tensor> {
    let u = rng.uniform(shape, device)?;
    if u.size() != shape {
        return Err(Error::shape(format!(
            "the uniform source returned a tensor of shape {:?}, expected {shape:?}",
            u.size()
        )));
    }
    if u.f_kind()? == Kind::Double && u.device() == device {
        Ok(u)
    } else {
        Ok(u.f_to_device(device)?.f_to_kind(Kind::Double)?)
    }
}

// ---------------------------------------------------------------------------
// multinomial

/// Draws `num_samples` category indices from each row of non-negative weights,
/// with torch.multinomial's contract.
///
/// * `input`: `[C]` or `[R, C]` floating-point weights, finite and `>= 0`, that
///   need not sum to 1; every row must have a positive sum.
/// * Returns int64 indices of shape `[num_samples]` or `[R, num_samples]`, on
///   the input's device; without replacement in the order they were drawn.
///
/// Beyond torch: a zero-weight category is never returned, and asking without
/// replacement for more samples than a row has non-zero weights is an error
/// (torch would fill up with zero-weight categories).
///
/// Errors (all `Error::Shape`, torch's RuntimeError): input not 1-D/2-D, a
/// non-floating dtype, `num_samples <= 0`, more samples than categories without
/// replacement, a negative, infinite or nan weight, a row summing to zero, too
/// few non-zero weights without replacement, a row whose sum overflows float64.
pub fn multinomial<R: UniformSource + ?Sized>(
    input: &Tensor,
    num_samples: i64,
    replacement: bool,
    rng: &mut R,
) -> Result<Tensor> {
    let _no_grad = tch::no_grad_guard();
    let batched = check_multinomial_args(input, num_samples, replacement)?;
    let rows = if batched {
        input.shallow_clone()
    } else {
        input.f_unsqueeze(0)?
    };
    let out = sample_rows(&rows, num_samples, replacement, rng, batched)?;
    if batched {
        Ok(out)
    } else {
        Ok(out.f_squeeze_dim(0)?)
    }
}

/// The argument checks torch.multinomial makes before looking at the values.
/// Returns whether the input is batched (2-D).
fn check_multinomial_args(input: &Tensor, num_samples: i64, replacement: bool) -> Result<bool> {
    let size = input.size();
    let (batched, cats) = match *size.as_slice() {
        [cats] => (false, cats),
        [_, cats] => (true, cats),
        _ => {
            return Err(Error::shape(format!(
                "prob_dist must be 1 or 2 dim: multinomial expects a 1-D or 2-D tensor of weights, \
                 got a {}-D tensor of shape {size:?}",
                size.len()
            )))
        }
    };
    let kind = input.f_kind()?;
    if !is_floating_point(kind) {
        return Err(Error::shape(format!(
            "multinomial only supports floating-point dtypes for input, got: {}",
            dtype_name(kind)
        )));
    }
    if num_samples <= 0 {
        return Err(Error::shape(format!(
            "cannot sample n_sample <= 0 samples: num_samples must be positive, got {num_samples}"
        )));
    }
    if !replacement && num_samples > cats {
        return Err(Error::shape(format!(
            "cannot sample n_sample > prob_dist.size(-1) samples without replacement: \
             num_samples = {num_samples} but there are only {cats} categories"
        )));
    }
    Ok(batched)
}

/// What is wrong with one row. When several rows are wrong the error reports
/// the worst kind (in this order, as torch checks all values before any sum)
/// and, within it, the first row.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    BadValue { row: usize, col: usize, value: f64 },
    Overflow { row: usize },
    ZeroSum { row: usize },
    TooFewNonZero { row: usize, nnz: usize },
}

impl Fault {
    fn rank(&self) -> (u8, Reverse<usize>) {
        match *self {
            Fault::BadValue { row, .. } => (3, Reverse(row)),
            Fault::Overflow { row } => (2, Reverse(row)),
            Fault::ZeroSum { row } => (1, Reverse(row)),
            Fault::TooFewNonZero { row, .. } => (0, Reverse(row)),
        }
    }

    fn worst(a: Option<Fault>, b: Option<Fault>) -> Option<Fault> {
        match (a, b) {
            (Some(x), Some(y)) => Some(if y.rank() > x.rank() { y } else { x }),
            (x, None) => x,
            (None, y) => y,
        }
    }

    fn into_error(self, batched: bool, num_samples: i64) -> Error {
        let row_name = |row: usize| {
            if batched {
                format!("row {row}")
            } else {
                "the input".into()
            }
        };
        Error::Shape(match self {
            Fault::BadValue { row, col, value } => {
                let at = if batched {
                    format!("input[{row}, {col}]")
                } else {
                    format!("input[{col}]")
                };
                format!(
                    "probability tensor contains either `inf`, `nan` or element < 0: \
                     weights must be finite and >= 0, got {at} = {value}"
                )
            }
            Fault::Overflow { row } => format!(
                "the weights of {} sum to inf in float64; scale them down",
                row_name(row)
            ),
            Fault::ZeroSum { row } => format!(
                "invalid multinomial distribution (sum of probabilities <= 0): \
                 the weights of {} sum to 0",
                row_name(row)
            ),
            Fault::TooFewNonZero { row, nnz } => format!(
                "cannot draw num_samples = {num_samples} samples without replacement from {}: \
                 it has only {nnz} non-zero weights (zero-weight categories are never drawn)",
                row_name(row)
            ),
        })
    }
}

/// Samples every row of the 2-D weights `w` (arguments already checked);
/// returns `[rows, num_samples]`.
fn sample_rows<R: UniformSource + ?Sized>(
    w: &Tensor,
    num_samples: i64,
    replacement: bool,
    rng: &mut R,
    batched: bool,
) -> Result<Tensor> {
    let (rows, cats) = w.size2()?;
    let device = w.device();
    if rows == 0 {
        return Ok(Tensor::f_empty([0, num_samples], (Kind::Int64, device))?);
    }
    if cats == 0 {
        return Err(Fault::ZeroSum { row: 0 }.into_error(batched, num_samples));
    }
    let drawn = match device {
        Device::Cpu => cpu::sample(w, num_samples, replacement, rng)?,
        _ => tensor_ops::sample(w, num_samples, replacement, rng)?,
    };
    drawn.map_err(|fault| fault.into_error(batched, num_samples))
}

/// The CPU kernel: block sums, a Fenwick tree over them and a scan of one block per draw.
mod cpu {
    use super::*;

    /// The element types the kernel reads directly; others are converted to f32 first.
    pub(super) trait Weight: tch::kind::Element + Copy + Send + Sync {
        fn get(self) -> f64;
    }

    impl Weight for f32 {
        #[inline(always)]
        fn get(self) -> f64 {
            self as f64
        }
    }

    impl Weight for f64 {
        #[inline(always)]
        fn get(self) -> f64 {
            self
        }
    }

    pub(super) type Drawn = std::result::Result<Tensor, Fault>;

    pub(super) fn sample<R: UniformSource + ?Sized>(
        w: &Tensor,
        num_samples: i64,
        replacement: bool,
        rng: &mut R,
    ) -> Result<Drawn> {
        let w = match w.f_kind()? {
            Kind::Float | Kind::Double => w.f_contiguous()?,
            _ => w.f_to_kind(Kind::Float)?.f_contiguous()?,
        };
        match w.f_kind()? {
            Kind::Double => sample_typed::<f64, R>(&w, num_samples, replacement, rng),
            _ => sample_typed::<f32, R>(&w, num_samples, replacement, rng),
        }
    }

    fn sample_typed<W: Weight, R: UniformSource + ?Sized>(
        w: &Tensor,
        num_samples: i64,
        replacement: bool,
        rng: &mut R,
    ) -> Result<Drawn> {
        let (rows_i, cats_i) = w.size2()?;
        let (rows, cats, ns) = (rows_i as usize, cats_i as usize, num_samples as usize);
        let data = elements::<W>(w)?;
        let nb = cats.div_ceil(BLOCK);
        if cats == 0 {
            // sample_rows answers this before calling; here it keeps the chunk
            // sizes below (cats weights, nb block sums per row) from being 0.
            return Ok(Err(Fault::ZeroSum { row: 0 }));
        }

        // Pass 1: validate and take the block sums (no randomness spent yet).
        let mut sums = try_vec(0.0f64, rows.saturating_mul(nb))?;
        let threads = thread_count(rows, rows * cats);
        let fault = par_rows(&mut sums, nb, threads, |first, chunk| {
            scan_rows(data, cats, first, chunk, ns, replacement)
        })
        .into_iter()
        .fold(None, Fault::worst);
        if let Some(fault) = fault {
            return Ok(Err(fault));
        }

        // Pass 2: the output tensor (libtorch's allocator raises if it cannot
        // be had), the uniforms written into its slots, each slot's draw
        // over its own uniform: no buffer besides the output.
        let total = rows.checked_mul(ns).ok_or_else(|| {
            Error::shape(format!(
                "cannot draw {num_samples} samples from each of {rows} rows: \
                 the output's size overflows"
            ))
        })?;
        let out = Tensor::f_empty([rows_i, num_samples], (Kind::Int64, Device::Cpu))?;
        // SAFETY: a fresh contiguous int64 CPU tensor of `total` elements,
        // written only here (by one thread per run of rows) before it is returned.
        let slots = unsafe { std::slice::from_raw_parts_mut(out.data_ptr() as *mut i64, total) };
        fill_uniforms(rng, slots, [rows_i, num_samples])?;
        let visits = rows.saturating_mul(nb.saturating_add(ns.saturating_mul(BLOCK / 2 + 8)));
        let threads = thread_count(rows, visits);
        let sums = &sums;
        par_rows(slots, ns, threads, |first, chunk| {
            let mut scratch = Scratch::new(cats, nb, replacement);
            let rows = data
                .chunks_exact(cats)
                .zip(sums.chunks_exact(nb))
                .skip(first);
            for (row_slots, (weights, row_sums)) in chunk.chunks_mut(ns).zip(rows) {
                if replacement {
                    draw_with_replacement(weights, row_sums, &mut scratch, row_slots);
                } else {
                    draw_without_replacement(weights, row_sums, &mut scratch, row_slots);
                }
            }
        });
        Ok(Ok(out))
    }

    /// Fills `slots` (the `[rows, samples]` output, row-major) with the bits
    /// of float64 uniforms, in order: asked of `rng` as `shape` when they
    /// are few, else in flat chunks of [`UNIFORM_CHUNK`] (the same values
    /// from a sequential generator such as torch's CPU one), so no second
    /// output-sized buffer is needed.
    fn fill_uniforms<R: UniformSource + ?Sized>(
        rng: &mut R,
        slots: &mut [i64],
        shape: [i64; 2],
    ) -> Result<()> {
        let whole = slots.len() <= UNIFORM_CHUNK;
        for chunk in slots.chunks_mut(UNIFORM_CHUNK) {
            let n = chunk.len();
            let u = if whole {
                uniforms(rng, &shape, Device::Cpu)?
            } else {
                uniforms(rng, &[n as i64], Device::Cpu)?
            }
            .f_contiguous()?;
            for (slot, &x) in chunk.iter_mut().zip(elements::<f64>(&u)?) {
                *slot = x.to_bits() as i64;
            }
        }
        Ok(())
    }

    /// The uniform a slot holds (see [`fill_uniforms`]).
    #[inline(always)]
    fn uniform_in(slot: i64) -> f64 {
        f64::from_bits(slot as u64)
    }

    /// Borrows the elements of a contiguous CPU tensor of element type `W`.
    fn elements<W: Weight>(t: &Tensor) -> Result<&[W]> {
        if t.device() != Device::Cpu || !t.is_contiguous() || t.f_kind()? != W::KIND {
            return Err(Error::shape(
                "internal: the CPU sampler needs a contiguous CPU tensor",
            ));
        }
        let n = t.numel();
        if n == 0 {
            return Ok(&[]);
        }
        // SAFETY: `t` is a contiguous CPU tensor of element type `W` (checked above),
        // so `data_ptr()` (which includes the storage offset) points at `n` initialised,
        // properly aligned elements. The returned slice borrows `t`, whose reference
        // keeps the storage alive. Like torch's own kernels we read without a lock; a
        // concurrent in-place write from another thread would race in torch too.
        Ok(unsafe { std::slice::from_raw_parts(t.data_ptr() as *const W, n) })
    }

    /// How many threads `work` element visits over `rows` rows are worth.
    fn thread_count(rows: usize, work: usize) -> usize {
        let torch_threads = tch::get_num_threads().max(1) as usize;
        torch_threads.min(rows).min(work / WORK_PER_THREAD).max(1)
    }

    /// Splits `buf` (`stride` entries per row) into runs of whole rows, one per
    /// thread, and calls `f(first_row, run)` on each, in parallel; returns the
    /// results in row order. The calling thread works too, and takes over the
    /// runs of any thread that could not be started.
    fn par_rows<T, O, F>(buf: &mut [T], stride: usize, threads: usize, f: F) -> Vec<O>
    where
        T: Send,
        O: Send,
        F: Fn(usize, &mut [T]) -> O + Sync,
    {
        let rows = buf.len().checked_div(stride).unwrap_or(0);
        if threads <= 1 || rows <= 1 {
            return vec![f(0, buf)];
        }
        let per = rows.div_ceil(threads);
        let runs: Vec<(usize, &mut [T])> = buf
            .chunks_mut(per * stride)
            .enumerate()
            .map(|(i, c)| (i * per, c))
            .collect();
        let queue = Mutex::new(runs);
        let done = Mutex::new(Vec::with_capacity(threads));
        let work = || loop {
            let run = queue.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let Some((first, run)) = run else { break };
            let out = f(first, run);
            done.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((first, out));
        };
        std::thread::scope(|s| {
            for _ in 1..threads {
                // On failure to start a thread, the calling thread does its share.
                let _ = std::thread::Builder::new().spawn_scoped(s, work);
            }
            work();
        });
        let mut done = done.into_inner().unwrap_or_else(|e| e.into_inner());
        done.sort_by_key(|&(first, _)| first);
        done.into_iter().map(|(_, out)| out).collect()
    }

    /// Pass 1 over the rows `first..first + sums.len() / nb`: block sums into
    /// `sums`, and the worst fault found (scanning on after a fault only to look
    /// for a worse one, a bad value).
    fn scan_rows<W: Weight>(
        data: &[W],
        cats: usize,
        first: usize,
        sums: &mut [f64],
        ns: usize,
        replacement: bool,
    ) -> Option<Fault> {
        let nb = cats.div_ceil(BLOCK);
        let mut fault = None;
        let rows = sums.chunks_mut(nb).zip(data.chunks_exact(cats).skip(first));
        for ((row_sums, weights), row) in rows.zip(first..) {
            let (nonneg, nnz) = block_sums(weights, row_sums);
            let total: f64 = row_sums.iter().sum();
            let this = if !nonneg || !total.is_finite() {
                // A negative weight, or a nan or inf that made the sum non-finite;
                // if neither, finite weights whose float64 sum overflows.
                match first_bad(weights) {
                    Some((col, value)) => {
                        return Fault::worst(fault, Some(Fault::BadValue { row, col, value }))
                    }
                    None => Some(Fault::Overflow { row }),
                }
            } else if nnz == 0 {
                Some(Fault::ZeroSum { row })
            } else if !replacement && nnz < ns {
                Some(Fault::TooFewNonZero { row, nnz })
            } else {
                None
            };
            fault = Fault::worst(fault, this);
        }
        fault
    }

    /// The float64 sum of every block of `w` into `sums`; whether no weight is
    /// negative (nan and inf show in the sums instead), and how many are
    /// positive. Eight independent lanes, and a running minimum rather than
    /// boolean flags, so the compiler vectorises the loop well (4x faster).
    // why: `j` runs over 0..LANES, the length of `c` (a chunks_exact chunk) and of the lane arrays.
    #[allow(clippy::indexing_slicing)]
    fn block_sums<W: Weight>(w: &[W], sums: &mut [f64]) -> (bool, usize) {
        const LANES: usize = 8;
        let mut mn = [f64::INFINITY; LANES];
        let mut nnz = [0u32; LANES];
        for (block, sum) in w.chunks(BLOCK).zip(sums.iter_mut()) {
            let mut acc = [0.0f64; LANES];
            let mut lanes = block.chunks_exact(LANES);
            for c in &mut lanes {
                for j in 0..LANES {
                    let x = c[j].get();
                    acc[j] += x;
                    mn[j] = if x < mn[j] { x } else { mn[j] };
                    nnz[j] += (x > 0.0) as u32;
                }
            }
            for &x in lanes.remainder() {
                let x = x.get();
                acc[0] += x;
                mn[0] = if x < mn[0] { x } else { mn[0] };
                nnz[0] += (x > 0.0) as u32;
            }
            *sum =
                ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
        }
        (
            mn.iter().all(|&m| m >= 0.0),
            nnz.iter().map(|&x| x as usize).sum(),
        )
    }

    /// The first weight that is negative, nan or inf, and its column.
    fn first_bad<W: Weight>(w: &[W]) -> Option<(usize, f64)> {
        w.iter()
            .map(|x| x.get())
            .enumerate()
            .find(|&(_, x)| !(0.0..f64::INFINITY).contains(&x))
    }

    /// A Fenwick (binary indexed) tree over a row's block sums.
    pub(super) struct Fenwick {
        tree: Vec<f64>, // 1-based; tree[0] unused
    }

    impl Fenwick {
        pub(super) fn new() -> Self {
            Fenwick { tree: Vec::new() }
        }

        // why: `tree` holds n + 1 entries; `i` runs over 1..=n and `j` is tested against n.
        #[allow(clippy::indexing_slicing)]
        pub(super) fn build(&mut self, sums: &[f64]) {
            let n = sums.len();
            self.tree.clear();
            self.tree.push(0.0);
            self.tree.extend_from_slice(sums);
            for i in 1..=n {
                let j = i + (i & i.wrapping_neg());
                if j <= n {
                    self.tree[j] += self.tree[i];
                }
            }
        }

        pub(super) fn add(&mut self, block: usize, delta: f64) {
            let mut i = block + 1;
            while let Some(node) = self.tree.get_mut(i) {
                *node += delta;
                i += i & i.wrapping_neg();
            }
        }

        // why: `i` starts at tree.len() - 1 and only clears bits, so it stays below tree.len().
        #[allow(clippy::indexing_slicing)]
        pub(super) fn total(&self) -> f64 {
            let mut i = self.tree.len().saturating_sub(1);
            let mut s = 0.0;
            while i > 0 {
                s += self.tree[i];
                i &= i - 1;
            }
            s
        }

        /// The first block whose prefix sum exceeds `t` (the number of blocks
        /// if none does) and the sum of the blocks before it (`<= t`).
        pub(super) fn find(&self, t: f64) -> (usize, f64) {
            let n = self.tree.len().saturating_sub(1);
            if n == 0 {
                return (0, 0.0);
            }
            let mut pos = 0;
            let mut before = 0.0;
            let mut step = 1usize << (usize::BITS - 1 - n.leading_zeros());
            while step > 0 {
                let next = pos + step;
                // Past n (the end of the tree) is no node.
                if let Some(&node) = self.tree.get(next).filter(|&&node| before + node <= t) {
                    pos = next;
                    before += node;
                }
                step >>= 1;
            }
            (pos, before)
        }
    }

    /// Per-thread buffers, reused across rows (`removed` only without replacement).
    struct Scratch {
        fenwick: Fenwick,
        sums: Vec<f64>,
        removed: Vec<bool>,
        taken: Vec<usize>,
    }

    impl Scratch {
        fn new(cats: usize, nb: usize, replacement: bool) -> Self {
            Scratch {
                fenwick: Fenwick::new(),
                sums: Vec::with_capacity(nb),
                removed: if replacement {
                    Vec::new()
                } else {
                    vec![false; cats]
                },
                taken: Vec::new(),
            }
        }
    }

    /// Each slot's uniform (see [`fill_uniforms`]) becomes its draw.
    fn draw_with_replacement<W: Weight>(w: &[W], sums: &[f64], s: &mut Scratch, out: &mut [i64]) {
        s.fenwick.build(sums);
        let total = s.fenwick.total();
        for o in out.iter_mut() {
            *o = draw(w, &s.fenwick, &s.removed, uniform_in(*o) * total) as i64;
        }
    }

    /// Sequential sampling without replacement: each draw is taken from the
    /// weights not yet drawn. The row has at least `out.len()` positive
    /// weights; each slot's uniform becomes its draw.
    // why: `draw` returns an index below w.len() (w is a row, never empty, and `removed` is as
    // long), so `i` and its block's indices are below w.len() and `i / BLOCK` below sums.len().
    #[allow(clippy::indexing_slicing)]
    fn draw_without_replacement<W: Weight>(
        w: &[W],
        sums: &[f64],
        s: &mut Scratch,
        out: &mut [i64],
    ) {
        s.sums.clear();
        s.sums.extend_from_slice(sums);
        s.fenwick.build(&s.sums);
        // Mass removed since the tree was last built: once it exceeds what
        // remains, rebuild so the tree's rounding stays relative to the rest.
        let mut removed_mass = 0.0;
        for o in out.iter_mut() {
            let total = s.fenwick.total();
            let i = draw(w, &s.fenwick, &s.removed, uniform_in(*o) * total);
            *o = i as i64;
            s.removed[i] = true;
            s.taken.push(i);
            let b = i / BLOCK;
            let block_end = ((b + 1) * BLOCK).min(w.len());
            let new_sum: f64 = (b * BLOCK..block_end)
                .filter(|&j| !s.removed[j])
                .map(|j| w[j].get())
                .sum();
            let delta = new_sum - s.sums[b];
            s.sums[b] = new_sum;
            removed_mass -= delta;
            if removed_mass > total + delta {
                s.fenwick.build(&s.sums);
                removed_mass = 0.0;
            } else {
                s.fenwick.add(b, delta);
            }
        }
        for i in s.taken.drain(..) {
            s.removed[i] = false;
        }
    }

    /// The category holding `t` in `[0, total)`: the first not removed whose
    /// running sum exceeds `t`. Should rounding leave no such category (`t`
    /// at the very top, or sums that drifted), the nearest positive weight
    /// not removed, so a zero weight can never come out. An empty `removed`
    /// means none is.
    fn draw<W: Weight>(w: &[W], tree: &Fenwick, removed: &[bool], t: f64) -> usize {
        let gone = |i: usize| removed.get(i).copied().unwrap_or(false);
        let (b, before) = tree.find(t);
        let lo = (b * BLOCK).min(w.len());
        let hi = ((b + 1) * BLOCK).min(w.len());
        let mut acc = before;
        // Both ends are clamped to w.len(), lo <= hi: the fallback never applies.
        let block = w.get(lo..hi).unwrap_or_default();
        for (i, x) in (lo..).zip(block) {
            if !gone(i) {
                acc += x.get();
                if acc > t {
                    return i;
                }
            }
        }
        let usable = |&i: &usize| !gone(i) && w.get(i).is_some_and(|x| x.get() > 0.0);
        (0..hi)
            .rev()
            .find(usable)
            .or_else(|| (hi..w.len()).find(usable))
            .unwrap_or(0)
    }
}

/// Whole-tensor ops for devices other than the CPU.
mod tensor_ops {
    use super::*;

    pub(super) fn sample<R: UniformSource + ?Sized>(
        w: &Tensor,
        num_samples: i64,
        replacement: bool,
        rng: &mut R,
    ) -> Result<std::result::Result<Tensor, Fault>> {
        let (rows, cats) = w.size2()?;
        let device = w.device();
        let w64 = w.f_to_kind(Kind::Double)?;
        let positive = w64.f_gt(0.0)?;
        let bad = w64
            .f_ge(0.0)?
            .f_logical_and(&w64.f_lt(f64::INFINITY)?)?
            .f_logical_not()?;
        let cum = w64.f_cumsum(1, Kind::Double)?;
        let total = cum.f_narrow(1, cats - 1, 1)?; // [rows, 1]
        let nnz = positive.f_sum_dim_intlist(1, false, Kind::Int64)?;

        // One code per row, one sync: 8 bad value, 4 overflow, 2 zero sum, 1 too few.
        let flag = |t: Tensor, weight: i64| -> Result<Tensor> {
            Ok(t.f_to_kind(Kind::Int64)?.f_mul_scalar(weight)?)
        };
        let mut code = flag(bad.f_any_dim(1, false)?, 8)?
            .f_add(&flag(
                total.f_squeeze_dim(1)?.f_isfinite()?.f_logical_not()?,
                4,
            )?)?
            .f_add(&flag(nnz.f_eq(0)?, 2)?)?;
        if !replacement {
            code = code.f_add(&flag(nnz.f_lt(num_samples)?, 1)?)?;
        }
        if code.f_max()?.f_int64_value(&[])? > 0 {
            return Ok(Err(first_fault(&code, &bad, &w64, &nnz)?));
        }

        let idx = if replacement || num_samples == 1 {
            let u = uniforms(rng, &[rows, num_samples], device)?;
            let t = u.f_mul(&total)?;
            let idx = t
                .f_searchsorted(&cum, false, true, "right", None::<Tensor>)?
                .f_clamp_max(cats - 1)?;
            // Rounding in a parallel cumsum could land on a zero weight: map every
            // index to the nearest positive weight at or before it (or the first one).
            let ar = Tensor::f_arange(cats, (Kind::Int64, device))?;
            let (prev, _) = ar.f_where_scalarother(&positive, -1)?.f_cummax(1)?;
            let first_pos = positive.f_to_kind(Kind::Int64)?.f_argmax(1, true)?;
            let owner = prev.f_where_self(&prev.f_ge(0)?, &first_pos)?;
            owner.f_gather(1, &idx, false)?
        } else {
            // Exponential race: the order of log w - log E, E ~ Exp(1), is the
            // order of sequential draws without replacement.
            let u = uniforms(rng, &[rows, cats], device)?;
            let e = u.f_neg()?.f_log1p()?.f_neg()?;
            let keys = w64
                .f_log()?
                .f_sub(&e.f_log()?)?
                .f_masked_fill(&positive.f_logical_not()?, f64::NEG_INFINITY)?;
            keys.f_topk(num_samples, 1, true, true)?.1
        };
        Ok(Ok(idx))
    }

    fn first_fault(code: &Tensor, bad: &Tensor, w64: &Tensor, nnz: &Tensor) -> Result<Fault> {
        let rows = code.size1()? as usize;
        let mut codes = vec![0i64; rows];
        code.f_to_device(Device::Cpu)?
            .f_contiguous()?
            .f_copy_data(&mut codes, rows)?;
        let worst = [8, 4, 2, 1].into_iter().find_map(|bit| {
            codes
                .iter()
                .position(|c| c & bit != 0)
                .map(|row| (bit, row))
        });
        let (bit, row) = worst.ok_or_else(|| Error::shape("internal: no faulty row"))?;
        Ok(match bit {
            8 => {
                let cols = bad.f_select(0, row as i64)?.f_nonzero()?;
                let col = cols.f_int64_value(&[0, 0])?;
                let value = w64.f_double_value(&[row as i64, col])?;
                Fault::BadValue {
                    row,
                    col: col as usize,
                    value,
                }
            }
            4 => Fault::Overflow { row },
            2 => Fault::ZeroSum { row },
            _ => Fault::TooFewNonZero {
                row,
                nnz: nnz.f_int64_value(&[row as i64])? as usize,
            },
        })
    }
}

// ---------------------------------------------------------------------------
// Next-token sampling

/// How `sample_logits` picks a token.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SampleOptions {
    /// Divides the logits; `> 0` and finite. Small values approach greedy.
    pub temperature: f64,
    /// Keep only the `k` largest logits (`>= 1`); `None` keeps all.
    pub top_k: Option<i64>,
    /// Keep the smallest set of most likely tokens whose probability reaches
    /// `p`, in `(0, 1]` (after top-k, renormalised); always at least one token.
    pub top_p: Option<f64>,
    /// Take the argmax (the first on ties); the other options are then unused.
    pub greedy: bool,
}

impl Default for SampleOptions {
    fn default() -> Self {
        SampleOptions {
            temperature: 1.0,
            top_k: None,
            top_p: None,
            greedy: false,
        }
    }
}

impl SampleOptions {
    /// `Error::Value` (ValueError) naming the offending value.
    pub fn validate(&self) -> Result<()> {
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return Err(Error::value(format!(
                "temperature must be a positive finite number, got {}",
                self.temperature
            )));
        }
        if let Some(k) = self.top_k {
            if k < 1 {
                return Err(Error::value(format!(
                    "top_k must be at least 1 (or None), got {k}"
                )));
            }
        }
        if let Some(p) = self.top_p {
            if !(p > 0.0 && p <= 1.0) {
                return Err(Error::value(format!(
                    "top_p must be in (0, 1] (or None), got {p}"
                )));
            }
        }
        Ok(())
    }
}

/// Next-token ids from logits: `[V] -> []` (a 0-d tensor), `[B, V] -> [B]`,
/// int64 on the logits' device.
///
/// The logits may hold `-inf` (masked tokens, never drawn) but no nan or
/// `+inf`, and every row needs a finite logit. They are shifted by their row
/// maximum before dividing by the temperature, so any finite logits and any
/// temperature down to the smallest positive float give finite, non-negative
/// weights with a 1 at the maximum: no inf or nan reaches the draw. top-k and
/// top-p work on the sorted candidates; the draw is [`multinomial`]'s, one
/// uniform per row.
pub fn sample_logits<R: UniformSource + ?Sized>(
    logits: &Tensor,
    opts: &SampleOptions,
    rng: &mut R,
) -> Result<Tensor> {
    opts.validate()?;
    let _no_grad = tch::no_grad_guard();
    let size = logits.size();
    let (batched, vocab) = match *size.as_slice() {
        [vocab] => (false, vocab),
        [_, vocab] => (true, vocab),
        _ => {
            return Err(Error::shape(format!(
                "sample expects logits of shape [V] or [B, V], got shape {size:?}"
            )))
        }
    };
    let kind = logits.f_kind()?;
    if !is_floating_point(kind) {
        return Err(Error::shape(format!(
            "sample expects floating-point logits, got {}",
            dtype_name(kind)
        )));
    }
    if vocab == 0 {
        return Err(Error::shape(format!(
            "sample: the logits have no tokens (shape {size:?})"
        )));
    }
    let x = if batched {
        logits.shallow_clone()
    } else {
        logits.f_unsqueeze(0)?
    };
    let x = match kind {
        Kind::Float | Kind::Double => x,
        _ => x.f_to_kind(Kind::Float)?,
    };
    let (rows, _) = x.size2()?;
    let device = x.device();
    let finish = |tokens: Tensor| -> Result<Tensor> {
        if batched {
            Ok(tokens)
        } else {
            Ok(tokens.f_squeeze_dim(0)?)
        }
    };
    if rows == 0 {
        return finish(Tensor::f_empty([0], (Kind::Int64, device))?);
    }

    let row_max = x.f_amax(1, true)?; // nan propagates
    if row_max.f_isfinite()?.f_all()?.f_int64_value(&[])? == 0 {
        return Err(logits_error(&row_max, batched)?);
    }
    if opts.greedy {
        return finish(x.f_argmax(1, false)?);
    }

    // float32 holds temperatures down to ~1e-38; below 1e-30 work in float64,
    // which takes any positive temperature without turning 0 / T into nan.
    let (x, row_max) = if opts.temperature < 1e-30 && x.f_kind()? != Kind::Double {
        (x.f_to_kind(Kind::Double)?, row_max.f_to_kind(Kind::Double)?)
    } else {
        (x, row_max)
    };
    let z = x.f_sub(&row_max)?.f_div_scalar(opts.temperature)?;
    let top_k = opts.top_k.filter(|&k| k < vocab);
    let top_p = opts.top_p.filter(|&p| p < 1.0);
    // The candidates (most likely first, or every token unsorted), and for top-p
    // the mass it measures against: the whole row's, or after top-k the k's.
    let (cand, ids, row_mass) = match (top_k, top_p) {
        (Some(k), _) => {
            let (v, i) = z.f_topk(k, 1, true, true)?;
            (v, Some(i), None)
        }
        (None, Some(p)) => {
            let (v, i, mass) = nucleus_candidates(&z, p)?;
            (v, Some(i), Some(mass))
        }
        (None, None) => (z, None, None),
    };
    let mut weights = cand.f_exp()?;
    if let Some(p) = top_p {
        // Sorted descending: keep a token while the mass before it is below p.
        let w64 = weights.f_to_kind(Kind::Double)?;
        let cum = w64.f_cumsum(1, Kind::Double)?;
        let total = match row_mass {
            Some(mass) => mass,
            None => cum.f_narrow(1, cum.size2()?.1 - 1, 1)?,
        };
        let before = cum.f_sub(&w64)?.f_div(&total)?;
        weights = w64.f_masked_fill(&before.f_ge(p)?, 0.0)?;
    }
    let pos = sample_rows(&weights, 1, true, rng, true)?;
    let tokens = match ids {
        Some(ids) => ids.f_gather(1, &pos, false)?,
        None => pos,
    };
    finish(tokens.f_squeeze_dim(1)?)
}

/// The first `k` used when looking for a nucleus; `k` grows eightfold per try.
const NUCLEUS_FIRST_K: i64 = 256;

/// The most likely tokens of each row of `z` (logits less their row maximum,
/// scaled), sorted descending, enough of them that in every row their weight
/// `exp(z)` reaches `p` of the row's total; and that total `[rows, 1]` (float64).
/// A few `topk` calls instead of sorting the whole vocabulary.
fn nucleus_candidates(z: &Tensor, p: f64) -> Result<(Tensor, Tensor, Tensor)> {
    let (_, vocab) = z.size2()?;
    let total = z.f_exp()?.f_sum_dim_intlist(1, true, Kind::Double)?;
    let target = total.f_mul_scalar(p)?;
    let mut k = NUCLEUS_FIRST_K.min(vocab);
    loop {
        if k == vocab {
            let (v, i) = z.f_sort(1, true)?;
            return Ok((v, i, total));
        }
        let (v, i) = z.f_topk(k, 1, true, true)?;
        let mass = v.f_exp()?.f_sum_dim_intlist(1, true, Kind::Double)?;
        if mass.f_ge_tensor(&target)?.f_all()?.f_int64_value(&[])? != 0 {
            return Ok((v, i, total));
        }
        k = k.saturating_mul(8).min(vocab);
    }
}

/// Why a row's maximum is not finite: nan, +inf, or no finite logit at all.
fn logits_error(row_max: &Tensor, batched: bool) -> Result<Error> {
    let rows = row_max.size2()?.0 as usize;
    let mut m = vec![0f64; rows];
    row_max
        .f_to_kind(Kind::Double)?
        .f_to_device(Device::Cpu)?
        .f_contiguous()?
        .f_copy_data(&mut m, rows)?;
    Ok(nonfinite_logits(&m, batched))
}

/// The error for logits whose row maxima `m` are not all finite: the first
/// row with nan, else with `+inf`, else with no finite logit.
pub(crate) fn nonfinite_logits(m: &[f64], batched: bool) -> Error {
    let where_ = |row: usize| {
        if batched {
            format!(" (row {row})")
        } else {
            String::new()
        }
    };
    let msg = if let Some(row) = m.iter().position(|x| x.is_nan()) {
        format!("sample: the logits contain nan{}", where_(row))
    } else if let Some(row) = m.iter().position(|&x| x == f64::INFINITY) {
        format!("sample: the logits contain +inf{}", where_(row))
    } else {
        let row = m.iter().position(|x| !x.is_finite()).unwrap_or(0);
        format!(
            "sample: every logit is -inf{}; at least one must be finite",
            where_(row)
        )
    };
    Error::Shape(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Uniforms from a fixed list, for exact expectations.
    struct Fixed(Vec<f64>);

    impl UniformSource for Fixed {
        fn uniform(&mut self, shape: &[i64], device: Device) -> Result<Tensor> {
            let n: i64 = shape.iter().product();
            let v: Vec<f64> = self.0.iter().copied().cycle().take(n as usize).collect();
            Ok(Tensor::f_from_slice(&v)?
                .f_view(shape)?
                .f_to_device(device)?)
        }
    }

    fn t1(v: &[f32]) -> Tensor {
        Tensor::from_slice(v)
    }

    fn ids(t: &Tensor) -> Vec<i64> {
        Vec::<i64>::try_from(&t.flatten(0, -1)).unwrap()
    }

    fn counts(t: &Tensor, cats: usize) -> Vec<f64> {
        let mut c = vec![0.0; cats];
        for i in ids(t) {
            c[i as usize] += 1.0;
        }
        c
    }

    /// Pearson's statistic against `p` (zero-probability cells must be empty).
    fn chi2(c: &[f64], p: &[f64]) -> f64 {
        let n: f64 = c.iter().sum();
        c.iter()
            .zip(p)
            .map(|(&o, &p)| {
                if p == 0.0 {
                    assert_eq!(o, 0.0, "a zero-probability category was drawn");
                    0.0
                } else {
                    (o - n * p).powi(2) / (n * p)
                }
            })
            .sum()
    }

    #[test]
    fn fenwick_finds_prefix_blocks() {
        let mut f = cpu::Fenwick::new();
        let sums = [1.0, 0.0, 2.0, 3.0, 0.0, 4.0, 5.0];
        f.build(&sums);
        assert_eq!(f.total(), 15.0);
        assert_eq!(f.find(0.0), (0, 0.0));
        assert_eq!(f.find(0.999), (0, 0.0));
        assert_eq!(f.find(1.0), (2, 1.0));
        assert_eq!(f.find(5.5), (3, 3.0));
        assert_eq!(f.find(6.0), (5, 6.0));
        assert_eq!(f.find(15.0).0, 7);
        f.add(2, -2.0);
        assert_eq!(f.total(), 13.0);
        assert_eq!(f.find(1.0), (3, 1.0));
    }

    #[test]
    fn fixed_uniforms_pick_the_expected_categories() {
        // Weights [0, 1, 0, 3]: u in [0, .25) -> 1, [.25, 1) -> 3; zero weights never.
        let w = t1(&[0.0, 1.0, 0.0, 3.0]);
        let mut rng = Fixed(vec![0.0, 0.2499, 0.25, 0.999_999_999_999]);
        let got = multinomial(&w, 4, true, &mut rng).unwrap();
        assert_eq!(ids(&got), [1, 1, 3, 3]);
        // The largest uniform below 1 at the top of a total that is a power of two.
        let mut rng = Fixed(vec![1.0 - f64::EPSILON / 2.0]);
        let w = t1(&[1.0, 3.0, 0.0, 0.0]);
        assert_eq!(ids(&multinomial(&w, 1, true, &mut rng).unwrap()), [1]);
        // A source answering 1.0 (outside [0, 1)) puts t at the total: the guard
        // still returns the last positive weight, never a zero one.
        let mut rng = Fixed(vec![1.0]);
        assert_eq!(ids(&multinomial(&w, 1, true, &mut rng).unwrap()), [1]);
        assert_eq!(
            ids(&tensor_ops::sample(&w.view([1, 4]), 1, true, &mut rng)
                .unwrap()
                .unwrap()),
            [1]
        );
    }

    #[test]
    fn shapes_and_dtypes() {
        let w = Tensor::rand([5, 7], (Kind::Float, Device::Cpu));
        let mut g = DefaultGenerator;
        assert_eq!(multinomial(&w, 3, false, &mut g).unwrap().size(), [5, 3]);
        assert_eq!(multinomial(&w.get(0), 9, true, &mut g).unwrap().size(), [9]);
        for kind in [Kind::Half, Kind::BFloat16, Kind::Double] {
            let out = multinomial(&w.to_kind(kind), 2, false, &mut g).unwrap();
            assert_eq!((out.size(), out.kind()), (vec![5, 2], Kind::Int64));
        }
        let empty = Tensor::zeros([0, 4], (Kind::Float, Device::Cpu));
        assert_eq!(multinomial(&empty, 2, true, &mut g).unwrap().size(), [0, 2]);
        // Non-contiguous input.
        let wt = Tensor::rand([7, 5], (Kind::Float, Device::Cpu)).tr();
        assert_eq!(multinomial(&wt, 2, true, &mut g).unwrap().size(), [5, 2]);
    }

    #[test]
    fn errors_name_the_problem() {
        let mut g = DefaultGenerator;
        let mut msg = |w: &Tensor, n: i64, r: bool| match multinomial(w, n, r, &mut g) {
            Err(Error::Shape(m)) => m,
            other => panic!("expected a Shape error, got {other:?}"),
        };
        assert!(msg(
            &Tensor::ones([2, 2, 2], (Kind::Float, Device::Cpu)),
            1,
            true
        )
        .contains("3-D"));
        assert!(
            msg(&Tensor::ones([3], (Kind::Int64, Device::Cpu)), 1, true).contains("torch.int64")
        );
        assert!(msg(&t1(&[1.0, 1.0]), 0, true).contains("got 0"));
        assert!(msg(&t1(&[1.0, 1.0]), 3, false).contains("only 2 categories"));
        assert!(msg(&t1(&[1.0, -2.0]), 1, true).contains("input[1] = -2"));
        assert!(msg(&t1(&[1.0, f32::NAN]), 1, true).contains("NaN"));
        assert!(msg(&t1(&[1.0, f32::INFINITY]), 1, true).contains("inf"));
        let rows = Tensor::from_slice(&[1.0f32, 1.0, 0.0, 0.0]).view([2, 2]);
        assert!(msg(&rows, 1, true).contains("row 1 sum to 0"));
        let few = Tensor::from_slice(&[1.0f32, 1.0, 0.0, 5.0, 0.0, 0.0]).view([2, 3]);
        let m = msg(&few, 2, false);
        assert!(
            m.contains("row 1") && m.contains("only 1 non-zero") && m.contains("num_samples = 2"),
            "{m}"
        );
        // A bad value outranks a zero row before it.
        let mixed = Tensor::from_slice(&[0.0f32, 0.0, 1.0, f32::NAN]).view([2, 2]);
        assert!(msg(&mixed, 1, true).contains("input[1, 1]"));
        let huge = Tensor::from_slice(&[f64::MAX, f64::MAX]);
        assert!(msg(&huge, 1, true).contains("sum to inf"));
    }

    #[test]
    fn zero_weights_are_never_drawn() {
        let mut w = vec![0f32; 300];
        for i in (0..300).step_by(7) {
            w[i] = (i % 5 + 1) as f32;
        }
        let nz = w.iter().filter(|&&x| x > 0.0).count() as i64;
        let w = Tensor::from_slice(&w).view([1, 300]).repeat([64, 1]);
        let mut g = DefaultGenerator;
        for (n, r) in [(500, true), (nz, false)] {
            let out = multinomial(&w, n, r, &mut g).unwrap();
            let picked = w.gather(1, &out, false);
            assert!(bool::try_from(picked.gt(0.0).all()).unwrap());
            if !r {
                // All distinct within each row.
                let sorted = out.sort(1, false).0;
                let diff = sorted.narrow(1, 1, nz - 1) - sorted.narrow(1, 0, nz - 1);
                assert!(bool::try_from(diff.gt(0).all()).unwrap());
            }
        }
        // A weight that dwarfs the rest: after it is removed the rest are still right.
        let w = t1(&[1e30, 1.0, 0.0, 1.0]);
        let out = multinomial(&w, 3, false, &mut g).unwrap();
        assert_eq!(ids(&out)[0], 0);
        let mut rest = ids(&out)[1..].to_vec();
        rest.sort();
        assert_eq!(rest, [1, 3]);
    }

    /// The CPU kernel and the whole-tensor path both follow the distribution;
    /// 10 categories, 200k draws, chi-square 9 d.o.f. below 40 (p ~ 1e-5).
    #[test]
    fn both_paths_follow_the_distribution() {
        let p = [0.0, 1.0, 2.0, 3.0, 4.0, 0.0, 5.0, 6.0, 7.0, 2.0];
        let s: f64 = p.iter().sum();
        let probs: Vec<f64> = p.iter().map(|x| x / s).collect();
        let w = Tensor::from_slice(&p)
            .to_kind(Kind::Float)
            .view([1, 10])
            .repeat([1000, 1]);
        let mut g = DefaultGenerator;
        let cpu_draws = cpu::sample(&w, 200, true, &mut g).unwrap().unwrap();
        let ops_draws = tensor_ops::sample(&w, 200, true, &mut g).unwrap().unwrap();
        for d in [cpu_draws, ops_draws] {
            let x = chi2(&counts(&d, 10), &probs);
            assert!(x < 40.0, "chi2 = {x}");
        }
        // Without replacement: the second draw's distribution.
        let mut second = vec![0.0; 10];
        for (i, pi) in probs.iter().enumerate() {
            for (j, pj) in probs.iter().enumerate() {
                if i != j && *pi > 0.0 {
                    second[j] += pi * pj / (1.0 - pi);
                }
            }
        }
        let w = w.narrow(1, 0, 10).repeat([100, 1]); // 100k rows
        let a = cpu::sample(&w, 2, false, &mut g).unwrap().unwrap();
        let b = tensor_ops::sample(&w, 2, false, &mut g).unwrap().unwrap();
        for d in [a, b] {
            let x1 = chi2(&counts(&d.select(1, 0), 10), &probs);
            let x2 = chi2(&counts(&d.select(1, 1), 10), &second);
            assert!(x1 < 40.0 && x2 < 40.0, "chi2 = {x1}, {x2}");
        }
    }

    /// Keeps what the default generator gave, to replay it.
    struct Recording(Vec<Tensor>);

    impl UniformSource for Recording {
        fn uniform(&mut self, shape: &[i64], device: Device) -> Result<Tensor> {
            let u = DefaultGenerator.uniform(shape, device)?;
            self.0.push(u.copy());
            Ok(u)
        }
    }

    struct Replay(Vec<Tensor>);

    impl UniformSource for Replay {
        fn uniform(&mut self, _shape: &[i64], _device: Device) -> Result<Tensor> {
            Ok(self.0.remove(0))
        }
    }

    /// The same uniforms give the same draws (whatever the thread count; the
    /// global `manual_seed` is tested from Python, where no other test runs
    /// concurrently on the default generator); fresh ones give others.
    #[test]
    fn draws_depend_only_on_the_uniforms() {
        let w = Tensor::rand([2000, 100], (Kind::Float, Device::Cpu));
        let logits = Tensor::randn([3, 1000], (Kind::Float, Device::Cpu));
        let opts = SampleOptions {
            top_p: Some(0.9),
            ..Default::default()
        };
        for replacement in [true, false] {
            let mut rec = Recording(Vec::new());
            let a = multinomial(&w, 5, replacement, &mut rec).unwrap();
            let s = sample_logits(&logits, &opts, &mut rec).unwrap();
            let mut replay = Replay(rec.0);
            assert!(a.equal(&multinomial(&w, 5, replacement, &mut replay).unwrap()));
            assert!(s.equal(&sample_logits(&logits, &opts, &mut replay).unwrap()));
            let b = multinomial(&w, 5, replacement, &mut DefaultGenerator).unwrap();
            assert!(!a.equal(&b));
        }
    }

    #[test]
    fn sample_options_are_validated() {
        let x = t1(&[0.0, 1.0]);
        let mut g = DefaultGenerator;
        for opts in [
            SampleOptions {
                temperature: 0.0,
                ..Default::default()
            },
            SampleOptions {
                temperature: f64::NAN,
                ..Default::default()
            },
            SampleOptions {
                top_k: Some(0),
                ..Default::default()
            },
            SampleOptions {
                top_p: Some(0.0),
                ..Default::default()
            },
            SampleOptions {
                top_p: Some(1.5),
                ..Default::default()
            },
        ] {
            assert!(
                matches!(sample_logits(&x, &opts, &mut g), Err(Error::Value(_))),
                "{opts:?}"
            );
        }
        let bad = t1(&[0.0, f32::NAN]);
        assert!(matches!(
            sample_logits(&bad, &SampleOptions::default(), &mut g),
            Err(Error::Shape(_))
        ));
        let masked = t1(&[f32::NEG_INFINITY, f32::NEG_INFINITY]);
        assert!(matches!(
            sample_logits(&masked, &SampleOptions::default(), &mut g),
            Err(Error::Shape(_))
        ));
    }

    #[test]
    fn sample_shapes_and_limits() {
        let mut g = DefaultGenerator;
        let logits = Tensor::randn([4, 50], (Kind::Float, Device::Cpu)) * 5.0;
        let argmax = logits.argmax(1, false);
        let opts = SampleOptions::default();
        assert_eq!(sample_logits(&logits, &opts, &mut g).unwrap().size(), [4]);
        assert_eq!(
            sample_logits(&logits.get(0), &opts, &mut g).unwrap().size(),
            Vec::<i64>::new()
        );
        for o in [
            SampleOptions {
                greedy: true,
                ..opts
            },
            SampleOptions {
                top_k: Some(1),
                ..opts
            },
            SampleOptions {
                top_p: Some(1e-9),
                ..opts
            },
            SampleOptions {
                temperature: 1e-8,
                ..opts
            },
            SampleOptions {
                temperature: f64::MIN_POSITIVE,
                top_p: Some(0.5),
                ..opts
            },
        ] {
            for _ in 0..20 {
                assert!(
                    sample_logits(&logits, &o, &mut g).unwrap().equal(&argmax),
                    "{o:?}"
                );
            }
        }
        // Masked tokens are never drawn.
        let masked = Tensor::from_slice(&[f32::NEG_INFINITY, 0.0, f32::NEG_INFINITY, 0.0]);
        for _ in 0..50 {
            let t = sample_logits(&masked, &opts, &mut g)
                .unwrap()
                .int64_value(&[]);
            assert!(t == 1 || t == 3);
        }
    }
}
