//! Beam search: the deterministic alternative to sampling, as Hugging Face
//! transformers' `num_beams` runs it, batched over the beams.
//!
//! Every step scores each running beam's continuations by the sum of their
//! log-probabilities, keeps the best `2 * num_beams` candidates (so that
//! `num_beams` running beams remain even when some of the best end), moves
//! a candidate that ends in a stop token to the finished hypotheses, and
//! reorders the stack's state rows to follow the surviving beams. A
//! hypothesis is ranked by `log P / len ** length_penalty` (`len` counting
//! its tokens, the stop token included), so a length penalty above 0 favours
//! longer ones. Without `early_stopping` the search goes on until no running
//! beam can still beat the worst of the `num_beams` finished ones.
//!
//! The search itself ([`search`]) is written once, over [`BeamRows`]: the
//! model's state rows, one per running beam, that give each step's best
//! candidates and advance to the ones kept. float32 models on the CPU with a
//! linear head run them on the fused kernels (`super::fused`), all others on
//! libtorch ops (`ops`).

// Values from Python reach this module: no index or slice may panic.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

mod ops;
#[cfg(test)]
mod tests;

use tch::Tensor;

use super::{check, fused, GenerateOptions, LmWeights};
use crate::error::{Error, Result};
use crate::rnn::RnnConfig;

/// How the search runs.
#[derive(Clone, Copy, Debug)]
pub struct BeamOptions {
    pub num_beams: usize,
    pub length_penalty: f64,
    pub early_stopping: bool,
    /// How many of the best hypotheses to return (at most `num_beams`).
    pub num_return: usize,
}

/// A finished continuation: its ids (the stop token included when one
/// ended it), `log P(ids | prompt)` and its rank score.
#[derive(Clone, Debug, PartialEq)]
pub struct Hypothesis {
    pub ids: Vec<i64>,
    pub log_prob: f64,
    pub score: f64,
}

/// A continuation of running row `row` by `token`, whose summed
/// log-probability is `total`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Candidate {
    pub total: f64,
    pub row: usize,
    pub token: i64,
}

/// The model's state rows, one per running beam (one row, the prompt's
/// state, before the first step).
pub(crate) trait BeamRows {
    /// The best `min(want, rows x vocabulary)` continuations of the rows
    /// whose summed log-probabilities are `sums` (one per row), best first,
    /// totals in float64. Where the logits give a row no log-probabilities
    /// (NaN, as torch's `log_softmax` gives for them) the first candidate's
    /// total is NaN.
    fn best(&mut self, sums: &[f64], want: usize) -> Result<Vec<Candidate>>;

    /// Makes row `i` a copy of row `parents[i]` (rows not named are dropped)
    /// and feeds it `tokens[i]`, for the next [`BeamRows::best`].
    fn advance(&mut self, parents: &[usize], tokens: &[i64]) -> Result<()>;
}

/// The best `num_beams` finished hypotheses, best first.
struct Finished {
    keep: usize,
    hyps: Vec<Hypothesis>,
    length_penalty: f64,
}

impl Finished {
    fn score(&self, log_prob: f64, len: usize) -> f64 {
        log_prob / (len.max(1) as f64).powf(self.length_penalty)
    }

    fn add(&mut self, ids: Vec<i64>, log_prob: f64) {
        let score = self.score(log_prob, ids.len());
        if self.hyps.len() == self.keep && self.hyps.last().is_some_and(|h| h.score >= score) {
            return;
        }
        let at = self.hyps.partition_point(|h| h.score >= score);
        self.hyps.insert(
            at,
            Hypothesis {
                ids,
                log_prob,
                score,
            },
        );
        self.hyps.truncate(self.keep);
    }

    /// Whether no running beam (the best at `best_log_prob`, `len` tokens)
    /// can still enter the list.
    fn done(&self, best_log_prob: f64, len: usize, early_stopping: bool) -> bool {
        if self.hyps.len() < self.keep {
            return false;
        }
        early_stopping
            || self
                .hyps
                .last()
                .is_some_and(|worst| worst.score >= self.score(best_log_prob, len))
    }
}

