//! One phase of a timestep: every row's product with a range of packed blocks,
//! followed in registers by the layer's pointwise step (gates, state update),
//! written straight to where the next phase reads it.

use std::ops::Range;

use super::lanes::{self, Lanes, LANES};
use super::packed::{PackedLayer, ALL_LIVE, SLOTS};
use super::team::SharedBuf;

/// Rows computed together: each loaded weight vector serves this many.
const ROW_TILE: usize = 4;

/// [`ROW_TILE`] for the AVX2 tile: twelve accumulators, three broadcasts and
/// a weight vector fill the sixteen registers. Four rows in passes of two
/// load each weight twice and ran 1.7x slower (AMD Zen 4, capped to AVX2);
/// the portable loop, which spills, 4x slower.
const ROW_TILE_AVX2: usize = 3;

/// What follows the product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pointwise {
    /// Slots i, f, g, o of 16 units; updates `c` in the state buffer.
    Lstm,
    /// Slots r, z, n_x, n_h of 16 units: `n = tanh(n_x + r n_h)`,
    /// `h' = (1 - z) n + z h`, with `h` read from the input's recurrent part.
    Gru,
    /// Four slots of 16 units each.
    Tanh,
    Relu,
    /// The product itself (the output layer's logits).
    Linear,
}

impl Pointwise {
    /// Output units per block.
    pub fn units(self) -> usize {
        match self {
            Pointwise::Lstm | Pointwise::Gru => LANES,
            _ => SLOTS * LANES,
        }
    }
}

/// Where results go: row `r`'s unit `u` lands at `buf[r * stride + offset + u]`.
#[derive(Clone, Copy)]
pub struct Dest<'a> {
    pub buf: &'a SharedBuf,
    pub stride: usize,
    pub offset: usize,
}

/// Where the activated gates go for a backward pass: row `r`'s unit `u` of
/// slot `s` lands at `buf[r * stride + offset + s * slot_stride + u]`. The
/// GRU's slots are r, z, n and the recurrent candidate part `W_hn h + b_hn`;
/// the LSTM's are i, f, g, o, and its new cell state goes to `cell`.
#[derive(Clone, Copy)]
pub struct GateSave<'a> {
    pub buf: &'a SharedBuf,
    pub stride: usize,
    pub offset: usize,
    pub slot_stride: usize,
    pub cell: Option<Dest<'a>>,
}

impl GateSave<'_> {
    /// # Safety
    /// As for [`run`]: block `b` of row `r` belongs to the calling thread.
    #[inline(always)]
    unsafe fn write(&self, r: usize, b: usize, act: &[[f32; LANES]; SLOTS]) {
        for (slot, values) in act.iter().enumerate() {
            let at = r * self.stride + self.offset + slot * self.slot_stride + b * LANES;
            self.buf.get_mut(at..at + LANES).copy_from_slice(values);
        }
    }
}

pub struct Job<'a> {
    pub layer: &'a PackedLayer,
    pub pointwise: Pointwise,
    /// `[rows, layer.k]`.
    pub input: &'a SharedBuf,
    pub rows: usize,
    /// The LSTM's cell state `[rows, stride]`, updated in place.
    pub cell: Option<Dest<'a>>,
    /// One or two places the outputs are written to.
    pub out: [Option<Dest<'a>>; 2],
    /// The GRU's gates, kept when a backward pass will need them.
    pub gates: Option<GateSave<'a>>,
}

/// The instruction sets the kernels are compiled for, best first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    Avx512,
    Avx2,
    Portable,
}

impl Isa {
    /// The best the CPU has, capped by `RUSTRNN_CPU` ([`crate::cpu`]).
    pub fn detect() -> Self {
        match crate::cpu::level() {
            crate::cpu::Level::Avx512 => Isa::Avx512,
            crate::cpu::Level::Avx2 => Isa::Avx2,
            crate::cpu::Level::Portable => Isa::Portable,
        }
    }
}

