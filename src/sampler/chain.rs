//! The decoding chain beyond temperature, top-k and top-p, on one row of
//! logits, with Hugging Face transformers' semantics (its `LogitsProcessor`s)
//! so that the same settings keep the same tokens:
//!
//! 1. penalties on the tokens seen so far (the prompt and the continuation):
//!    CTRL's repetition penalty, then OpenAI's frequency and presence
//!    penalties, then the ban on repeating an n-gram (`no_repeat_ngram_size`);
//! 2. (temperature, top-k and top-p, in `logits.rs`);
//! 3. min-p: tokens below `min_p` times the most likely one's probability;
//! 4. typical sampling (Meister et al. 2022): the tokens whose surprisal is
//!    closest to the entropy, up to `typical_p` of the mass.
//!
//! A removed token's logit becomes `-inf`, which the draw never picks (the
//! multinomial's zero-weight rule). Each filter keeps at least one token.

// Values from Python reach this module: no index or slice may panic.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use std::collections::HashMap;

use tch::{Device, Kind, Tensor};

use super::logits::SampleOptions;
use super::uniform::UniformSource;
use crate::error::{Error, Result};

/// The penalties on tokens seen before; the defaults change nothing.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Penalties {
    /// CTRL's rule: a seen token's logit is divided by this when positive,
    /// multiplied when negative; `> 0`, 1 is off.
    pub repetition: f64,
    /// Subtracted once per earlier occurrence of the token.
    pub frequency: f64,
    /// Subtracted once from every token that occurred.
    pub presence: f64,
    /// Ban the tokens that would repeat an n-gram of this size; 0 is off.
    pub no_repeat_ngram: usize,
}

impl Default for Penalties {
    fn default() -> Self {
        Penalties {
            repetition: 1.0,
            frequency: 0.0,
            presence: 0.0,
            no_repeat_ngram: 0,
        }
    }
}

impl Penalties {
    pub fn is_off(&self) -> bool {
        *self == Penalties::default()
    }

    /// `Error::Value` naming the offending value.
    pub fn validate(&self) -> Result<()> {
        if !(self.repetition > 0.0 && self.repetition.is_finite()) {
            return Err(Error::value(format!(
                "repetition_penalty must be a positive finite number, got {}",
                self.repetition
            )));
        }
        for (name, v) in [
            ("frequency_penalty", self.frequency),
            ("presence_penalty", self.presence),
        ] {
            if !v.is_finite() {
                return Err(Error::value(format!("{name} must be finite, got {v}")));
            }
        }
        Ok(())
    }

    /// Applies the penalties to `row` (one logit per token id) for the ids
    /// seen so far, `previous`, oldest first. Ids outside the row are
    /// ignored (the caller checks them against the vocabulary).
    pub fn apply(&self, row: &mut [f32], previous: &[i64]) {
        if self.is_off() || previous.is_empty() {
            return;
        }
        let mut counts: HashMap<usize, u32> = HashMap::new();
        for &t in previous {
            if let Ok(t) = usize::try_from(t) {
                if t < row.len() {
                    *counts.entry(t).or_insert(0) += 1;
                }
            }
        }
        let rep = self.repetition as f32;
        for (&t, &n) in &counts {
            if let Some(x) = row.get_mut(t) {
                if self.repetition != 1.0 {
                    *x = if *x < 0.0 { *x * rep } else { *x / rep };
                }
                *x -= (self.frequency * f64::from(n) + self.presence) as f32;
            }
        }
        if self.no_repeat_ngram > 0 {
            for t in banned_by_ngrams(previous, self.no_repeat_ngram) {
                if let Some(x) = usize::try_from(t).ok().and_then(|t| row.get_mut(t)) {
                    *x = f32::NEG_INFINITY;
                }
            }
        }
    }
}