/// Searches `opts.num_beams` beams for `gen.max_tokens` tokens at most
/// after `prompt`; `gen.stop`'s ids end a hypothesis (its strings are not
/// used). `interrupted` is polled every step.
pub fn beam_search(
    cfg: &RnnConfig,
    w: &LmWeights,
    prompt: &Tensor,
    gen: &GenerateOptions,
    opts: &BeamOptions,
    interrupted: impl FnMut() -> bool,
) -> Result<Vec<Hypothesis>> {
    let _guard = tch::no_grad_guard();
    if opts.num_beams < 1 {
        return Err(Error::value(format!(
            "num_beams must be >= 1, got {}",
            opts.num_beams
        )));
    }
    if !(1..=opts.num_beams).contains(&opts.num_return) {
        return Err(Error::value(format!(
            "num_return_sequences must be between 1 and num_beams = {}, got {}",
            opts.num_beams, opts.num_return
        )));
    }
    if !opts.length_penalty.is_finite() {
        return Err(Error::value(format!(
            "length_penalty must be finite, got {}",
            opts.length_penalty
        )));
    }
    i64::try_from(opts.num_beams).map_err(|_| Error::value("num_beams is too large"))?;
    check(cfg, w, prompt, gen)?;
    let max_tokens = usize::try_from(gen.max_tokens).unwrap_or(0);
    let stops = gen.stop.ids();
    if fused::supports(cfg, w) {
        fused::beam_search(cfg, w, prompt, opts, stops, max_tokens, interrupted)
    } else {
        let mut rows = ops::OpRows::new(cfg, w, prompt)?;
        search(&mut rows, opts, stops, max_tokens, interrupted)
    }
}

/// The search over `rows` (primed with the prompt) for `max_tokens` tokens
/// at most; `stops` (sorted) end a hypothesis.
pub(crate) fn search(
    rows: &mut impl BeamRows,
    opts: &BeamOptions,
    stops: &[i64],
    max_tokens: usize,
    mut interrupted: impl FnMut() -> bool,
) -> Result<Vec<Hypothesis>> {
    // The running beams: their tokens and summed log-probabilities.
    let mut running: Vec<(Vec<i64>, f64)> = vec![(Vec::new(), 0.0)];
    let mut finished = Finished {
        keep: opts.num_beams,
        hyps: Vec::new(),
        length_penalty: opts.length_penalty,
    };
    let mut done = false;
    for step in 0..max_tokens {
        if interrupted() {
            return Err(Error::Interrupted);
        }
        let sums: Vec<f64> = running.iter().map(|b| b.1).collect();
        let candidates = rows.best(&sums, opts.num_beams.saturating_mul(2))?;
        // At most 2 num_beams candidates survive: num_beams itself may be any size.
        let room = opts.num_beams.min(candidates.len());
        let mut next: Vec<(Vec<i64>, f64)> = Vec::with_capacity(room);
        let mut parents: Vec<usize> = Vec::with_capacity(room);
        for (rank, c) in candidates.iter().enumerate() {
            let Some((ids, _)) = running.get(c.row) else {
                continue;
            };
            if !c.total.is_finite() {
                break; // only tokens of zero probability remain
            }
            let mut ids = ids.clone();
            ids.push(c.token);
            if stops.binary_search(&c.token).is_ok() {
                // As transformers: a stop among the first num_beams candidates
                // ends a hypothesis; one ranked lower is not taken.
                if rank < opts.num_beams {
                    finished.add(ids, c.total);
                }
            } else if next.len() < opts.num_beams {
                next.push((ids, c.total));
                parents.push(c.row);
            }
        }
        let best = next.first().map(|b| b.1);
        running = next;
        let len = step + 1;
        match best {
            None => break,
            Some(b) if finished.done(b, len, opts.early_stopping) => {
                done = true;
                break;
            }
            _ => {}
        }
        if len == max_tokens {
            break;
        }
        let tokens: Vec<i64> = running.iter().filter_map(|b| b.0.last().copied()).collect();
        rows.advance(&parents, &tokens)?;
    }
    // Cut off by max_tokens, the beams still running are hypotheses too
    // (transformers' finalize; a finished search keeps what it found).
    if !done {
        for (ids, log_prob) in running {
            finished.add(ids, log_prob);
        }
    }
    let mut hyps = finished.hyps;
    hyps.truncate(opts.num_return);
    Ok(hyps)
}