/// Runs `job` for `blocks` (a range of the layer's blocks).
///
/// # Safety
/// Within the current barrier phase, no other thread writes `job.input` or
/// touches the parts of `job.cell` and `job.out` that belong to `blocks`.
pub unsafe fn run(isa: Isa, job: &Job, blocks: Range<usize>) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => run_avx512(job, blocks),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => run_avx2(job, blocks),
        // aarch64 has fused multiply-add in its base set; elsewhere `mul_add`
        // without hardware support would be a slow library call.
        _ => run_body::<{ cfg!(target_arch = "aarch64") }, PORTABLE>(job, blocks),
    }
}

/// Which written-out tile a build of [`run_body`] uses; const generics take
/// no enums yet.
const PORTABLE: u8 = 0;
const AVX2: u8 = 1;
const AVX512: u8 = 2;

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx512dq,avx2,fma")]
unsafe fn run_avx512(job: &Job, blocks: Range<usize>) {
    run_body::<true, AVX512>(job, blocks)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn run_avx2(job: &Job, blocks: Range<usize>) {
    run_body::<true, AVX2>(job, blocks)
}

/// `TILE`: the intrinsics tile compiled inside `run_avx512` or `run_avx2`, or
/// the portable one (with `FMA`, fused multiply-adds).
#[inline(always)]
unsafe fn run_body<const FMA: bool, const TILE: u8>(job: &Job, blocks: Range<usize>) {
    if job.pointwise == Pointwise::Gru {
        run_tiles::<FMA, TILE, true>(job, blocks)
    } else {
        run_tiles::<FMA, TILE, false>(job, blocks)
    }
}

/// `SPLIT`: the GRU's layout, whose slot 2 (`W_in x + b_in`) reads only the
/// input part of `[x, h]` and slot 3 (`W_hn h + b_hn`) only the recurrent
/// part. Their other halves are zero weights, and skipping them is not only
/// a quarter fewer multiply-adds: `0 · inf` is NaN, so an infinite input
/// would otherwise poison the recurrent part, which torch computes apart.
#[inline(always)]
unsafe fn run_tiles<const FMA: bool, const TILE: u8, const SPLIT: bool>(
    job: &Job,
    blocks: Range<usize>,
) {
    let k = job.layer.k;
    let split = if SPLIT { job.layer.x_width.min(k) } else { k };
    let input = job.input.get(0..job.rows * k);
    for b in blocks {
        let (panel, bias) = job.layer.block(b);
        let mut r0 = 0;
        while r0 < job.rows {
            let n = (job.rows - r0).min(if TILE == AVX2 {
                ROW_TILE_AVX2
            } else {
                ROW_TILE
            });
            let row = |i: usize| &input[(r0 + i) * k..(r0 + i + 1) * k];
            macro_rules! tile {
                ($r:literal, $rows:expr) => {{
                    let acc = match TILE {
                        #[cfg(target_arch = "x86_64")]
                        AVX512 => tile_avx512::<$r, SPLIT>(panel, bias, $rows, split),
                        #[cfg(target_arch = "x86_64")]
                        AVX2 => tile_avx2::<$r, SPLIT>(panel, bias, $rows, split),
                        _ => tile::<$r, FMA, SPLIT>(panel, bias, $rows, split),
                    };
                    finish(job, b, r0, &acc);
                }};
            }
            match n {
                4 => tile!(4, [row(0), row(1), row(2), row(3)]),
                3 => tile!(3, [row(0), row(1), row(2)]),
                2 => tile!(2, [row(0), row(1)]),
                _ => tile!(1, [row(0)]),
            }
            r0 += n;
        }
    }
}

/// `bias + Σ_k panel[k] x[k]` for `R` input rows, in portable Rust; with
/// `SPLIT`, slot 3 sums over `k < split` no more and slot 2 over `k >= split`.
#[inline(always)]
fn tile<const R: usize, const FMA: bool, const SPLIT: bool>(
    panel: &[Lanes],
    bias: &[Lanes],
    rows: [&[f32]; R],
    split: usize,
) -> [[Lanes; SLOTS]; R] {
    let bias: [Lanes; SLOTS] = [bias[0], bias[1], bias[2], bias[3]];
    let mut acc = [bias; R];
    let k = panel.len() / SLOTS;
    let (lo, hi) = panel.split_at(split.min(k) * SLOTS);
    let skip = |s: usize, high: bool| SPLIT && s == if high { 2 } else { 3 };
    for (high, part, k0) in [(false, lo, 0), (true, hi, split)] {
        for (kk, w) in part.chunks_exact(SLOTS).enumerate() {
            for r in 0..R {
                let x = rows[r][k0 + kk];
                for s in 0..SLOTS {
                    if skip(s, high) {
                        continue;
                    }
                    for l in 0..LANES {
                        acc[r][s][l] = if FMA {
                            w[s][l].mul_add(x, acc[r][s][l])
                        } else {
                            w[s][l] * x + acc[r][s][l]
                        };
                    }
                }
            }
        }
    }
    acc
}

/// [`tile`] in AVX-512 intrinsics: the accumulators (`4 R` registers) stay in
/// registers and each weight vector is loaded once for all `R` rows. Written
/// out because LLVM's vectorizer, given the portable loop, sometimes keeps
/// the accumulators in memory or gathers along `k` instead.
///
/// # Safety
/// AVX-512F is available; `bias.len() == SLOTS`; every row holds at least
/// `panel.len() / SLOTS` values; `split <= panel.len() / SLOTS`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn tile_avx512<const R: usize, const SPLIT: bool>(
    panel: &[Lanes],
    bias: &[Lanes],
    rows: [&[f32]; R],
    split: usize,
) -> [[Lanes; SLOTS]; R] {
    use std::arch::x86_64::*;
    let k = panel.len() / SLOTS;
    let b = [0, 1, 2, 3].map(|s| _mm512_loadu_ps(bias[s].as_ptr()));
    let mut acc = [b; R];
    let w = panel.as_ptr() as *const f32;
    let x = rows.map(<[f32]>::as_ptr);
    // Multiply-adds over `range` of k into every slot but `skip` (none when 4).
    macro_rules! accumulate {
        ($range:expr, $skip:expr) => {
            for kk in $range {
                let p = w.add(kk * SLOTS * LANES);
                let ws = [0, 1, 2, 3].map(|s| {
                    if s == $skip {
                        _mm512_setzero_ps()
                    } else {
                        _mm512_loadu_ps(p.add(s * LANES))
                    }
                });
                for r in 0..R {
                    let xb = _mm512_set1_ps(*x[r].add(kk));
                    for s in 0..SLOTS {
                        if s != $skip {
                            acc[r][s] = _mm512_fmadd_ps(ws[s], xb, acc[r][s]);
                        }
                    }
                }
            }
        };
    }
    if SPLIT {
        accumulate!(0..split, 3);
        accumulate!(split..k, 2);
    } else {
        accumulate!(0..k, 4);
    }
    let mut out = [[[0.0f32; LANES]; SLOTS]; R];
    for r in 0..R {
        for s in 0..SLOTS {
            _mm512_storeu_ps(out[r][s].as_mut_ptr(), acc[r][s]);
        }
    }
    out
}

