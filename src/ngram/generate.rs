//! Sampling continuations: the whole next-token distribution of each
//! sample's context (see [`NGramModel::distribution`]) as natural-log
//! logits, one row per sample, drawn by rustrnn's sampler
//! ([`crate::sampler::sample_logits`]: temperature, top-k, top-p, greedy). Words of
//! probability 0 (`<s>` always) are `-inf` logits, never drawn.

// Values from Python reach this module: no index or slice may panic.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use tch::Tensor;

use super::NGramModel;
use crate::error::{Error, Result};
use crate::kernel::team::try_vec;
use crate::sampler::{sample_validated, SampleOptions, UniformSource};

/// What to generate.
#[derive(Clone, Debug, Default)]
pub struct GenerateOptions {
    /// Tokens per sample at most.
    pub max_tokens: usize,
    /// Samples, drawn together as the rows of one batch (at least 1).
    pub num_samples: usize,
    /// Words that end a sample (kept as its last token).
    pub stop: Vec<u32>,
}

impl NGramModel {
    /// Continues `prompt` (words, read after a line break) `num_samples`
    /// times; returns each sample's words.
    pub fn generate(
        &self,
        prompt: &[u32],
        opts: &GenerateOptions,
        sample: &SampleOptions,
        rng: &mut dyn UniformSource,
        interrupted: &mut dyn FnMut() -> bool,
    ) -> Result<Vec<Vec<u32>>> {
        sample.validate()?;
        if opts.num_samples == 0 {
            return Err(Error::value("num_samples must be at least 1"));
        }
        let rows = opts.num_samples;
        let v = self.words.len();
        let start = self.advance(self.begin(true), prompt);
        // Sizes from the caller: refused with an error rather than aborting.
        let cells = rows.checked_mul(v).ok_or_else(|| {
            Error::shape(format!("{rows} samples of {v} words overflow memory sizes"))
        })?;
        let mut logits = try_vec(0f64, cells)?;
        let mut states = try_vec(start, rows)?;
        let mut out: Vec<Vec<u32>> = try_vec(Vec::new(), rows)?;
        let mut done = try_vec(false, rows)?;
        for _ in 0..opts.max_tokens {
            if interrupted() {
                return Err(Error::Interrupted);
            }
            for (row, state) in logits.chunks_mut(v).zip(&states) {
                for (x, p) in row.iter_mut().zip(self.distribution(state)) {
                    *x = p.ln();
                }
            }
            let t = Tensor::f_from_slice(&logits)?.f_view([rows as i64, v as i64])?;
            let next = Vec::<i64>::try_from(sample_validated(&t, sample, rng)?)?;
            let samples = out.iter_mut().zip(states.iter_mut()).zip(done.iter_mut());
            for (((out, state), done), &w) in samples.zip(&next) {
                if *done {
                    continue;
                }
                let w = u32::try_from(w).map_err(|_| Error::shape("the sampler drew a bad id"))?;
                out.push(w);
                *state = self.next_state(state, w);
                *done = opts.stop.contains(&w);
            }
            if done.iter().all(|&d| d) {
                break;
            }
        }
        Ok(out)
    }
}