/// The tokens that would complete an n-gram already in `previous`: those
/// that followed an earlier occurrence of its last `n - 1` tokens.
pub fn banned_by_ngrams(previous: &[i64], n: usize) -> Vec<i64> {
    if n == 0 || previous.len() < n {
        return Vec::new();
    }
    let prefix = previous.get(previous.len() + 1 - n..).unwrap_or_default();
    previous
        .windows(n)
        .filter(|w| w.get(..n - 1) == Some(prefix))
        .filter_map(|w| w.last().copied())
        .collect()
}

/// Softmax probabilities of `row` in float64 (`-inf` gives 0).
fn probabilities(row: &[f32]) -> Vec<f64> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f64> = row.iter().map(|&x| f64::from(x - max).exp()).collect();
    let total: f64 = e.iter().sum();
    e.into_iter().map(|x| x / total).collect()
}

/// min-p: removes the tokens whose probability is below `min_p` times the
/// largest one's (`0 <= min_p <= 1`); the most likely token always stays.
pub fn apply_min_p(row: &mut [f32], min_p: f64) {
    let p = probabilities(row);
    let top = p.iter().copied().fold(0.0, f64::max);
    let keep = p.iter().position(|&x| x == top).unwrap_or(0);
    for (i, (x, &pi)) in row.iter_mut().zip(&p).enumerate() {
        if pi < min_p * top && i != keep {
            *x = f32::NEG_INFINITY;
        }
    }
}

/// Typical sampling with mass `mass` in (0, 1): orders the tokens by how far
/// their surprisal `-log p` is from the entropy, keeps the closest ones until
/// their probabilities reach `mass` (the token that crosses it included,
/// with every token as close as it), and removes the rest.
pub fn apply_typical(row: &mut [f32], mass: f64) {
    let p = probabilities(row);
    let entropy: f64 = -p
        .iter()
        .filter(|&&x| x > 0.0)
        .map(|&x| x * x.ln())
        .sum::<f64>();
    let shifted: Vec<f64> = p
        .iter()
        .map(|&x| {
            if x > 0.0 {
                (-x.ln() - entropy).abs()
            } else {
                f64::INFINITY
            }
        })
        .collect();
    let mut order: Vec<usize> = (0..row.len()).collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (
            shifted.get(a).copied().unwrap_or(f64::INFINITY),
            shifted.get(b).copied().unwrap_or(f64::INFINITY),
        );
        x.total_cmp(&y)
    });
    // transformers: the index of the first token whose cumulative mass
    // reaches `mass` (clamped to the last), then every token no farther out.
    let mut cum = 0.0;
    let mut last = order.len().saturating_sub(1);
    for (j, &i) in order.iter().enumerate() {
        cum += p.get(i).copied().unwrap_or(0.0);
        if cum >= mass {
            last = j;
            break;
        }
    }
    let limit = order
        .get(last)
        .and_then(|&i| shifted.get(i))
        .copied()
        .unwrap_or(f64::INFINITY);
    let first = order.first().copied();
    for (i, x) in row.iter_mut().enumerate() {
        let s = shifted.get(i).copied().unwrap_or(f64::INFINITY);
        if s > limit && Some(i) != first {
            *x = f32::NEG_INFINITY;
        }
    }
}

