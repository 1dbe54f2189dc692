//! A row of logits as beam search reads it on the fused path: its
//! log-sum-exp (for the log-softmax) and its best tokens, computed on the
//! float32 logits in place.

use std::cmp::Ordering;

use crate::kernel::block::Isa;
use crate::kernel::lanes::{self, lane_maxima, max_of, LANES};

/// Above this many kept tokens, [`best_tokens`] sorts the row instead of
/// inserting into a sorted list.
const MOST_INSERTED: usize = 64;

/// `ln Σ_i e^{v_i}` in float64, or NaN where torch's `log_softmax` gives a row
/// of NaN: a NaN in `v`, a `+inf`, or every value `-inf`.
///
/// Each `e^{v_i - max}` is a float32 (within about 2 ulp, see `lanes::exp`),
/// summed in float64: the logits themselves are float32, so that costs no
/// accuracy a float64 `exp` would keep, and the row's exponentials take a
/// few vector instructions per 16 values instead of a library call per value.
pub fn log_sum_exp(isa: Isa, v: &[f32]) -> f64 {
    match isa {
        // SAFETY: `Isa::detect` reports only what the CPU has.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { log_sum_exp_avx512(v) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { log_sum_exp_avx2(v) },
        _ => log_sum_exp_body(v),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx512dq,avx2,fma")]
unsafe fn log_sum_exp_avx512(v: &[f32]) -> f64 {
    log_sum_exp_body(v)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn log_sum_exp_avx2(v: &[f32]) -> f64 {
    log_sum_exp_body(v)
}

#[inline(always)]
fn log_sum_exp_body(v: &[f32]) -> f64 {
    let max = max_of(v);
    if !max.is_finite() {
        return f64::NAN;
    }
    let chunks = v.chunks_exact(LANES);
    let mut total: f64 = chunks
        .remainder()
        .iter()
        .map(|&x| lanes::exp(x - max) as f64)
        .sum();
    let mut acc = [0.0f64; LANES];
    for chunk in chunks {
        for (a, &x) in acc.iter_mut().zip(chunk) {
            *a += lanes::exp(x - max) as f64;
        }
    }
    total += acc.iter().sum::<f64>();
    max as f64 + total.ln()
}

/// Higher value first, then the lower token (what `best_tokens` keeps on ties).
fn order(a: &(f32, usize), b: &(f32, usize)) -> Ordering {
    b.0.partial_cmp(&a.0)
        .unwrap_or(Ordering::Equal)
        .then(a.1.cmp(&b.1))
}

/// The `keep` highest values of `v` as `(value, token)`, best first, the
/// lower token first among equal values; NaN values are never kept (a row
/// with one is NaN in [`log_sum_exp`]).
pub fn best_tokens(isa: Isa, v: &[f32], keep: usize, out: &mut Vec<(f32, usize)>) {
    match isa {
        // SAFETY: `Isa::detect` reports only what the CPU has.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { best_tokens_avx512(v, keep, out) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { best_tokens_avx2(v, keep, out) },
        _ => best_tokens_body(v, keep, out),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx512dq,avx2,fma")]
unsafe fn best_tokens_avx512(v: &[f32], keep: usize, out: &mut Vec<(f32, usize)>) {
    best_tokens_body(v, keep, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn best_tokens_avx2(v: &[f32], keep: usize, out: &mut Vec<(f32, usize)>) {
    best_tokens_body(v, keep, out)
}

#[inline(always)]
fn best_tokens_body(v: &[f32], keep: usize, out: &mut Vec<(f32, usize)>) {
    out.clear();
    if keep == 0 {
        return;
    }
    if keep > MOST_INSERTED {
        out.extend(
            v.iter()
                .enumerate()
                .filter(|(_, x)| !x.is_nan())
                .map(|(t, &x)| (x, t)),
        );
        if out.len() > keep {
            out.select_nth_unstable_by(keep - 1, order);
            out.truncate(keep);
        }
        out.sort_unstable_by(order);
        return;
    }
    // A bound below the keep-th best value: the keep-th best of the lanes'
    // maxima, each a different value of the row. Until the list is full,
    // what falls below it can be passed over.
    let floor = match lane_maxima(v) {
        mut m if keep <= LANES => {
            m.sort_unstable_by(|a, b| b.partial_cmp(a).unwrap_or(Ordering::Equal));
            m.get(keep - 1).copied().unwrap_or(f32::NEG_INFINITY)
        }
        _ => f32::NEG_INFINITY,
    };
    let chunks = v.chunks_exact(LANES);
    let rest = chunks.remainder();
    for (c, chunk) in chunks.enumerate() {
        // Most chunks hold nothing worth offering: one vector comparison for
        // the 16 of them, then only the values that pass it.
        let mut mask = 0u32;
        match out.last() {
            Some(&(worst, _)) if out.len() == keep => {
                for (i, &x) in chunk.iter().enumerate() {
                    mask |= u32::from(x > worst) << i;
                }
            }
            _ => {
                for (i, &x) in chunk.iter().enumerate() {
                    mask |= u32::from(x >= floor) << i;
                }
            }
        }
        while mask != 0 {
            let i = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            if let Some(&x) = chunk.get(i) {
                offer(out, keep, x, c * LANES + i);
            }
        }
    }
    let start = v.len() - rest.len();
    for (i, &x) in rest.iter().enumerate() {
        offer(out, keep, x, start + i);
    }
}

/// Puts `(x, token)` into the sorted list `out` of at most `keep`, where it
/// belongs; tokens come in increasing order, so an equal value goes after.
#[inline(always)]
fn offer(out: &mut Vec<(f32, usize)>, keep: usize, x: f32, token: usize) {
    if out.len() == keep {
        match out.last() {
            Some(&(worst, _)) if x > worst => {
                out.pop();
            }
            _ => return,
        }
    } else if x.is_nan() {
        return;
    }
    let at = out.partition_point(|&(y, _)| y >= x);
    out.insert(at, (x, token));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The best tokens against a full sort, for small and large `keep` (both
    /// ways of keeping), with ties, infinities and NaN in the row.
    #[test]
    fn best_tokens_are_the_sorted_row_s_first() {
        let row: Vec<f32> = (0..300)
            .map(|i| match i % 37 {
                5 => f32::NAN,
                7 => f32::NEG_INFINITY,
                11 => 0.25, // ties
                _ => ((i * 7919) % 211) as f32 / 17.0 - 6.0,
            })
            .collect();
        let mut want: Vec<(f32, usize)> = row
            .iter()
            .enumerate()
            .filter(|(_, x)| !x.is_nan())
            .map(|(t, &x)| (x, t))
            .collect();
        want.sort_by(order);
        let mut out = Vec::new();
        for (isa, keep) in [Isa::Portable, Isa::detect()]
            .into_iter()
            .flat_map(|isa| [0, 1, 2, 16, 64, 65, 200, 300, 500].map(|k| (isa, k)))
        {
            best_tokens(isa, &row, keep, &mut out);
            assert_eq!(out, want[..keep.min(want.len())], "{isa:?} keep {keep}");
        }
    }

    /// The log-sum-exp against float64 arithmetic on the same values, and
    /// NaN wherever torch's log_softmax gives NaN.
    #[test]
    fn log_sum_exp_matches_float64_and_torch_s_nan_rows() {
        let isas = [Isa::Portable, Isa::detect()];
        for n in [1usize, 15, 16, 17, 100, 4196] {
            let row: Vec<f32> = (0..n)
                .map(|i| ((i * 7919) % 1009) as f32 / 50.0 - 10.0)
                .collect();
            let max = row.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(x as f64));
            let want = max
                + row
                    .iter()
                    .map(|&x| (x as f64 - max).exp())
                    .sum::<f64>()
                    .ln();
            for isa in isas {
                let got = log_sum_exp(isa, &row);
                assert!((got - want).abs() < 1e-6, "{isa:?} n {n}: {got} vs {want}");
            }
        }
        let nan = f32::NAN;
        let (inf, ninf) = (f32::INFINITY, f32::NEG_INFINITY);
        for row in [vec![0.0, nan, 1.0], vec![0.0, inf], vec![ninf, ninf]] {
            let logits = tch::Tensor::from_slice(&row).to_kind(tch::Kind::Double);
            let torch = logits.log_softmax(0, tch::Kind::Double);
            assert!(Vec::<f64>::try_from(torch)
                .unwrap()
                .iter()
                .all(|v| v.is_nan()));
            for isa in isas {
                assert!(log_sum_exp(isa, &row).is_nan(), "{row:?}");
            }
        }
        // -inf entries beside finite ones weigh nothing.
        let got = log_sum_exp(Isa::detect(), &[ninf, 0.0, ninf]);
        assert!(got.abs() < 1e-12, "{got}");
    }

    /// Rows shorter than a chunk, of a chunk and a bit, and of a few, for
    /// lists of 1 to 16 tokens (where the lanes' bound applies).
    #[test]
    fn both_agree_with_float64_on_short_rows() {
        for n in [5usize, 16, 17, 30, 33, 100] {
            for keep in [1usize, 2, 8, 16] {
                let row: Vec<f32> = (0..n)
                    .map(|i| ((i * 7919 + n * 31) % 101) as f32 / 7.0)
                    .collect();
                let mut want: Vec<(f32, usize)> =
                    row.iter().enumerate().map(|(t, &x)| (x, t)).collect();
                want.sort_by(order);
                want.truncate(keep);
                for isa in [Isa::Portable, Isa::detect()] {
                    let mut out = Vec::new();
                    best_tokens(isa, &row, keep, &mut out);
                    assert_eq!(out, want, "{isa:?} n {n} keep {keep}");
                    let lse = log_sum_exp(isa, &row);
                    let m = row.iter().cloned().fold(f32::MIN, f32::max) as f64;
                    let w = m + row.iter().map(|&x| (x as f64 - m).exp()).sum::<f64>().ln();
                    assert!((lse - w).abs() < 1e-6, "{isa:?} n {n} {lse} {w}");
                }
            }
        }
    }
}
