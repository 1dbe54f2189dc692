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

    /// Applies the penalties to `row` (one logit per token id) for the
    /// tokens `seen` so far. Ids outside the row are ignored (the callers
    /// check them against the vocabulary).
    pub fn apply(&self, row: &mut [f32], seen: &Seen) {
        if self.is_off() || seen.ids.is_empty() {
            return;
        }
        let rep = self.repetition as f32;
        for (&t, &n) in &seen.counts {
            if let Some(x) = row.get_mut(t) {
                if self.repetition != 1.0 {
                    *x = if *x < 0.0 { *x * rep } else { *x / rep };
                }
                *x -= (self.frequency * f64::from(n) + self.presence) as f32;
            }
        }
        if self.no_repeat_ngram > 0 {
            for t in banned_by_ngrams(&seen.ids, self.no_repeat_ngram) {
                if let Some(x) = usize::try_from(t).ok().and_then(|t| row.get_mut(t)) {
                    *x = f32::NEG_INFINITY;
                }
            }
        }
    }
}

/// The tokens a row has seen (its prompt, then what it drew), with each
/// one's count kept as tokens come, so a penalty costs the distinct tokens
/// seen, not the whole history, at every step.
#[derive(Clone, Debug, Default)]
pub struct Seen {
    ids: Vec<i64>,
    counts: HashMap<usize, u32>,
}

impl Seen {
    pub fn new(ids: &[i64]) -> Seen {
        let mut seen = Seen::default();
        for &t in ids {
            seen.push(t);
        }
        seen
    }

    pub fn push(&mut self, id: i64) {
        self.ids.push(id);
        if let Ok(t) = usize::try_from(id) {
            *self.counts.entry(t).or_insert(0) += 1;
        }
    }

