//! torch.multinomial's contract: [`multinomial`] checks the arguments as
//! torch does, then draws every row, on the CPU with the kernel in `cpu`
//! (block sums, a Fenwick tree over them, with and without replacement) and
//! elsewhere with `tensor_ops`. Both report a bad row the same way, as a
//! `Fault` that becomes torch's error message.
//!
//! On other devices the same contract is met with whole-tensor ops: a float64
//! `cumsum` and `searchsorted` for draws with replacement, and the exponential
//! race (Gumbel-top-k: `topk(log w - log E)`, `E ~ Exp(1)`, zero weights
//! masked to `-inf`) without replacement, which is exactly sequential sampling
//! without replacement, in draw order.

// Values from Python reach this module: no index or slice may panic.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use std::cmp::Reverse;

use tch::{Device, Kind, Tensor};

use super::uniform::{uniforms, UniformSource};
use crate::dtype::{dtype_name, is_floating_point};
use crate::error::{Error, Result};

mod cpu;

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
pub(super) fn sample_rows<R: UniformSource + ?Sized>(
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

/// One index per row of the non-negative weights `w` `[rows, C]`, with
/// replacement, from `rng`'s uniforms `[rows, 1]`, by whole-tensor ops and
/// without checking the weights (which would read a value back and wait for
/// the device): the draw of a token loop on a GPU, whose caller checks the
/// rows in its own time. Always an index in range; for valid weights the one
/// [`multinomial`]'s whole-tensor path draws from the same uniforms.
pub(super) fn sample_unchecked<R: UniformSource + ?Sized>(
    w: &Tensor,
    rng: &mut R,
) -> Result<Tensor> {
    let (rows, _) = w.size2()?;
    let w64 = w.f_to_kind(Kind::Double)?;
    let cum = w64.f_cumsum(1, Kind::Double)?;
    let total = cum.f_narrow(1, cum.size2()?.1 - 1, 1)?;
    let u = uniforms(rng, &[rows, 1], w.device())?;
    tensor_ops::draw_cumulative(&cum, &total, &w64.f_gt(0.0)?, &u)
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
            draw_cumulative(&cum, &total, &positive, &u)?
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

    /// Draws with replacement by inverting the cumulative weights `cum`
    /// `[rows, C]` (row sums `total` `[rows, 1]`, `positive` where a weight is
    /// above zero) at the uniforms `u` `[rows, n]`. Always an index in range,
    /// of a positive weight where the row has one, whatever the weights hold:
    /// no value is read back, so nothing waits for the device.
    pub(super) fn draw_cumulative(
        cum: &Tensor,
        total: &Tensor,
        positive: &Tensor,
        u: &Tensor,
    ) -> Result<Tensor> {
        let (_, cats) = cum.size2()?;
        let idx = u
            .f_mul(total)?
            .f_searchsorted(cum, false, true, "right", None::<Tensor>)?
            .f_clamp_max(cats - 1)?;
        // Rounding in a parallel cumsum could land on a zero weight: map every
        // index to the nearest positive weight at or before it (or the first one).
        let ar = Tensor::f_arange(cats, (Kind::Int64, cum.device()))?;
        let (prev, _) = ar.f_where_scalarother(positive, -1)?.f_cummax(1)?;
        let first_pos = positive.f_to_kind(Kind::Int64)?.f_argmax(1, true)?;
        let owner = prev.f_where_self(&prev.f_ge(0)?, &first_pos)?;
        Ok(owner.f_gather(1, &idx, false)?)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampler::DefaultGenerator;

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
}
