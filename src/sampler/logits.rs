//! Next-token sampling from logits: [`sample_logits`] with its
//! [`SampleOptions`] (temperature, top-k, top-p/nucleus, greedy) and the
//! errors it reports for logits that cannot be sampled.
//!
//! `sample_logits` shifts and scales the logits with tensor ops, takes the
//! top-k candidates (with every token tied with the k-th, as transformers'
//! top-k keeps them; for top-p alone: a `topk` grown eightfold until the
//! candidates hold `p` of every row's mass, rather than sorting the whole
//! vocabulary), and draws one token per row with the multinomial kernel.

// Values from Python reach this module: no index or slice may panic.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use tch::{Device, Kind, Tensor};

use super::chain::{self, Penalties};
use super::multinomial::{sample_rows, sample_unchecked};
use super::uniform::UniformSource;
use crate::dtype::{dtype_name, is_floating_point};
use crate::error::{Error, Result};

/// How `sample_logits` picks a token.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SampleOptions {
    /// Divides the logits; `> 0` and finite. Small values approach greedy.
    pub temperature: f64,
    /// Keep only the `k` largest logits (`>= 1`) and any tied with the k-th,
    /// as transformers' top-k; `None` keeps all.
    pub top_k: Option<i64>,
    /// Keep the smallest set of most likely tokens whose probability reaches
    /// `p`, in `(0, 1]` (after top-k, renormalised); always at least one token.
    pub top_p: Option<f64>,
    /// Take the argmax (the first on ties) after the penalties; the other
    /// options are then unused.
    pub greedy: bool,
    /// Drop tokens less likely than `min_p` times the most likely one, in
    /// `[0, 1]` (after top-p, as transformers' `MinPLogitsWarper`).
    pub min_p: Option<f64>,
    /// Typical sampling's mass, in `(0, 1]` (1 is off; after min-p).
    pub typical_p: Option<f64>,
    /// Penalties on the tokens seen so far (before everything else).
    pub penalties: Penalties,
}

impl Default for SampleOptions {
    fn default() -> Self {
        SampleOptions {
            temperature: 1.0,
            top_k: None,
            top_p: None,
            greedy: false,
            min_p: None,
            typical_p: None,
            penalties: Penalties::default(),
        }
    }
}

impl SampleOptions {
    /// The options, validated (see [`SampleOptions::validate`]).
    pub fn new(
        temperature: f64,
        top_k: Option<i64>,
        top_p: Option<f64>,
        greedy: bool,
    ) -> Result<SampleOptions> {
        let opts = SampleOptions {
            temperature,
            top_k,
            top_p,
            greedy,
            ..SampleOptions::default()
        };
        opts.validate()?;
        Ok(opts)
    }

    /// These options with the rest of the decoding chain, validated.
    pub fn with_chain(
        self,
        min_p: Option<f64>,
        typical_p: Option<f64>,
        penalties: Penalties,
    ) -> Result<SampleOptions> {
        let opts = SampleOptions {
            min_p,
            typical_p,
            penalties,
            ..self
        };
        opts.validate()?;
        Ok(opts)
    }

