//! The work between a chunk's products, float32 on the CPU: per row of the
//! logits `z`, in one walk while the row (tens of KB) is in the core's cache,
//!
//! ```text
//! z += b, m = max_j z        (one read and write)
//! e = exp(z - m), s = sum e  (one more, in place)
//! log p(y) = z_y - m - ln s, and for gradients e[y] -= s, q = r / s
//! ```
//!
//! Why: as libtorch ops each of these is a pass over the whole `[k, V]`
//! chunk (megabytes, streamed from memory), and the bias is first broadcast
//! into `addmm`'s output, one more. perf of the head's forward and backward
//! at 700 x 200 x 10,000 (AMD Zen 3, 2 threads): those passes took ~9% of
//! the samples, this walk 4.3%; the products are the rest either way.
//!
//! The rows are split between libtorch's threads (`kernel::team`).

// Values from Python reach this module: no index or slice may panic.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use std::sync::Mutex;

use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};
use crate::kernel::block::Isa;
use crate::kernel::lanes::{self, max_of, LANES};
use crate::kernel::team::{self, SpinBarrier};

/// Rows a thread should have at least: below this, starting the team costs
/// more than splitting saves.
const MIN_ROWS_PER_THREAD: usize = 8;

/// Whether [`Chunk`] computes this head (float32 on the CPU); otherwise
/// `pass` runs the same arithmetic as libtorch ops.
pub(super) fn applies(x: &Tensor) -> bool {
    x.device() == Device::Cpu && x.f_kind().ok() == Some(Kind::Float)
}

/// One chunk of `k` rows of `v` classes.
pub(super) struct Chunk<'a> {
    /// `[k * stride]`, row `i`'s `v` classes at `i * stride`: the logits
    /// without the bias in, `e` (or `e - onehot(y) s` with gradients) out.
    /// Columns past `v` are not read.
    pub z: &'a mut [f32],
    pub stride: usize,
    pub v: usize,
    /// `[v]`.
    pub bias: Option<&'a [f32]>,
    /// `[k]`, each in `0..v` (checked by `Operands`; a row whose target is
    /// not gets NaN).
    pub y: &'a [i64],
    /// `[k]` out: `log p(y)`.
    pub logp: &'a mut [f32],
    /// The row weights `r` `[k]` and, out, `q = r / s` `[k]`.
    pub grad: Option<(&'a [f32], &'a mut [f32])>,
}

impl<'a> Chunk<'a> {
    /// Runs the chunk's rows on up to `threads` threads.
    pub fn run(self, isa: Isa, threads: usize) -> Result<()> {
        let k = self.y.len();
        if self.v == 0
            || self.stride < self.v
            || self.z.len() != k * self.stride
            || self.logp.len() != k
        {
            return Err(Error::shape(format!(
                "internal: a head chunk of {} logits for {k} rows of {} classes, {} apart",
                self.z.len(),
                self.v,
                self.stride
            )));
        }
        let threads = team::size(threads, k, k, MIN_ROWS_PER_THREAD);
        if threads == 1 {
            self.rows(isa);
            return Ok(());
        }
        let parts = Mutex::new(self.split(threads));
        team::run(threads, &SpinBarrier::new(threads), |tid| {
            let part = parts
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_mut(tid)
                .and_then(Option::take);
            if let Some(part) = part {
                part.rows(isa);
            }
        })
    }

