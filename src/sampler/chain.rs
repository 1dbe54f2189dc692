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