/// [`tile`] in AVX2 intrinsics, in two passes of half a block's lanes each:
/// sixteen 256-bit registers cannot hold the AVX-512 tile's sixteen
/// accumulators of two halves each. `R` is at most [`ROW_TILE_AVX2`].
///
/// # Safety
/// As for [`tile_avx512`], with AVX2 and FMA for AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn tile_avx2<const R: usize, const SPLIT: bool>(
    panel: &[Lanes],
    bias: &[Lanes],
    rows: [&[f32]; R],
    split: usize,
) -> [[Lanes; SLOTS]; R] {
    use std::arch::x86_64::*;
    let mut out = [[[0.0f32; LANES]; SLOTS]; R];
    for half in [0, LANES / 2] {
        let acc = pass_avx2::<R, SPLIT>(panel, bias, rows, split, half);
        for r in 0..R {
            for s in 0..SLOTS {
                _mm256_storeu_ps(out[r][s].as_mut_ptr().add(half), acc[r][s]);
            }
        }
    }
    out
}

/// Lanes `half..half + 8` of [`tile`] for `P` rows.
///
/// # Safety
/// As for [`tile_avx2`]; `half` is 0 or 8.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn pass_avx2<const P: usize, const SPLIT: bool>(
    panel: &[Lanes],
    bias: &[Lanes],
    rows: [&[f32]; P],
    split: usize,
    half: usize,
) -> [[std::arch::x86_64::__m256; SLOTS]; P] {
    use std::arch::x86_64::*;
    let k = panel.len() / SLOTS;
    let b = [0, 1, 2, 3].map(|s| _mm256_loadu_ps(bias[s].as_ptr().add(half)));
    let mut acc = [b; P];
    let w = (panel.as_ptr() as *const f32).add(half);
    let x = rows.map(<[f32]>::as_ptr);
    macro_rules! accumulate {
        ($range:expr, $skip:expr) => {
            for kk in $range {
                let p = w.add(kk * SLOTS * LANES);
                let xb = x.map(|x| _mm256_set1_ps(*x.add(kk)));
                for s in 0..SLOTS {
                    if s != $skip {
                        let ws = _mm256_loadu_ps(p.add(s * LANES));
                        for r in 0..P {
                            acc[r][s] = _mm256_fmadd_ps(ws, xb[r], acc[r][s]);
                        }
                    }
                }
            }
        };
    }
    if SPLIT {
        accumulate!(0..split, 3);
        accumulate!(split..k, 2);
    } else {
        accumulate!(0..k, 4);
    }
    acc
}