/// The rows of `x` `[rows, V]` as the chain leaves them (penalties, then
/// unless greedy the warpers), flattened float32, with the vocabulary size:
/// removed tokens are `-inf`. Ids in `previous` must be in the vocabulary.
fn processed(
    x: &Tensor,
    previous: &[Vec<i64>],
    opts: &SampleOptions,
    batched: bool,
) -> Result<(Vec<f32>, usize)> {
    let (_, vocab) = x.size2()?;
    let mut data = Vec::<f32>::try_from(
        x.f_to_device(Device::Cpu)?
            .f_to_kind(Kind::Float)?
            .f_contiguous()?
            .f_reshape([-1])?,
    )?;
    let vocab = usize::try_from(vocab).unwrap_or(0).max(1);
    for (r, prev) in previous.iter().enumerate() {
        if let Some(&bad) = prev.iter().find(|&&t| t < 0 || t as u64 >= vocab as u64) {
            return Err(Error::Index(format!(
                "previous token id {bad} (row {r}) is out of range for {vocab} logits"
            )));
        }
    }
    for (r, row) in data.chunks_exact_mut(vocab).enumerate() {
        let prev = previous.get(r).map_or(&[][..], Vec::as_slice);
        opts.penalties.apply(row, prev);
        if !row.iter().any(|x| x.is_finite()) {
            let at = if batched {
                format!(" (row {r})")
            } else {
                String::new()
            };
            return Err(Error::shape(format!(
                "sample: every token is removed{at} (by the penalties); at least one must stay"
            )));
        }
        if !opts.greedy {
            warp(row, opts);
        }
    }
    Ok((data, vocab))
}

/// The chain's logits for `x` `[rows, V]` after `previous`: what the draw
/// sees (as transformers' `LogitsProcessorList` returns them, up to a shift
/// of each row), removed tokens `-inf`; on `x`'s device, float32.
pub fn process_rows(x: &Tensor, previous: &[Vec<i64>], opts: &SampleOptions) -> Result<Tensor> {
    let (data, vocab) = processed(x, previous, opts, true)?;
    let rows = i64::try_from(data.len() / vocab).unwrap_or(0);
    Ok(Tensor::from_slice(&data)
        .f_view([rows, i64::try_from(vocab).unwrap_or(0)])?
        .f_to_device(x.device())?)
}

/// One token per row of `x` `[rows, V]` (floating point, rows checked to
/// have a finite maximum) after `previous[r]`, through the whole chain in
/// transformers' order: penalties, then (unless greedy) temperature, top-k,
/// top-p, min-p and typical, then one uniform against the survivors'
/// running weight. Returns int64 `[rows]` on `x`'s device.
pub fn sample_rows<R: UniformSource + ?Sized>(
    x: &Tensor,
    previous: &[Vec<i64>],
    opts: &SampleOptions,
    rng: &mut R,
    batched: bool,
) -> Result<Tensor> {
    let (rows, _) = x.size2()?;
    let (data, vocab) = processed(x, previous, opts, batched)?;
    let u = if opts.greedy {
        Vec::new()
    } else {
        Vec::<f64>::try_from(
            rng.uniform(&[rows], Device::Cpu)?
                .f_to_kind(Kind::Double)?
                .f_contiguous()?,
        )?
    };
    let out: Vec<i64> = data
        .chunks_exact(vocab)
        .enumerate()
        .map(|(r, row)| {
            let t = if opts.greedy {
                argmax(row)
            } else {
                draw(row, u.get(r).copied().unwrap_or(0.0))
            };
            t as i64
        })
        .collect();
    Ok(Tensor::from_slice(&out).f_to_device(x.device())?)
}

/// The first largest value's index.
fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in row.iter().enumerate() {
        if x > row.get(best).copied().unwrap_or(f32::NEG_INFINITY) {
            best = i;
        }
    }
    best
}

/// Temperature, top-k, top-p, min-p and typical, in place.
pub fn warp(row: &mut [f32], opts: &SampleOptions) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let t = opts.temperature;
    // Shifted before dividing, as `sample_logits` does, so tiny temperatures
    // stay finite; every rule below is invariant to the shift.
    for x in row.iter_mut() {
        *x = (f64::from(*x - max) / t) as f32;
    }
    if let Some(k) = opts.top_k.and_then(|k| usize::try_from(k).ok()) {
        apply_top_k(row, k);
    }
    if let Some(p) = opts.top_p.filter(|&p| p < 1.0) {
        apply_top_p(row, p);
    }
    if let Some(p) = opts.min_p {
        apply_min_p(row, p);
    }
    if let Some(p) = opts.typical_p.filter(|&p| p < 1.0) {
        apply_typical(row, p);
    }
}