    pub fn ids(&self) -> &[i64] {
        &self.ids
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

/// Penalties on `row` for the tokens `seen` (in the vocabulary), then
/// unless greedy the warpers: the candidates a token is drawn from (greedy:
/// every token, penalized); None when the penalties removed every token.
pub fn process(row: &mut [f32], seen: &Seen, opts: &SampleOptions) -> Option<Candidates> {
    opts.penalties.apply(row, seen);
    if !row.iter().any(|x| x.is_finite()) {
        return None;
    }
    Some(if opts.greedy {
        row.iter().copied().enumerate().collect()
    } else {
        warp(row, opts)
    })
}

/// `x` `[rows, V]` as float32 rows on the CPU, and `previous` checked
/// against the vocabulary.
fn rows_of(x: &Tensor, seen: &[Seen]) -> Result<(Vec<f32>, usize)> {
    let (_, vocab) = x.size2()?;
    let data = Vec::<f32>::try_from(
        x.f_to_device(Device::Cpu)?
            .f_to_kind(Kind::Float)?
            .f_contiguous()?
            .f_reshape([-1])?,
    )?;
    let vocab = usize::try_from(vocab).unwrap_or(0).max(1);
    for (r, s) in seen.iter().enumerate() {
        if let Some(&bad) = s.ids().iter().find(|&&t| t < 0 || t as u64 >= vocab as u64) {
            return Err(Error::Index(format!(
                "previous token id {bad} (row {r}) is out of range for {vocab} logits"
            )));
        }
    }
    Ok((data, vocab))
}

fn removed_all(r: usize, batched: bool) -> Error {
    let at = if batched {
        format!(" (row {r})")
    } else {
        String::new()
    };
    Error::shape(format!(
        "sample: every token is removed{at} (by the penalties); at least one must stay"
    ))
}

/// The chain's logits for `x` `[rows, V]` after `previous`: what the draw
/// sees (as transformers' `LogitsProcessorList` returns them, up to a shift
/// of each row), removed tokens `-inf`; on `x`'s device, float32.
pub fn process_rows(x: &Tensor, previous: &[Vec<i64>], opts: &SampleOptions) -> Result<Tensor> {
    let seen: Vec<Seen> = previous.iter().map(|p| Seen::new(p)).collect();
    let (mut data, vocab) = rows_of(x, &seen)?;
    let mut out = vec![f32::NEG_INFINITY; data.len()];
    for (r, (row, dst)) in data
        .chunks_exact_mut(vocab)
        .zip(out.chunks_exact_mut(vocab))
        .enumerate()
    {
        let cand = process(row, seen.get(r).unwrap_or(&Seen::default()), opts)
            .ok_or_else(|| removed_all(r, true))?;
        for (i, v) in cand {
            if let Some(d) = dst.get_mut(i) {
                *d = v;
            }
        }
    }
    let rows = i64::try_from(out.len() / vocab).unwrap_or(0);
    Ok(Tensor::from_slice(&out)
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
    let mut seen: Vec<Seen> = previous.iter().map(|p| Seen::new(p)).collect();
    sample_rows_seen(x, &mut seen, opts, rng, batched)
}

/// [`sample_rows`] for rows that keep what they have seen in `seen` (one per
/// row; a token loop's): each drawn token is added to its row's.
pub fn sample_rows_seen<R: UniformSource + ?Sized>(
    x: &Tensor,
    seen: &mut [Seen],
    opts: &SampleOptions,
    rng: &mut R,
    batched: bool,
) -> Result<Tensor> {
    let (rows, _) = x.size2()?;
    let (mut data, vocab) = rows_of(x, seen)?;
    let u = if opts.greedy {
        Vec::new()
    } else {
        Vec::<f64>::try_from(
            rng.uniform(&[rows], Device::Cpu)?
                .f_to_kind(Kind::Double)?
                .f_contiguous()?,
        )?
    };
    let empty = Seen::default();
    let mut out = Vec::with_capacity(data.len() / vocab);
    for (r, row) in data.chunks_exact_mut(vocab).enumerate() {
        let cand = process(row, seen.get(r).unwrap_or(&empty), opts)
            .ok_or_else(|| removed_all(r, batched))?;
        let token = if opts.greedy {
            argmax(row)
        } else {
            draw(&cand, u.get(r).copied().unwrap_or(0.0))
        };
        if let Some(s) = seen.get_mut(r) {
            s.push(token as i64);
        }
        out.push(token as i64);
    }
    Ok(Tensor::from_slice(&out).f_to_device(x.device())?)
}

/// The first largest value's index.
pub fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in row.iter().enumerate() {
        if x > row.get(best).copied().unwrap_or(f32::NEG_INFINITY) {
            best = i;
        }
    }
    best
}

/// The tokens still in the running: `(id, logit)`, removed ones left out.
pub type Candidates = Vec<(usize, f32)>;

/// Temperature, top-k, top-p, min-p and typical on `row`: the surviving
/// `(id, scaled logit)` pairs, in id order. Everything after top-k works on
/// the candidates alone, so a token costs O(V) plus O(k log k), not a sort
/// of the vocabulary.
pub fn warp(row: &[f32], opts: &SampleOptions) -> Candidates {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let t = opts.temperature;
    // Shifted before dividing, as `sample_logits` does, so tiny temperatures
    // stay finite; every rule below is invariant to the shift.
    let scaled = |x: f32| (f64::from(x - max) / t) as f32;
    let mut cand: Candidates = match opts.top_k.and_then(|k| usize::try_from(k).ok()) {
        Some(k) if k >= 1 && k < row.len() => {
            // transformers' TopKLogitsWarper: below the k-th largest value is
            // removed, so ties with it stay.
            let mut sorted: Vec<f32> = row.to_vec();
            sorted.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
            let kth = sorted.get(k - 1).copied().unwrap_or(f32::NEG_INFINITY);
            row.iter()
                .enumerate()
                .filter(|&(_, &x)| x >= kth && x > f32::NEG_INFINITY)
                .map(|(i, &x)| (i, scaled(x)))
                .collect()
        }
        _ => row
            .iter()
            .enumerate()
            .filter(|&(_, &x)| x > f32::NEG_INFINITY)
            .map(|(i, &x)| (i, scaled(x)))
            .collect(),
    };
    if let Some(p) = opts.top_p.filter(|&p| p < 1.0) {
        top_p(&mut cand, p);
    }
    if let Some(p) = opts.min_p {
        min_p(&mut cand, p);
    }
    if let Some(p) = opts.typical_p.filter(|&p| p < 1.0) {
        typical(&mut cand, p);
    }
    cand
}

/// Softmax probabilities of the candidates, in float64.
fn probabilities(cand: &[(usize, f32)]) -> Vec<f64> {
    let max = cand.iter().map(|c| c.1).fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f64> = cand.iter().map(|c| f64::from(c.1 - max).exp()).collect();
    let total: f64 = e.iter().sum();
    e.into_iter().map(|x| x / total).collect()
}

/// Keeps the candidates at the positions where `keep` holds, in order.
fn retain_by(cand: &mut Candidates, keep: &[bool]) {
    let mut i = 0;
    cand.retain(|_| {
        let k = keep.get(i).copied().unwrap_or(true);
        i += 1;
        k
    });
}

/// transformers' TopPLogitsWarper: from the least likely up, removes tokens
/// while the mass so far (theirs included) is at most `1 - p`; the most
/// likely token stays.
fn top_p(cand: &mut Candidates, p: f64) {
    let probs = probabilities(cand);
    // (logit, position) pairs, stably sorted by logit: ties keep id order.
    let mut order: Vec<(f32, usize)> = cand.iter().enumerate().map(|(i, c)| (c.1, i)).collect();
    order.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut keep = vec![true; cand.len()];
    let mut cum = 0.0;
    let last = order.len().saturating_sub(1);
    for (j, &(_, i)) in order.iter().enumerate() {
        cum += probs.get(i).copied().unwrap_or(0.0);
        if cum > 1.0 - p || j == last {
            break;
        }
        if let Some(k) = keep.get_mut(i) {
            *k = false;
        }
    }
    retain_by(cand, &keep);
}

/// transformers' MinPLogitsWarper: removes the tokens whose probability is
/// below `min_p` times the largest one's; the most likely token stays.
/// `p_i >= min_p * p_top` is `l_i - l_top >= ln(min_p)`: the softmax's
/// normalisation cancels, so no probability is computed.
fn min_p(cand: &mut Candidates, min_p: f64) {
    let top = cand.iter().map(|c| c.1).fold(f32::NEG_INFINITY, f32::max);
    let first_top = cand.iter().position(|c| c.1 == top);
    let floor = min_p.ln();
    let mut i = 0;
    cand.retain(|c| {
        let keep = f64::from(c.1 - top) >= floor || Some(i) == first_top;
        i += 1;
        keep
    });
}

/// transformers' TypicalLogitsWarper (Meister et al. 2022): orders the
/// tokens by how far their surprisal `-log p` is from the entropy, finds the
/// first at which the mass reaches `mass`, and removes every token farther
/// out than it; the closest token stays.
fn typical(cand: &mut Candidates, mass: f64) {
    let p = probabilities(cand);
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
    let at = |i: usize| shifted.get(i).copied().unwrap_or(f64::INFINITY);
    let mut order: Vec<usize> = (0..cand.len()).collect();
    order.sort_by(|&a, &b| at(a).total_cmp(&at(b)));
    let mut cum = 0.0;
    let mut last = order.len().saturating_sub(1);
    for (j, &i) in order.iter().enumerate() {
        cum += p.get(i).copied().unwrap_or(0.0);
        if cum >= mass {
            last = j;
            break;
        }
    }
    let limit = order.get(last).map_or(f64::INFINITY, |&i| at(i));
    let first = order.first().copied();
    let keep: Vec<bool> = (0..cand.len())
        .map(|i| at(i) <= limit || Some(i) == first)
        .collect();
    retain_by(cand, &keep);
}

/// One candidate by the running sum of the weights `exp(x - max)` against
/// `u` times their total.
pub fn draw(cand: &[(usize, f32)], u: f64) -> usize {
    let max = cand.iter().map(|c| c.1).fold(f32::NEG_INFINITY, f32::max);
    // Each weight computed once: the token loops draw every row of every token.
    let w: Vec<f64> = cand.iter().map(|c| f64::from(c.1 - max).exp()).collect();
    let total: f64 = w.iter().sum();
    let target = u * total;
    let mut acc = 0.0;
    for (&(i, _), &x) in cand.iter().zip(&w) {
        acc += x;
        if acc > target {
            return i;
        }
    }
    // Rounding left the target at the very top: the last candidate.
    cand.last().map_or(0, |c| c.0)
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
        p.apply(&mut row, &Seen::new(&[0, 1, 1, 9]));
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
        let row = [0.0f32, (0.5f32).ln(), (0.04f32).ln(), f32::NEG_INFINITY];
        let opts = SampleOptions {
            min_p: Some(0.1),
            ..SampleOptions::default()
        };
        let ids: Vec<usize> = warp(&row, &opts).into_iter().map(|c| c.0).collect();
        assert_eq!(ids, [0, 1]);
        let opts = SampleOptions {
            min_p: Some(1.0),
            ..SampleOptions::default()
        };
        assert_eq!(warp(&[1.0, 1.0], &opts).len(), 2);
    }
}