/// The pointwise step for rows `r0..r0 + R` of block `b`, and the writes.
#[inline(always)]
unsafe fn finish<const R: usize>(job: &Job, b: usize, r0: usize, acc: &[[Lanes; SLOTS]; R]) {
    let units = job.pointwise.units();
    for (i, gates) in acc.iter().enumerate() {
        let r = r0 + i;
        let mut outs = [[0.0f32; LANES]; SLOTS];
        let used = match job.pointwise {
            Pointwise::Lstm => {
                #[allow(clippy::expect_used, reason = "every LSTM job is built with its cell")]
                let cell = job.cell.expect("the LSTM kernel has a cell state");
                let at = r * cell.stride + cell.offset + b * LANES;
                let c = cell.buf.get_mut(at..at + LANES);
                let mut act = [[0.0f32; LANES]; SLOTS];
                for l in 0..LANES {
                    let i = lanes::sigmoid(gates[0][l]);
                    let f = lanes::sigmoid(gates[1][l]);
                    let g = lanes::tanh(gates[2][l]);
                    let o = lanes::sigmoid(gates[3][l]);
                    c[l] = f * c[l] + i * g;
                    outs[0][l] = o * lanes::tanh(c[l]);
                    act[0][l] = i;
                    act[1][l] = f;
                    act[2][l] = g;
                    act[3][l] = o;
                }
                if let Some(save) = job.gates {
                    save.write(r, b, &act);
                    if let Some(keep) = save.cell {
                        let at = r * keep.stride + keep.offset + b * LANES;
                        keep.buf.get_mut(at..at + LANES).copy_from_slice(c);
                    }
                }
                1
            }
            Pointwise::Gru => {
                let k = job.layer.k;
                let at = r * k + job.layer.x_width + b * LANES;
                let h = job.input.get(at..at + LANES);
                let mut act = [[0.0f32; LANES]; SLOTS];
                for l in 0..LANES {
                    let reset = lanes::sigmoid(gates[0][l]);
                    let z = lanes::sigmoid(gates[1][l]);
                    let n = lanes::tanh(gates[2][l] + reset * gates[3][l]);
                    outs[0][l] = (1.0 - z) * n + z * h[l];
                    act[0][l] = reset;
                    act[1][l] = z;
                    act[2][l] = n;
                }
                if let Some(save) = job.gates {
                    act[3] = gates[3];
                    save.write(r, b, &act);
                }
                1
            }
            Pointwise::Tanh => {
                for (o, g) in outs.iter_mut().zip(gates) {
                    *o = lanes::map(g, lanes::tanh);
                }
                SLOTS
            }
            Pointwise::Relu => {
                for (o, g) in outs.iter_mut().zip(gates) {
                    *o = lanes::map(g, lanes::relu);
                }
                SLOTS
            }
            Pointwise::Linear => {
                outs = *gates;
                SLOTS
            }
        };
        // Padding units (zero weights) compute `0 · x`, NaN where the input
        // holds an infinity; written into the state they would reach every
        // unit of the next step through its zero weights, so they are 0.
        for (o, &live) in outs[..used].iter_mut().zip(&job.layer.live(b)) {
            if live != ALL_LIVE {
                for (l, v) in o.iter_mut().enumerate() {
                    if live >> l & 1 == 0 {
                        *v = 0.0;
                    }
                }
            }
        }
        for dest in job.out.iter().flatten() {
            let at = r * dest.stride + dest.offset + b * units;
            let out = dest.buf.get_mut(at..at + used * LANES);
            for (chunk, o) in out.chunks_exact_mut(LANES).zip(&outs[..used]) {
                chunk.copy_from_slice(o);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::packed::{Dense, Source};

    /// The instruction sets this CPU can run, the portable code first.
    fn isas() -> Vec<Isa> {
        let mut isas = vec![Isa::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                isas.push(Isa::Avx2);
            }
            if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("fma") {
                isas.push(Isa::Avx512);
            }
        }
        isas
    }

    /// A GRU step with +inf in one row's input and NaN in another's, on
    /// every instruction set: the recurrent candidate part `W_hn h + b_hn`
    /// stays finite (it never sees the input), the gates saturate as
    /// torch's do, and the padding units (20 of 32) are written as 0 so
    /// that the next step's product cannot pick up `0 · inf`.
    #[test]
    fn gru_step_keeps_infinities_where_torch_has_them() {
        let (hidden, xw, rows) = (20usize, 3usize, 3usize);
        let hp = 32;
        let value = |i: usize| ((i * 7919) % 23) as f32 / 23.0 - 0.5;
        let w_ih: Vec<f32> = (0..3 * hidden * xw).map(value).collect();
        let w_hh: Vec<f32> = (0..3 * hidden * hidden).map(|i| value(i + 5)).collect();
        let b_ih: Vec<f32> = (0..3 * hidden).map(|i| value(i + 7)).collect();
        let b_hh: Vec<f32> = (0..3 * hidden).map(|i| value(i + 9)).collect();
        let input = Dense {
            weight: &w_ih,
            cols: xw,
            bias: Some(&b_ih),
        };
        let recurrent = Dense {
            weight: &w_hh,
            cols: hidden,
            bias: Some(&b_hh),
        };
        let layer = PackedLayer::new(hp / LANES, xw, hp, input, Some(recurrent), |b, s, l| {
            let u = b * LANES + l;
            let (row, source) = match s {
                0 => (u, Source::Both),
                1 => (hidden + u, Source::Both),
                2 => (2 * hidden + u, Source::Input),
                _ => (2 * hidden + u, Source::Recurrent),
            };
            (u < hidden).then_some((row, source))
        });
        let k = layer.k;
        let h: Vec<f32> = (0..hidden).map(|i| value(i + 13)).collect();
        let x = [
            [f32::INFINITY, 0.25, -0.5],
            [0.1, f32::NAN, 0.3],
            [0.2, -0.1, 0.4],
        ];
        let buf = SharedBuf::new(rows * k);
        for (r, xr) in x.iter().enumerate() {
            let row = unsafe { buf.get_mut(r * k..(r + 1) * k) };
            row[..xw].copy_from_slice(xr);
            row[xw..xw + hidden].copy_from_slice(&h);
        }
        // The reference in f64, the way torch composes it.
        let dot = |w: &[f32], cols: usize, row: usize, v: &[f64]| -> f64 {
            (0..cols).map(|c| w[row * cols + c] as f64 * v[c]).sum()
        };
        let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
        for isa in isas() {
            let out = SharedBuf::new(rows * hp);
            let gates = SharedBuf::new(rows * 4 * hp);
            let job = Job {
                layer: &layer,
                pointwise: Pointwise::Gru,
                input: &buf,
                rows,
                cell: None,
                out: [
                    Some(Dest {
                        buf: &out,
                        stride: hp,
                        offset: 0,
                    }),
                    None,
                ],
                gates: Some(GateSave {
                    buf: &gates,
                    stride: 4 * hp,
                    offset: 0,
                    slot_stride: hp,
                    cell: None,
                }),
            };
            unsafe { run(isa, &job, 0..layer.blocks) };
            let (out, gates) = unsafe { (out.get(0..rows * hp), gates.get(0..rows * 4 * hp)) };
            for (r, xr) in x.iter().enumerate() {
                let xv: Vec<f64> = xr.iter().map(|&v| v as f64).collect();
                let hv: Vec<f64> = h.iter().map(|&v| v as f64).collect();
                for u in 0..hidden {
                    let gi = |g: usize| {
                        dot(&w_ih, xw, g * hidden + u, &xv) + b_ih[g * hidden + u] as f64
                    };
                    let gh = |g: usize| {
                        dot(&w_hh, hidden, g * hidden + u, &hv) + b_hh[g * hidden + u] as f64
                    };
                    let reset = sig(gi(0) + gh(0));
                    let z = sig(gi(1) + gh(1));
                    let n = (gi(2) + reset * gh(2)).tanh();
                    let want = (1.0 - z) * n + z * hv[u];
                    let got = out[r * hp + u] as f64;
                    let hn = gates[r * 4 * hp + 3 * hp + u] as f64;
                    assert!(
                        (hn - gh(2)).abs() < 1e-5,
                        "{isa:?} row {r} unit {u}: W_hn h {hn}"
                    );
                    let same = (want.is_nan() && got.is_nan()) || (got - want).abs() < 1e-5;
                    assert!(same, "{isa:?} row {r} unit {u}: {got} vs {want}");
                }
                for u in hidden..hp {
                    assert_eq!(out[r * hp + u], 0.0, "{isa:?} row {r}: padding unit {u}");
                }
            }
        }
    }

    /// Every instruction set this CPU has gives the plain product (linear
    /// output, 5 rows: a full tile and a remainder; 3 blocks, the last padded).
    #[test]
    fn every_isa_computes_the_product() {
        let (rows, cols, outs) = (5usize, 37usize, 150usize);
        let value = |i: usize| ((i * 7919) % 23) as f32 / 23.0 - 0.5;
        let weight: Vec<f32> = (0..outs * cols).map(value).collect();
        let bias: Vec<f32> = (0..outs).map(|i| value(i + 3)).collect();
        let x: Vec<f32> = (0..rows * cols).map(|i| value(i + 11)).collect();
        let width = SLOTS * LANES;
        let blocks = outs.div_ceil(width);
        let dense = Dense {
            weight: &weight,
            cols,
            bias: Some(&bias),
        };
        let layer = PackedLayer::new(blocks, cols, 0, dense, None, |b, s, l| {
            let o = (b * SLOTS + s) * LANES + l;
            (o < outs).then_some((o, Source::Input))
        });
        let input = SharedBuf::new(rows * cols);
        unsafe { input.get_mut(0..rows * cols) }.copy_from_slice(&x);
        for isa in isas() {
            let out = SharedBuf::new(rows * blocks * width);
            let job = Job {
                layer: &layer,
                pointwise: Pointwise::Linear,
                input: &input,
                rows,
                cell: None,
                out: [
                    Some(Dest {
                        buf: &out,
                        stride: blocks * width,
                        offset: 0,
                    }),
                    None,
                ],
                gates: None,
            };
            unsafe { run(isa, &job, 0..blocks) };
            let got = unsafe { out.get(0..rows * blocks * width) };
            for r in 0..rows {
                for o in 0..outs {
                    let want: f64 = bias[o] as f64
                        + (0..cols)
                            .map(|c| weight[o * cols + c] as f64 * x[r * cols + c] as f64)
                            .sum::<f64>();
                    let g = got[r * blocks * width + o] as f64;
                    assert!(
                        (g - want).abs() < 1e-5,
                        "{isa:?} row {r} out {o}: {g} vs {want}"
                    );
                }
            }
        }
    }
}