    /// Whether a row needs the decoding chain (`chain.rs`): min-p, typical
    /// sampling or a penalty is on.
    pub fn uses_chain(&self) -> bool {
        self.min_p.is_some() || self.typical_p.is_some_and(|p| p < 1.0) || !self.penalties.is_off()
    }

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
        if let Some(p) = self.min_p {
            if !(0.0..=1.0).contains(&p) {
                return Err(Error::value(format!(
                    "min_p must be in [0, 1] (or None), got {p}"
                )));
            }
        }
        if let Some(p) = self.typical_p {
            if !(p > 0.0 && p <= 1.0) {
                return Err(Error::value(format!(
                    "typical_p must be in (0, 1] (or None), got {p}"
                )));
            }
        }
        self.penalties.validate()
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
/// top-p work on the sorted candidates; the draw is
/// [`multinomial`](fn@super::multinomial)'s, one uniform per row.
pub fn sample_logits<R: UniformSource + ?Sized>(
    logits: &Tensor,
    opts: &SampleOptions,
    rng: &mut R,
) -> Result<Tensor> {
    opts.validate()?;
    sample_validated(logits, opts, rng)
}

/// [`sample_logits`] with options already validated: what a token loop
/// calls after validating once before its first token.
pub fn sample_validated<R: UniformSource + ?Sized>(
    logits: &Tensor,
    opts: &SampleOptions,
    rng: &mut R,
) -> Result<Tensor> {
    sample_after(logits, None, opts, rng)
}

/// [`sample_logits`] for rows that follow the tokens `previous` (`[n]` for
/// every row, or `[B, n]` one per row), which the penalties look at.
pub fn sample_after<R: UniformSource + ?Sized>(
    logits: &Tensor,
    previous: Option<&Tensor>,
    opts: &SampleOptions,
    rng: &mut R,
) -> Result<Tensor> {
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
    let x = float_or_double(&x)?;
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
    if opts.uses_chain() {
        let rows = previous_rows(previous, rows)?;
        return finish(chain::sample_rows(&x, &rows, opts, rng, batched)?);
    }
    finish(draw(&x, &row_max, opts, rng, Reads::Checked)?)
}

/// `x` in the dtype the draws compute in: float64 stays, every other float
/// type (float16, bfloat16) becomes float32.
fn float_or_double(x: &Tensor) -> Result<Tensor> {
    Ok(match x.f_kind()? {
        Kind::Float | Kind::Double => x.shallow_clone(),
        _ => x.f_to_kind(Kind::Float)?,
    })
}

/// Whether a draw may read values back from the device (which waits for it).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reads {
    /// torch's errors for bad weights, and top-p's candidates grown as needed.
    Checked,
    /// Nothing read back: top-p sorts the whole row, the weights are not checked.
    Deferred,
}

/// [`sample_validated`] for a token loop on a device where reading a value
/// back waits for it (CUDA), for options without the decoding chain
/// (temperature, top-k, top-p, greedy): `logits` `[rows, V]` of a float dtype,
/// `V > 0`. For finite logits the tokens `[rows]` are those
/// [`sample_validated`] draws from the same uniforms; nothing is read back.
/// Also returns a flag `[]` on the device, true where a row has no finite
/// maximum (its token is then some index in range), for the caller to read
/// when it waits for the device anyway.
pub fn sample_deferred<R: UniformSource + ?Sized>(
    logits: &Tensor,
    opts: &SampleOptions,
    rng: &mut R,
) -> Result<(Tensor, Tensor)> {
    let _no_grad = tch::no_grad_guard();
    if opts.uses_chain() {
        return Err(Error::value(
            "sample_deferred takes no decoding-chain options (min_p, typical_p, penalties)",
        ));
    }
    let x = float_or_double(logits)?;
    let row_max = x.f_amax(1, true)?;
    let bad = row_max.f_isfinite()?.f_all()?.f_logical_not()?;
    Ok((draw(&x, &row_max, opts, rng, Reads::Deferred)?, bad))
}

