//! The next token from one row of float32 logits in a slice, by the rule of
//! [`crate::sampler::sample_logits`]: shift by the row maximum, divide by the
//! temperature, keep the top k (with any tied with the k-th) and/or the nucleus
//! of mass p, draw with one
//! uniform against the running sum of `exp`. For the fused generation loop,
//! where building tensors for each row would cost more than the draw.

use crate::sampler::chain;
use crate::sampler::SampleOptions;

/// Below this temperature the shifted logits are divided in float64, as in
/// `sample_logits`, so that `0 / T` stays finite.
const TINY_TEMPERATURE: f64 = 1e-30;

/// Scratch space for drawing rows of one vocabulary size.
pub struct RowDraw {
    opts: SampleOptions,
    /// Candidate ids, most likely first when sorted.
    order: Vec<usize>,
    /// Their weights `exp(z)`.
    weights: Vec<f64>,
    /// The row being penalized, for the decoding chain.
    scratch: Vec<f32>,
}

impl RowDraw {
    pub fn new(opts: SampleOptions) -> Self {
        RowDraw {
            opts,
            order: Vec::new(),
            weights: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// [`RowDraw::draw`] for a row that has seen the tokens `seen`: with
    /// penalties, min-p or typical on, the whole decoding chain
    /// (`sampler::chain`) on a copy of the row, as `sample_after` draws.
    pub fn draw_after(&mut self, logits: &[f32], seen: &chain::Seen, u: f64) -> Result<usize, f32> {
        if !self.opts.uses_chain() {
            return self.draw(logits, u);
        }
        let max = row_max(logits);
        if !max.is_finite() {
            return Err(max);
        }
        self.scratch.clear();
        self.scratch.extend_from_slice(logits);
        let Some(cand) = chain::process(&mut self.scratch, seen, &self.opts) else {
            return Err(f32::NEG_INFINITY);
        };
        if self.opts.greedy {
            return Ok(chain::argmax(&self.scratch));
        }
        Ok(chain::draw(&cand, u))
    }

    /// The drawn id, or the row's maximum when it is not finite (nan, `+inf`,
    /// or `-inf` everywhere): the caller reports it as `sample_logits` does.
    pub fn draw(&mut self, logits: &[f32], u: f64) -> Result<usize, f32> {
        let max = row_max(logits);
        if !max.is_finite() {
            return Err(max);
        }
        if self.opts.greedy {
            return Ok(logits.iter().position(|&x| x == max).unwrap_or(0));
        }
        let t = self.opts.temperature;
        let vocab = logits.len();
        let top_k = self.opts.top_k.map(|k| k as usize).filter(|&k| k < vocab);
        let top_p = self.opts.top_p.filter(|&p| p < 1.0);
        self.order.clear();
        self.order.extend(0..vocab);
        // exp((x - max) / T), in float32 like the tensor path unless T is tiny.
        let weight = |x: f32| -> f64 {
            if t < TINY_TEMPERATURE {
                ((x as f64 - max as f64) / t).exp()
            } else {
                ((x - max) / t as f32).exp() as f64
            }
        };
        let desc = |a: &usize, b: &usize| logits[*b].total_cmp(&logits[*a]);
        if let Some(k) = top_k {
            self.order.select_nth_unstable_by(k - 1, desc);
            // Every token tied with the k-th stays, as transformers' top-k keeps it.
            let kth = self.order.get(k - 1).map_or(f32::NAN, |&i| logits[i]);
            let mut kept = k;
            for j in k..vocab {
                if logits[self.order[j]] == kth {
                    self.order.swap(kept, j);
                    kept += 1;
                }
            }
            self.order.truncate(kept);
            self.order.sort_unstable_by(desc);
        } else if top_p.is_some() {
            self.order.sort_unstable_by(desc);
        }
        self.weights.clear();
        self.weights
            .extend(self.order.iter().map(|&i| weight(logits[i])));
        if let Some(p) = top_p {
            // The nucleus is measured against the whole row's mass, or after
            // top-k against the k candidates'.
            let total: f64 = match top_k {
                Some(_) => self.weights.iter().sum(),
                None => logits.iter().map(|&x| weight(x)).sum(),
            };
            let mut before = 0.0;
            for w in self.weights.iter_mut() {
                let here = *w;
                if before / total >= p {
                    *w = 0.0;
                }
                before += here;
            }
        }
        let total: f64 = self.weights.iter().sum();
        let target = u * total;
        let mut acc = 0.0;
        for (j, w) in self.weights.iter().enumerate() {
            acc += w;
            if acc > target {
                return Ok(self.order[j]);
            }
        }
        // Rounding left the target at the very top: the last positive weight.
        let j = self.weights.iter().rposition(|&w| w > 0.0).unwrap_or(0);
        Ok(self.order[j])
    }
}

/// The maximum, or nan when any element is nan (as `amax`).
fn row_max(x: &[f32]) -> f32 {
    let mut m = f32::NEG_INFINITY;
    for &v in x {
        if v.is_nan() {
            return v;
        }
        m = m.max(v);
    }
    m
}
