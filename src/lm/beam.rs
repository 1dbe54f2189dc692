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

// Values from Python reach this module: no index or slice may panic.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use tch::{Device, Kind, Tensor};

use super::{check, prime, GenerateOptions, LmWeights};
use crate::error::{Error, Result};
use crate::rnn::product::Product;
use crate::rnn::token::{TokenState, TokenStepper};
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
    mut interrupted: impl FnMut() -> bool,
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
    let beams =
        i64::try_from(opts.num_beams).map_err(|_| Error::value("num_beams is too large"))?;
    check(cfg, w, prompt, gen)?;
    let device = w.embedding.device();
    let prompt = prompt.f_to_device(device)?;
    let (last, h_n, c_n) = prime(cfg, w, &prompt)?;
    let stepper = TokenStepper::new(cfg, w.stack)?;
    let head = Product::new(w.head_weight, w.head_bias.map(Tensor::shallow_clone))?;
    let mut state = TokenState {
        h: h_n.f_unbind(0)?,
        c: match &c_n {
            Some(c) => c.f_unbind(0)?,
            None => Vec::new(),
        },
    };
    let mut logits = head.apply(&last)?;
    // The running beams: their tokens and summed log-probabilities.
    let mut running: Vec<(Vec<i64>, f64)> = vec![(Vec::new(), 0.0)];
    let mut finished = Finished {
        keep: opts.num_beams,
        hyps: Vec::new(),
        length_penalty: opts.length_penalty,
    };
    let stops = gen.stop.ids();
    let max_tokens = usize::try_from(gen.max_tokens).unwrap_or(0);
    let mut done = false;
    for step in 0..max_tokens {
        if interrupted() {
            return Err(Error::Interrupted);
        }
        let logp = logits
            .f_to_kind(Kind::Double)?
            .f_log_softmax(1, Kind::Double)?
            .f_to_device(Device::Cpu)?;
        let sums = Tensor::from_slice(&running.iter().map(|b| b.1).collect::<Vec<_>>());
        let total = logp.f_add(&sums.f_unsqueeze(1)?)?.f_reshape([-1])?;
        let vocab = logp.size2()?.1;
        let k = beams.saturating_mul(2).min(total.numel() as i64);
        let (values, flat) = total.f_topk(k, 0, true, true)?;
        let values = Vec::<f64>::try_from(values)?;
        let flat = Vec::<i64>::try_from(flat)?;
        // At most k candidates survive: num_beams itself may be any size.
        let room = opts.num_beams.min(values.len());
        let mut next: Vec<(Vec<i64>, f64)> = Vec::with_capacity(room);
        let mut parents: Vec<i64> = Vec::with_capacity(room);
        for (rank, (&score, &f)) in values.iter().zip(&flat).enumerate() {
            let (parent, token) = (f / vocab, f % vocab);
            let Some((ids, _)) = running.get(usize::try_from(parent).unwrap_or(usize::MAX)) else {
                continue;
            };
            if !score.is_finite() {
                break; // only tokens of zero probability remain
            }
            let mut ids = ids.clone();
            ids.push(token);
            if stops.binary_search(&token).is_ok() {
                // As transformers: a stop among the first num_beams candidates
                // ends a hypothesis; one ranked lower is not taken.
                if rank < opts.num_beams {
                    finished.add(ids, score);
                }
            } else if next.len() < opts.num_beams {
                next.push((ids, score));
                parents.push(parent);
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
        let idx = Tensor::from_slice(&parents).f_to_device(device)?;
        for t in state.h.iter_mut().chain(state.c.iter_mut()) {
            *t = t.f_index_select(0, &idx)?;
        }
        let tokens: Vec<i64> = running.iter().filter_map(|b| b.0.last().copied()).collect();
        let x = w
            .embedding
            .f_index_select(0, &Tensor::from_slice(&tokens).f_to_device(device)?)?;
        let top = stepper.step(&x, &mut state)?;
        logits = head.apply(&top)?;
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
