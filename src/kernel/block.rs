//! One phase of a token: every row's product with a range of packed blocks,
//! followed in registers by the layer's pointwise step (gates, state update),
//! written straight to where the next phase reads it.

use std::ops::Range;

use super::lanes::{self, Lanes, LANES};
use super::packed::{PackedLayer, SLOTS};
use super::team::SharedBuf;

/// Rows computed together: each loaded weight vector serves this many.
const ROW_TILE: usize = 4;

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
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("fma") {
                return Isa::Avx512;
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                return Isa::Avx2;
            }
        }
        Isa::Portable
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
        _ => run_body::<{ cfg!(target_arch = "aarch64") }, false>(job, blocks),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx512dq,avx2,fma")]
unsafe fn run_avx512(job: &Job, blocks: Range<usize>) {
    run_body::<true, true>(job, blocks)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn run_avx2(job: &Job, blocks: Range<usize>) {
    run_body::<true, false>(job, blocks)
}

/// `AVX512`: compiled inside `run_avx512`, so the intrinsics tile may be used.
#[inline(always)]
unsafe fn run_body<const FMA: bool, const AVX512: bool>(job: &Job, blocks: Range<usize>) {
    let k = job.layer.k;
    let input = job.input.get(0..job.rows * k);
    for b in blocks {
        let (panel, bias) = job.layer.block(b);
        let mut r0 = 0;
        while r0 < job.rows {
            let n = (job.rows - r0).min(ROW_TILE);
            let row = |i: usize| &input[(r0 + i) * k..(r0 + i + 1) * k];
            macro_rules! tile {
                ($r:literal, $rows:expr) => {{
                    #[cfg(target_arch = "x86_64")]
                    if AVX512 {
                        finish(job, b, r0, &tile_avx512::<$r>(panel, bias, $rows));
                        r0 += $r;
                        continue;
                    }
                    finish(job, b, r0, &tile::<$r, FMA>(panel, bias, $rows));
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

/// `bias + Σ_k panel[k] x[k]` for `R` input rows, in portable Rust.
#[inline(always)]
fn tile<const R: usize, const FMA: bool>(
    panel: &[Lanes],
    bias: &[Lanes],
    rows: [&[f32]; R],
) -> [[Lanes; SLOTS]; R] {
    let bias: [Lanes; SLOTS] = [bias[0], bias[1], bias[2], bias[3]];
    let mut acc = [bias; R];
    for (kk, w) in panel.chunks_exact(SLOTS).enumerate() {
        for r in 0..R {
            let x = rows[r][kk];
            for s in 0..SLOTS {
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
    acc
}

/// [`tile`] in AVX-512 intrinsics: the accumulators (`4 R` registers) stay in
/// registers and each weight vector is loaded once for all `R` rows. Written
/// out because LLVM's vectorizer, given the portable loop, sometimes keeps
/// the accumulators in memory or gathers along `k` instead.
///
/// # Safety
/// AVX-512F is available; `bias.len() == SLOTS`; every row holds at least
/// `panel.len() / SLOTS` values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn tile_avx512<const R: usize>(
    panel: &[Lanes],
    bias: &[Lanes],
    rows: [&[f32]; R],
) -> [[Lanes; SLOTS]; R] {
    use std::arch::x86_64::*;
    let k = panel.len() / SLOTS;
    let b = [0, 1, 2, 3].map(|s| _mm512_loadu_ps(bias[s].as_ptr()));
    let mut acc = [b; R];
    let w = panel.as_ptr() as *const f32;
    let x = rows.map(<[f32]>::as_ptr);
    for kk in 0..k {
        let p = w.add(kk * SLOTS * LANES);
        let ws = [0, 1, 2, 3].map(|s| _mm512_loadu_ps(p.add(s * LANES)));
        for r in 0..R {
            let xb = _mm512_set1_ps(*x[r].add(kk));
            for s in 0..SLOTS {
                acc[r][s] = _mm512_fmadd_ps(ws[s], xb, acc[r][s]);
            }
        }
    }
    let mut out = [[[0.0f32; LANES]; SLOTS]; R];
    for r in 0..R {
        for s in 0..SLOTS {
            _mm512_storeu_ps(out[r][s].as_mut_ptr(), acc[r][s]);
        }
    }
    out
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
                    *o = lanes::map(g, |x| x.max(0.0));
                }
                SLOTS
            }
            Pointwise::Linear => {
                outs = *gates;
                SLOTS
            }
        };
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
        let mut isas = vec![Isa::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                isas.push(Isa::Avx2);
            }
            if Isa::detect() == Isa::Avx512 {
                isas.push(Isa::Avx512);
            }
        }
        for isa in isas {
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
