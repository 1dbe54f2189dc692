//! Sixteen float32 lanes and the functions the fused kernels apply to them.
//!
//! Plain arrays and plain loops: inside a `#[target_feature]` function LLVM
//! turns each lane loop into one AVX-512 instruction (two AVX2 ones), and on
//! other CPUs it is still correct scalar or NEON code.

pub const LANES: usize = 16;
pub type Lanes = [f32; LANES];

/// The mask of a vector's first `n` lanes (all of them from `LANES` on), as
/// AVX-512's masked loads and stores and `PackedLayer`'s live lanes take it.
pub fn first_lanes(n: usize) -> u16 {
    const _: () = assert!(LANES == 16, "a u16 holds one bit per lane");
    if n >= LANES {
        u16::MAX
    } else {
        (1u16 << n) - 1
    }
}

/// `e^x` to within about 2 ulp (Cephes' `expf`: `x = n ln2 + r`, a degree-6
/// polynomial for `e^r`, `2^n` put into the exponent bits). `x` is clamped to
/// `[-87, 88]`, where `e^x` is a normal float: the gates only ever need
/// `1 / (1 + e^x)`, for which that range is exact to float32. Past
/// `ln(f32::MAX)` the result is `+inf`, as the true value rounds to, so
/// `σ(-inf)` and `σ(-100)` are exactly 0 as in torch (a gate's derivative
/// `σ(1 - σ)` is then 0 too); NaN stays NaN.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // Adding and subtracting 1.5 * 2^23 rounds to the nearest integer without
    // needing a rounding instruction.
    const ROUND: f32 = 12_582_912.0;
    // e^x overflows float32 from here on (a compare and a blend per vector).
    let overflows = x > 88.722_84;
    let x = x.clamp(-87.0, 88.0);
    let n = (x * LOG2E + ROUND) - ROUND;
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let p = p * r * r + r + 1.0;
    // 2^n without a float-to-int conversion (Rust's saturating `as` keeps LLVM
    // from vectorizing): in `n + 127 + 2^23` the low mantissa bits are `n + 127`,
    // and shifting them into the exponent field builds the float `2^n`.
    let biased = (n + (127.0 + 8_388_608.0)).to_bits();
    let e = p * f32::from_bits(biased << 23);
    if overflows {
        f32::INFINITY
    } else {
        e
    }
}

#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// `tanh x = 2 σ(2x) - 1`: within 1e-7 of the true value everywhere, and
/// exactly ±1 at ±inf.
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    2.0 / (1.0 + exp(-2.0 * x)) - 1.0
}

/// `max(x, 0)` that keeps NaN, as torch's `relu` does (`f32::max` would
/// turn NaN into 0); one `vmaxps` with the operands in this order.
#[inline(always)]
pub fn relu(x: f32) -> f32 {
    if x < 0.0 {
        0.0
    } else {
        x
    }
}

#[inline(always)]
pub fn map(v: &Lanes, f: impl Fn(f32) -> f32) -> Lanes {
    let mut out = [0.0; LANES];
    for (o, x) in out.iter_mut().zip(v) {
        *o = f(*x);
    }
    out
}

/// The largest value in each of the 16 lanes of `v`'s whole chunks (`-inf`
/// in a lane that has none but NaN, or when there is no whole chunk).
#[inline(always)]
pub fn lane_maxima(v: &[f32]) -> Lanes {
    let mut acc = [f32::NEG_INFINITY; LANES];
    for chunk in v.as_chunks::<LANES>().0 {
        for (a, &x) in acc.iter_mut().zip(chunk) {
            *a = if x > *a { x } else { *a };
        }
    }
    acc
}

/// The largest value of `v` (NaN never wins a comparison, so a NaN is
/// skipped; `-inf` for an empty or all-NaN row).
#[inline(always)]
pub fn max_of(v: &[f32]) -> f32 {
    let rest = v.as_chunks::<LANES>().1;
    lane_maxima(v)
        .into_iter()
        .chain(rest.iter().copied())
        .fold(f32::NEG_INFINITY, |m, x| if x > m { x } else { m })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn functions_match_the_standard_library() {
        let mut worst = [0f64; 3];
        for i in -200_000..=200_000 {
            let x = i as f32 * 1e-4; // [-20, 20]
            let pairs = [
                (exp(x.min(80.0)) as f64, (x.min(80.0) as f64).exp()),
                (sigmoid(x) as f64, 1.0 / (1.0 + (-x as f64).exp())),
                (tanh(x) as f64, (x as f64).tanh()),
            ];
            for (j, (got, want)) in pairs.into_iter().enumerate() {
                // exp is judged relative to its value, the bounded functions absolutely.
                let err = (got - want).abs() / if j == 0 { want } else { 1.0 };
                worst[j] = worst[j].max(err);
            }
        }
        assert!(worst[0] < 3e-7, "exp relative error {}", worst[0]);
        assert!(worst[1] < 2e-7, "sigmoid absolute error {}", worst[1]);
        assert!(worst[2] < 3e-7, "tanh absolute error {}", worst[2]);
        assert!((0.0..1e-37).contains(&sigmoid(-200.0)));
        assert_eq!(sigmoid(200.0), 1.0);
        assert_eq!(tanh(100.0), 1.0);
        assert_eq!(tanh(-100.0), -1.0);
    }

    /// torch's values at the edges: tanh(±inf) = ±1, σ(+inf) = 1, σ(-inf) = 0,
    /// relu keeps NaN and ±inf, and NaN stays NaN everywhere; the same in the
    /// 16-lane form the kernels use.
    #[test]
    fn infinities_and_nan_give_torchs_values() {
        let (inf, nan) = (f32::INFINITY, f32::NAN);
        assert_eq!(exp(inf), inf);
        assert_eq!(exp(89.0), inf);
        assert!(exp(88.7).is_finite());
        assert!((0.0..2e-38).contains(&exp(-inf)));
        assert_eq!(tanh(inf), 1.0);
        assert_eq!(tanh(-inf), -1.0);
        assert_eq!(sigmoid(inf), 1.0);
        assert_eq!(sigmoid(-inf), 0.0);
        assert_eq!(sigmoid(-100.0), 0.0);
        assert_eq!(relu(inf), inf);
        assert_eq!(relu(-inf), 0.0);
        assert_eq!(relu(-3.0), 0.0);
        assert_eq!(relu(2.5), 2.5);
        for f in [exp, sigmoid, tanh, relu] {
            assert!(f(nan).is_nan());
            assert!(f(-nan).is_nan());
        }
        let mut v = [0.5f32; LANES];
        v[3] = nan;
        v[7] = inf;
        v[9] = -inf;
        for (f, at_inf, at_neg_inf) in [
            (tanh as fn(f32) -> f32, 1.0, -1.0),
            (sigmoid, 1.0, 0.0),
            (relu, inf, 0.0),
        ] {
            let out = map(&v, f);
            assert!(out[3].is_nan());
            assert_eq!((out[7], out[9]), (at_inf, at_neg_inf));
            assert_eq!(out[0], f(0.5));
        }
    }
}
