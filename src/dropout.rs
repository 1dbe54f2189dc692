//! Dropout masks from a counter-based generator.
//!
//! Why not `bernoulli_`: on CPUs that are not Intel's, libtorch draws each
//! Bernoulli variate serially from its Mersenne Twister under a lock (MKL's
//! vectorized stream is used only on Intel), about 5.6 ns an element here: a
//! sixth of a char-level training step went into three dropout masks. Here
//! element `i` of a mask keeps iff 32 bits of `splitmix64(seed + ⌈i/2⌉ γ)` fall
//! below `(1 - p) 2³²`, a loop with no dependence between elements that the
//! compiler vectorizes. The seed is drawn from torch's default generator, one
//! draw per mask, so `torch.manual_seed` (and a checkpoint's saved generator
//! state) governs the masks as it governs `nn.Dropout`'s; the masks themselves
//! differ from `nn.Dropout`'s.
//!
//! Off the CPU, or for dtypes other than float32/float64, masks come from
//! torch's own `bernoulli_`, which is fast there.

// Values from Python reach this module: no index or slice may panic.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};
use crate::float::{self, Float};
use crate::pyfmt::py_float;

/// splitmix64's increment (2⁶⁴ / φ).
const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// splitmix64's output function: a bijection of `u64` whose outputs over the
/// states `seed + k γ` pass BigCrush.
#[inline(always)]
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Fills `out` with `scale` (kept, probability `keep`) or zero, deterministically
/// from `seed`.
pub fn fill<T: Float>(out: &mut [T], keep: f64, scale: T, seed: u64) {
    // Kept iff a uniform 32-bit draw is below the threshold; compared in u64 so
    // that keep = 1 (threshold 2³²) keeps everything.
    let threshold = (keep.clamp(0.0, 1.0) * 4_294_967_296.0).round() as u64;
    #[cfg(target_arch = "x86_64")]
    if crate::cpu::level() == crate::cpu::Level::Avx512 {
        // SAFETY: `Level::Avx512` means the CPU has these features.
        return unsafe { fill_avx512(out, threshold, scale, seed) };
    }
    fill_body(out, threshold, scale, seed)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx512vl")]
unsafe fn fill_avx512<T: Float>(out: &mut [T], threshold: u64, scale: T, seed: u64) {
    fill_body(out, threshold, scale, seed)
}

#[inline(always)]
fn fill_body<T: Float>(out: &mut [T], threshold: u64, scale: T, seed: u64) {
    let zero = T::of(0.0);
    let pick = |u: u64| if u < threshold { scale } else { zero };
    let half = (out.len() / 2) as u64;
    let mut pairs = out.chunks_exact_mut(2);
    for (j, pair) in (&mut pairs).enumerate() {
        let z = mix(seed.wrapping_add((j as u64 + 1).wrapping_mul(GAMMA)));
        if let [a, b] = pair {
            *a = pick(z & 0xFFFF_FFFF);
            *b = pick(z >> 32);
        }
    }
    let rest = pairs.into_remainder();
    if let Some(last) = rest.first_mut() {
        *last = pick(mix(seed.wrapping_add((half + 1).wrapping_mul(GAMMA))) & 0xFFFF_FFFF);
    }
}

/// [`fill`] with the kept elements scaled by `1 / keep`, as dropout scales them.
fn fill_scaled<T: Float>(out: &mut [T], keep: f64, seed: u64) {
    fill(out, keep, T::of(1.0 / keep), seed)
}

/// A seed from torch's default CPU generator (one draw).
fn torch_seed() -> Result<u64> {
    let t = Tensor::f_randint(i64::MAX, [1], (Kind::Int64, Device::Cpu))?;
    Ok(t.f_int64_value(&[0])? as u64)
}

/// torch.nn.functional.dropout's rule for `p`, with its ValueError's words
/// and `p` as Python prints a float; see [`check_probability_as`].
pub fn check_probability(p: f64) -> Result<()> {
    check_probability_as(p, &py_float(p))
}

/// [`check_probability`] naming `p` as the caller wrote it (Python's
/// `str(p)`: `2` for an int, as torch's message shows it). NaN is refused
/// too, as torch.nn.functional.dropout's own check refuses it.
pub fn check_probability_as(p: f64, shown: &str) -> Result<()> {
    if (0.0..=1.0).contains(&p) {
        return Ok(());
    }
    Err(Error::value(format!(
        "dropout probability has to be between 0 and 1, but got {shown}"
    )))
}

/// A dropout mask shaped like `like` (its dtype and device): each element is
/// `1 / (1 - p)` with probability `1 - p` and zero otherwise.
pub fn mask(like: &Tensor, p: f64) -> Result<Tensor> {
    check_probability(p)?;
    let _guard = tch::no_grad_guard();
    let kind = like.f_kind()?;
    if p >= 1.0 {
        return Ok(like.f_zeros_like()?);
    }
    check_kind(kind)?;
    let keep = 1.0 - p;
    let cpu = like.device() == Device::Cpu;
    match kind {
        Kind::Float | Kind::Double if cpu => {
            let seed = torch_seed()?;
            let m = Tensor::f_empty(like.size(), (kind, Device::Cpu))?;
            // SAFETY: `m` is a fresh contiguous CPU tensor of this kind.
            unsafe {
                if kind == Kind::Float {
                    fill_scaled::<f32>(float::slice_mut(&m), keep, seed);
                } else {
                    fill_scaled::<f64>(float::slice_mut(&m), keep, seed);
                }
            }
            Ok(m)
        }
        _ => {
            let mut m = like.f_empty_like()?;
            _ = m.f_bernoulli_float_(keep)?;
            Ok(m.f_div_scalar_(keep)?)
        }
    }
}

/// torch's refusal of dropout (`0 < p < 1`) on integer and boolean tensors:
/// the float mask cannot be cast to them. Its `RuntimeError`, word for word
/// (c10's names of the types).
fn check_kind(kind: Kind) -> Result<()> {
    let c10 = match kind {
        Kind::Uint8 => "Byte",
        Kind::Int8 => "Char",
        Kind::Int16 => "Short",
        Kind::Int => "Int",
        Kind::Int64 => "Long",
        Kind::Bool => "Bool",
        _ => return Ok(()),
    };
    Err(Error::shape(format!(
        "result type Float can't be cast to the desired output type {c10}"
    )))
}

/// `x * mask(x, p)`, recorded by autograd; `x` itself when `p` is zero.
pub fn apply(x: &Tensor, p: f64) -> Result<Tensor> {
    if p <= 0.0 {
        return Ok(x.shallow_clone());
    }
    Ok(x.f_mul(&mask(x, p)?)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kept fraction is Binomial(n, keep): within 6 standard deviations
    /// (a false failure about once in 10⁹ runs), for every keep and length parity.
    #[test]
    fn keeps_the_expected_fraction() {
        for (keep, n) in [(0.8, 1_000_001usize), (0.5, 1_000_000), (0.03, 999_999)] {
            let mut out = vec![0.0f32; n];
            fill(&mut out, keep, 2.0, 12345);
            assert!(out.iter().all(|&v| v == 0.0 || v == 2.0));
            let kept = out.iter().filter(|&&v| v != 0.0).count() as f64;
            let sd = (n as f64 * keep * (1.0 - keep)).sqrt();
            assert!((kept - n as f64 * keep).abs() < 6.0 * sd, "{keep}: {kept}");
        }
    }

    /// Neighbours (the two halves of one draw, and consecutive draws) are
    /// independent: a 2x2 chi-square test per lag, significance 1e-6 each.
    #[test]
    fn neighbours_are_independent() {
        let n = 2_000_000;
        let mut out = vec![0.0f64; n];
        fill(&mut out, 0.5, 1.0, 99);
        for lag in [1usize, 2, 3] {
            let mut c = [[0.0f64; 2]; 2];
            for i in 0..n - lag {
                c[out[i] as usize][out[i + lag] as usize] += 1.0;
            }
            let total = (n - lag) as f64;
            let rows = [c[0][0] + c[0][1], c[1][0] + c[1][1]];
            let cols = [c[0][0] + c[1][0], c[0][1] + c[1][1]];
            let mut chi2 = 0.0;
            for a in 0..2 {
                for b in 0..2 {
                    let e = rows[a] * cols[b] / total;
                    chi2 += (c[a][b] - e).powi(2) / e;
                }
            }
            // One degree of freedom: P(chi2 > 23.93) = 1e-6.
            assert!(chi2 < 23.93, "lag {lag}: chi2 {chi2}");
        }
    }

    #[test]
    fn seeds_repeat_and_differ() {
        let draw = |seed| {
            let mut v = vec![0.0f32; 4097];
            fill(&mut v, 0.5, 1.0, seed);
            v
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        let mut a = vec![0.0f32; 4097];
        fill_body(&mut a, 1 << 31, 1.0, 7);
        assert_eq!(a, draw(7), "the vectorized build draws the same mask");
    }

    /// Integer and boolean tensors are refused with torch's RuntimeError;
    /// p = 1 still gives zeros of their type, as torch's dropout does.
    #[test]
    fn integer_tensors_are_refused_as_torch_refuses_them() {
        for (kind, name) in [
            (Kind::Int64, "Long"),
            (Kind::Int, "Int"),
            (Kind::Bool, "Bool"),
            (Kind::Uint8, "Byte"),
        ] {
            let like = Tensor::ones([3], (kind, Device::Cpu));
            let err = mask(&like, 0.5).unwrap_err();
            assert!(matches!(err, Error::Shape(_)));
            assert_eq!(
                err.to_string(),
                format!("result type Float can't be cast to the desired output type {name}")
            );
            let zeros = mask(&like, 1.0).unwrap();
            assert_eq!(zeros.kind(), kind);
        }
    }

    #[test]
    fn mask_scales_and_follows_torchs_seed() {
        let like = Tensor::zeros([300, 7], (Kind::Double, Device::Cpu));
        tch::manual_seed(5);
        let a = mask(&like, 0.25).unwrap();
        tch::manual_seed(5);
        let b = mask(&like, 0.25).unwrap();
        assert!(a.equal(&b));
        let kept = a.ne(0.0);
        assert!(a
            .masked_select(&kept)
            .allclose(&Tensor::from(1.0 / 0.75), 0.0, 1e-15, false));
        assert!(mask(&like, 1.0).unwrap().equal(&like));
    }
}