/// One token per row of `x` `[rows, V]` whose row maxima are `row_max`
/// `[rows, 1]`, by temperature, top-k, top-p or greedy.
fn draw<R: UniformSource + ?Sized>(
    x: &Tensor,
    row_max: &Tensor,
    opts: &SampleOptions,
    rng: &mut R,
    reads: Reads,
) -> Result<Tensor> {
    let vocab = x.size2()?.1;
    if opts.greedy {
        return Ok(x.f_argmax(1, false)?);
    }
    // float32 holds temperatures down to ~1e-38; below 1e-30 work in float64,
    // which takes any positive temperature without turning 0 / T into nan.
    let (x, row_max) = if opts.temperature < 1e-30 && x.f_kind()? != Kind::Double {
        (x.f_to_kind(Kind::Double)?, row_max.f_to_kind(Kind::Double)?)
    } else {
        (x.shallow_clone(), row_max.shallow_clone())
    };
    let z = x.f_sub(&row_max)?.f_div_scalar(opts.temperature)?;
    let top_k = opts.top_k.filter(|&k| k < vocab);
    let top_p = opts.top_p.filter(|&p| p < 1.0);
    // The candidates (most likely first, or every token unsorted), and for top-p
    // the mass it measures against: the whole row's, or after top-k the k's.
    let (cand, ids, row_mass) = match (top_k, top_p) {
        (Some(k), _) => {
            let (v, i) = top_k_with_ties(&z, k, reads)?;
            (v, Some(i), None)
        }
        (None, Some(p)) if reads == Reads::Checked => {
            let (v, i, mass) = nucleus_candidates(&z, p)?;
            (v, Some(i), Some(mass))
        }
        (None, Some(_)) => {
            let (v, i) = z.f_sort(1, true)?;
            (v, Some(i), None)
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
    let pos = match reads {
        Reads::Checked => sample_rows(&weights, 1, true, rng, true)?,
        Reads::Deferred => sample_unchecked(&weights, rng)?,
    };
    let tokens = match ids {
        Some(ids) => ids.f_gather(1, &pos, false)?,
        None => pos,
    };
    Ok(tokens.f_squeeze_dim(1)?)
}

/// The logits the decoding chain leaves for `logits` (`[V]` or `[B, V]`)
/// after `previous`: penalties, then temperature, top-k, top-p, min-p and
/// typical; removed tokens are `-inf` (what [`sample_after`] draws from).
pub fn process_logits(
    logits: &Tensor,
    previous: Option<&Tensor>,
    opts: &SampleOptions,
) -> Result<Tensor> {
    let _no_grad = tch::no_grad_guard();
    opts.validate()?;
    let size = logits.size();
    let x = match *size.as_slice() {
        [_] => logits.f_unsqueeze(0)?,
        [_, _] => logits.shallow_clone(),
        _ => {
            return Err(Error::shape(format!(
                "process_logits expects logits of shape [V] or [B, V], got shape {size:?}"
            )))
        }
    };
    if !is_floating_point(x.f_kind()?) {
        return Err(Error::shape(format!(
            "process_logits expects floating-point logits, got {}",
            dtype_name(x.f_kind()?)
        )));
    }
    let (rows, _) = x.size2()?;
    let out = chain::process_rows(&x, &previous_rows(previous, rows)?, opts)?;
    Ok(if size.len() == 1 {
        out.f_squeeze_dim(0)?
    } else {
        out
    })
}

/// `previous` as one id list per row: `[n]` repeated, or `[B, n]` row by row.
fn previous_rows(previous: Option<&Tensor>, rows: i64) -> Result<Vec<Vec<i64>>> {
    let rows = usize::try_from(rows).unwrap_or(0);
    let Some(p) = previous else {
        return Ok(vec![Vec::new(); rows]);
    };
    if p.f_kind()? != Kind::Int64 {
        return Err(Error::shape(format!(
            "previous must be an int64 (LongTensor) of token ids, got {}",
            dtype_name(p.f_kind()?)
        )));
    }
    let p = p.f_to_device(Device::Cpu)?.f_contiguous()?;
    match *p.size().as_slice() {
        [_] => Ok(vec![Vec::<i64>::try_from(&p)?; rows]),
        [b, n] if usize::try_from(b).ok() == Some(rows) => {
            let flat = Vec::<i64>::try_from(p.f_reshape([-1])?)?;
            Ok(flat
                .chunks(usize::try_from(n).unwrap_or(0).max(1))
                .map(<[i64]>::to_vec)
                .chain(std::iter::repeat_with(Vec::new))
                .take(rows)
                .collect())
        }
        _ => Err(Error::shape(format!(
            "previous must have shape [n] or [{rows}, n] (one row of ids per row of logits), \
             got shape {:?}",
            p.size()
        ))),
    }
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

/// The top `k` of each row of `z`, most likely first, and every token tied
/// with a row's k-th, as transformers' top-k keeps them (`scores <
/// topk(scores, k)[..., -1]` is what it removes). Rows with fewer ties are
/// padded with `-inf` (weight 0). Checked, the candidates grow to the most
/// ties any row has (one read back); deferred, every row is sorted whole.
fn top_k_with_ties(z: &Tensor, k: i64, reads: Reads) -> Result<(Tensor, Tensor)> {
    let (v, i) = z.f_topk(k, 1, true, true)?;
    let kth = v.f_narrow(1, k - 1, 1)?;
    let (v, i) = match reads {
        Reads::Checked => {
            let most = z
                .f_ge_tensor(&kth)?
                .f_sum_dim_intlist(1, false, Kind::Int64)?;
            let most = most.f_max()?.f_int64_value(&[])?;
            if most <= k {
                return Ok((v, i));
            }
            z.f_topk(most, 1, true, true)?
        }
        Reads::Deferred => z.f_sort(1, true)?,
    };
    Ok((
        v.f_masked_fill(&v.f_lt_tensor(&kth)?, f64::NEG_INFINITY)?,
        i,
    ))
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
    use crate::sampler::DefaultGenerator;

    fn t1(v: &[f32]) -> Tensor {
        Tensor::from_slice(v)
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