    /// `parts` chunks of consecutive rows, nearly equal.
    fn split(self, parts: usize) -> Vec<Option<Chunk<'a>>> {
        let k = self.y.len();
        let Chunk {
            mut z,
            stride,
            v,
            bias,
            mut y,
            mut logp,
            mut grad,
        } = self;
        let mut out = Vec::with_capacity(parts);
        for part in 0..parts {
            let rows = team::split(k, parts, part).len();
            let (z_p, z_rest) = std::mem::take(&mut z).split_at_mut(rows * stride);
            let (y_p, y_rest) = y.split_at(rows);
            let (l_p, l_rest) = std::mem::take(&mut logp).split_at_mut(rows);
            let (g_p, g_rest) = match grad.take() {
                Some((r, q)) => {
                    let (r_p, r_rest) = r.split_at(rows);
                    let (q_p, q_rest) = q.split_at_mut(rows);
                    (Some((r_p, q_p)), Some((r_rest, q_rest)))
                }
                None => (None, None),
            };
            out.push(Some(Chunk {
                z: z_p,
                stride,
                v,
                bias,
                y: y_p,
                logp: l_p,
                grad: g_p,
            }));
            (z, y, logp, grad) = (z_rest, y_rest, l_rest, g_rest);
        }
        out
    }

    fn rows(self, isa: Isa) {
        match isa {
            // SAFETY: `Isa::detect` reports only what the CPU has.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => unsafe { self.rows_avx512() },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { self.rows_avx2() },
            _ => self.rows_body(),
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512vl,avx512dq,avx2,fma")]
    unsafe fn rows_avx512(self) {
        self.rows_body()
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn rows_avx2(self) {
        self.rows_body()
    }

    #[inline(always)]
    fn rows_body(self) {
        let Chunk {
            z,
            stride,
            v,
            bias,
            y,
            logp,
            grad,
        } = self;
        // `run` checked `v <= stride`.
        let rows = z
            .chunks_exact_mut(stride)
            .map(|z| z.split_at_mut(v).0)
            .zip(y)
            .zip(logp.iter_mut());
        match grad {
            Some((r, q)) => {
                for (((z, &y), logp), (&r, q)) in rows.zip(r.iter().zip(q.iter_mut())) {
                    let (lp, s) = row(z, bias, y);
                    *logp = lp;
                    if let Some(zy) = usize::try_from(y).ok().and_then(|y| z.get_mut(y)) {
                        *zy -= s;
                    }
                    *q = r / s;
                }
            }
            None => {
                for ((z, &y), logp) in rows {
                    *logp = row(z, bias, y).0;
                }
            }
        }
    }
}

/// One row: `z` becomes `e = exp(z + b - m)`; returns `log p(y)` and `s`.
/// A NaN anywhere in the row, a `+inf`, or every value `-inf` makes both NaN,
/// as torch's `log_softmax` does.
#[inline(always)]
fn row(z: &mut [f32], bias: Option<&[f32]>, y: i64) -> (f32, f32) {
    let m = match bias {
        Some(b) => add_and_max(z, b),
        None => max_of(z),
    };
    let z_y = usize::try_from(y)
        .ok()
        .and_then(|y| z.get(y))
        .copied()
        .unwrap_or(f32::NAN);
    let s = exp_and_sum(z, m);
    // An infinite `m` made `s` NaN (`inf - inf` in the row's exponents).
    let log_p = (z_y - m) as f64 - s.ln();
    (log_p as f32, s as f32)
}

/// `z += b`, and the largest value (NaN never wins a comparison; the NaN
/// reaches the sum instead).
#[inline(always)]
fn add_and_max(z: &mut [f32], b: &[f32]) -> f32 {
    let (zc, z_rest) = z.as_chunks_mut::<LANES>();
    let (bc, b_rest) = b.as_chunks::<LANES>();
    let mut acc = [f32::NEG_INFINITY; LANES];
    for (zs, bs) in zc.iter_mut().zip(bc) {
        // Through a copy: written in place, LLVM cannot rule out that `z`
        // and `b` overlap once inlined, and adds one lane at a time.
        let mut x = *zs;
        for ((x, &b), a) in x.iter_mut().zip(bs).zip(acc.iter_mut()) {
            *x += b;
            *a = if *x > *a { *x } else { *a };
        }
        *zs = x;
    }
    let mut m = max_of(&acc);
    for (z, &b) in z_rest.iter_mut().zip(b_rest) {
        *z += b;
        m = if *z > m { *z } else { m };
    }
    m
}

/// Vectors summed in float32 lanes before their sums join the float64
/// total: each lane adds at most this many terms of at most 1, so its
/// rounding stays below 1e-5 of the lane's sum, where float64 lanes would
/// halve the vectors' width.
const BLOCK: usize = 64;

/// `z = e^{z - m}` in place and `sum z` (each term a float32 within about
/// 2 ulp, `lanes::exp`). Terms below `e^-87` are 0, as float32's `exp`
/// rounds to (they are below 2e-38 beside a sum of at least 1).
#[inline(always)]
fn exp_and_sum(z: &mut [f32], m: f32) -> f64 {
    let (zc, rest) = z.as_chunks_mut::<LANES>();
    let mut total = 0.0f64;
    for block in zc.chunks_mut(BLOCK) {
        let mut acc = [0.0f32; LANES];
        for zs in block {
            for (a, z) in acc.iter_mut().zip(zs.iter_mut()) {
                *z = exp_nonpositive(*z - m);
                *a += *z;
            }
        }
        total += acc.iter().map(|&a| a as f64).sum::<f64>();
    }
    for z in rest {
        *z = exp_nonpositive(*z - m);
        total += *z as f64;
    }
    total
}

#[inline(always)]
fn exp_nonpositive(x: f32) -> f32 {
    let e = lanes::exp(x);
    if x < -87.0 {
        0.0
    } else {
        e
    }
}

/// The float32 elements of a contiguous CPU tensor, borrowed while `t` is.
///
/// # Safety
/// Nothing else reads or writes the tensor's memory while the slice lives.
pub(super) unsafe fn floats_mut(t: &mut Tensor) -> Result<&mut [f32]> {
    let len = checked(t, Kind::Float)?;
    Ok(match len {
        0 => &mut [],
        _ => std::slice::from_raw_parts_mut(t.data_ptr() as *mut f32, len),
    })
}

/// # Safety
/// Nothing writes the tensor's memory while the slice lives.
pub(super) unsafe fn floats(t: &Tensor) -> Result<&[f32]> {
    let len = checked(t, Kind::Float)?;
    Ok(match len {
        0 => &[],
        _ => std::slice::from_raw_parts(t.data_ptr() as *const f32, len),
    })
}

/// # Safety
/// Nothing writes the tensor's memory while the slice lives.
pub(super) unsafe fn ids(t: &Tensor) -> Result<&[i64]> {
    let len = checked(t, Kind::Int64)?;
    Ok(match len {
        0 => &[],
        _ => std::slice::from_raw_parts(t.data_ptr() as *const i64, len),
    })
}

/// The element count of `t`, a contiguous CPU tensor of `kind`.
fn checked(t: &Tensor, kind: Kind) -> Result<usize> {
    if t.device() != Device::Cpu || t.f_kind()? != kind || !t.is_contiguous() {
        return Err(Error::shape(format!(
            "internal: the head's row pass needs contiguous CPU {kind:?} tensors, got {:?} {:?}",
            t.f_kind()?,
            t.size()
        )));
    }
    Ok(t.numel())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The chunk's outputs against float64 arithmetic written out, for every
    /// instruction set this CPU has, and any number of threads.
    #[test]
    fn rows_match_float64_arithmetic() {
        // Rows 48 apart, their last 3 columns NaN: never read, never written.
        let (k, v, stride) = (37usize, 45usize, 48usize);
        let z0: Vec<f32> = (0..k * stride)
            .map(|i| match i % stride < v {
                true => ((i * 7919 % 1000) as f32 / 100.0) - 5.0,
                false => f32::NAN,
            })
            .collect();
        let b: Vec<f32> = (0..v).map(|j| (j as f32 * 0.37).sin()).collect();
        let y: Vec<i64> = (0..k).map(|i| (i * 13 % v) as i64).collect();
        let r: Vec<f32> = (0..k).map(|i| 0.5 + i as f32 * 0.01).collect();
        let isas = [Isa::detect(), Isa::Portable];
        for isa in isas {
            for threads in [1, 2, 3] {
                let mut z = z0.clone();
                let mut logp = vec![0f32; k];
                let mut q = vec![0f32; k];
                Chunk {
                    z: &mut z,
                    stride,
                    v,
                    bias: Some(&b),
                    y: &y,
                    logp: &mut logp,
                    grad: Some((&r, &mut q)),
                }
                .run(isa, threads)
                .unwrap();
                for i in 0..k {
                    let zi: Vec<f64> = (0..v)
                        .map(|j| z0[i * stride + j] as f64 + b[j] as f64)
                        .collect();
                    assert!(z[i * stride + v..(i + 1) * stride]
                        .iter()
                        .all(|z| z.is_nan()));
                    let m = zi.iter().cloned().fold(f64::MIN, f64::max);
                    let s: f64 = zi.iter().map(|z| (z - m).exp()).sum();
                    let want = zi[y[i] as usize] - m - s.ln();
                    assert!((logp[i] as f64 - want).abs() < 1e-5, "{isa:?} row {i}");
                    assert!((q[i] as f64 - r[i] as f64 / s).abs() < 1e-6 * r[i] as f64 / s);
                    for j in 0..v {
                        let onehot = if j == y[i] as usize { s } else { 0.0 };
                        let want = (zi[j] - m).exp() - onehot;
                        let got = z[i * stride + j] as f64;
                        assert!(
                            (got - want).abs() < 1e-5 * s,
                            "{isa:?} {i},{j}: {got} {want}"
                        );
                    }
                }
            }
        }
    }

    /// torch's log_softmax gives NaN for a row with a NaN, a `+inf` or only
    /// `-inf`; other rows are untouched by them.
    #[test]
    fn non_finite_rows_are_nan_alone() {
        let v = 20usize;
        let mut z = vec![0.5f32; 4 * v];
        z[3] = f32::NAN;
        z[v + 17] = f32::INFINITY;
        for x in &mut z[2 * v..3 * v] {
            *x = f32::NEG_INFINITY;
        }
        let y = [0i64, 1, 2, 3];
        let mut logp = [0f32; 4];
        Chunk {
            z: &mut z,
            stride: v,
            v,
            bias: None,
            y: &y,
            logp: &mut logp,
            grad: None,
        }
        .run(Isa::detect(), 2)
        .unwrap();
        assert!(logp[..3].iter().all(|l| l.is_nan()), "{logp:?}");
        assert!((logp[3] as f64 + (v as f64).ln()).abs() < 1e-6);
    }

    #[test]
    fn mismatched_sizes_are_an_error_not_a_panic() {
        let mut z = vec![0f32; 10];
        let mut logp = [0f32; 3];
        let chunk = Chunk {
            z: &mut z,
            stride: 5,
            v: 5,
            bias: None,
            y: &[0, 1, 2],
            logp: &mut logp,
            grad: None,
        };
        assert!(chunk.run(Isa::detect(), 1).is_err());
    }
}
