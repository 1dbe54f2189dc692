//! The CPU kernel of [`multinomial`](fn@crate::sampler::multinomial): block
//! sums, a Fenwick tree over them and a scan of one block per draw.
//!
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

// Values from Python reach this module: no index or slice may panic.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use std::sync::Mutex;

use tch::{Device, Kind, Tensor};

use super::Fault;
use crate::error::{Error, Result};
use crate::kernel::team::{self, try_vec};
use crate::sampler::uniform::{uniforms, UniformSource};
use crate::sampler::{BLOCK, UNIFORM_CHUNK, WORK_PER_THREAD};

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
    let torch_threads = team::available();
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
        *sum = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
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
struct Fenwick {
    tree: Vec<f64>, // 1-based; tree[0] unused
}

impl Fenwick {
    fn new() -> Self {
        Fenwick { tree: Vec::new() }
    }

    // why: `tree` holds n + 1 entries; `i` runs over 1..=n and `j` is tested against n.
    #[allow(clippy::indexing_slicing)]
    fn build(&mut self, sums: &[f64]) {
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

    fn add(&mut self, block: usize, delta: f64) {
        let mut i = block + 1;
        while let Some(node) = self.tree.get_mut(i) {
            *node += delta;
            i += i & i.wrapping_neg();
        }
    }

    // why: `i` starts at tree.len() - 1 and only clears bits, so it stays below tree.len().
    #[allow(clippy::indexing_slicing)]
    fn total(&self) -> f64 {
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
    fn find(&self, t: f64) -> (usize, f64) {
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
fn draw_without_replacement<W: Weight>(w: &[W], sums: &[f64], s: &mut Scratch, out: &mut [i64]) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fenwick_finds_prefix_blocks() {
        let mut f = Fenwick::new();
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
}