/// top-k as transformers' `TopKLogitsWarper`: removes what is below the
/// k-th largest value (so ties with it stay).
pub fn apply_top_k(row: &mut [f32], k: usize) {
    if k == 0 || k >= row.len() {
        return;
    }
    let mut sorted: Vec<f32> = row.to_vec();
    sorted.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
    let kth = sorted.get(k - 1).copied().unwrap_or(f32::NEG_INFINITY);
    for x in row.iter_mut() {
        if *x < kth {
            *x = f32::NEG_INFINITY;
        }
    }
}

/// top-p as transformers' `TopPLogitsWarper`: from the least likely up,
/// removes tokens while the mass so far (theirs included) is at most
/// `1 - p`; the most likely token stays.
pub fn apply_top_p(row: &mut [f32], p: f64) {
    let probs = probabilities(row);
    let mut order: Vec<usize> = (0..row.len()).collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (
            row.get(a).copied().unwrap_or(f32::NEG_INFINITY),
            row.get(b).copied().unwrap_or(f32::NEG_INFINITY),
        );
        x.total_cmp(&y)
    });
    let mut cum = 0.0;
    let last = order.len().saturating_sub(1);
    for (j, &i) in order.iter().enumerate() {
        cum += probs.get(i).copied().unwrap_or(0.0);
        if cum > 1.0 - p || j == last {
            break;
        }
        if let Some(x) = row.get_mut(i) {
            *x = f32::NEG_INFINITY;
        }
    }
}

/// One token by the running sum of the weights `exp(x - max)` against `u`
/// times their total (removed tokens weigh 0).
fn draw(row: &[f32], u: f64) -> usize {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let w = |x: f32| f64::from(x - max).exp();
    let total: f64 = row.iter().map(|&x| w(x)).sum();
    let target = u * total;
    let mut acc = 0.0;
    let mut last = 0;
    for (i, &x) in row.iter().enumerate() {
        let wi = w(x);
        if wi > 0.0 {
            last = i;
        }
        acc += wi;
        if acc > target && wi > 0.0 {
            return i;
        }
    }
    // Rounding left the target at the very top: the last positive weight.
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repetition_frequency_and_presence_follow_their_rules() {
        let mut row = [2.0f32, -2.0, 1.0, 0.5];
        let p = Penalties {
            repetition: 2.0,
            frequency: 0.25,
            presence: 0.5,
            no_repeat_ngram: 0,
        };
        p.apply(&mut row, &[0, 1, 1, 9]);
        assert_eq!(
            row,
            [2.0 / 2.0 - 0.25 - 0.5, -2.0 * 2.0 - 0.5 - 0.5, 1.0, 0.5]
        );
    }

    #[test]
    fn ngrams_that_occurred_are_banned() {
        // 1 2 3 ... 1 2: the 3-gram "1 2 3" would repeat.
        assert_eq!(banned_by_ngrams(&[1, 2, 3, 4, 1, 2], 3), vec![3]);
        assert_eq!(banned_by_ngrams(&[5, 5, 5], 2), vec![5, 5]);
        assert!(banned_by_ngrams(&[1, 2], 3).is_empty());
        assert_eq!(banned_by_ngrams(&[7, 8], 1), vec![7, 8]);
    }

    #[test]
    fn min_p_keeps_the_likely_tokens_and_the_top_one() {
        let mut row = [0.0f32, (0.5f32).ln(), (0.04f32).ln(), f32::NEG_INFINITY];
        apply_min_p(&mut row, 0.1);
        assert!(row[0] == 0.0 && row[1].is_finite() && row[2] == f32::NEG_INFINITY);
        let mut one = [1.0f32, 1.0];
        apply_min_p(&mut one, 1.0);
        assert!(one.iter().all(|x| x.is_finite()));
    }
}
