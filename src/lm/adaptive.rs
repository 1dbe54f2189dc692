//! The adaptive softmax head (Grave et al. 2017, "Efficient softmax
//! approximation for GPUs"), as torch's `nn.AdaptiveLogSoftmaxWithLoss`
//! defines it: its configuration and rules ([`AdaptiveConfig`]) and its math
//! on libtorch ops ([`AdaptiveHead`]), ported from torch's
//! `torch/nn/modules/adaptive.py` so the same weights give the same numbers.
//!
//! The vocabulary is cut by id into a shortlist `[0, c_0)` and clusters
//! `[c_0, c_1)`, ..., `[c_{n-1}, V)`. The head scores the shortlist's tokens
//! and one entry per cluster; cluster `i` scores its own tokens through a
//! projection to `floor(H / div_value^(i+1))` units. A token's probability is
//! its head probability (shortlist) or its cluster's head probability times
//! its probability within the cluster. rustrnn's vocabulary numbers the
//! specials first, then the tokens by decreasing frequency, so the cuts are
//! by frequency, as the method wants.
//!
//! Every function here is a chain of ordinary libtorch ops on any device, so
//! autograd records them, except [`AdaptiveHead::loss_and_grads`]: the
//! trainer's loss with its gradients written out, each log-softmax fused
//! with its product.

// Values from Python and from checkpoint files reach this module: no index or
// slice may panic.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use tch::{Kind, Scalar, Tensor};

use crate::error::{Error, Result};
use crate::lm::cross_entropy::{LinearCrossEntropy, Needs, Reduction};
use crate::pyfmt::py_float;
use crate::rnn::config::ParamSpec;

/// torch's default `div_value`.
pub const DEFAULT_DIV_VALUE: f64 = 4.0;

/// The default cutoffs are these boundaries, each [`CUTOFF_GROWTH`] times the
/// last, as long as they are at most half the vocabulary.
const FIRST_CUTOFF: i64 = 2_000;
const CUTOFF_GROWTH: i64 = 5;

/// torch's message for cutoffs it refuses (all of its rules in one sentence).
pub const CUTOFFS_RULE: &str =
    "cutoffs should be a sequence of unique, positive integers sorted in \
                            an increasing order, where each value is between 1 and n_classes-1";

/// The adaptive head's hyper-parameters (torch's constructor arguments).
#[derive(Clone, Debug, PartialEq)]
pub struct AdaptiveConfig {
    /// The first id of each cluster: increasing, unique, in `[1, V - 1]`.
    pub cutoffs: Vec<i64>,
    /// Cluster `i` (from 0) projects to `floor(H / div_value^(i+1))` units.
    pub div_value: f64,
}

impl AdaptiveConfig {
    /// Checks the rules that need no vocabulary size (see
    /// [`AdaptiveConfig::check_vocab`] for the one that does).
    pub fn new(cutoffs: Vec<i64>, div_value: f64) -> Result<AdaptiveConfig> {
        let cfg = AdaptiveConfig { cutoffs, div_value };
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<()> {
        if self.cutoffs.is_empty() {
            return Err(Error::value(
                "cutoffs should be a sequence of length larger than 0",
            ));
        }
        let increasing = self.cutoffs.windows(2).all(|w| w.first() < w.get(1));
        if !increasing || self.cutoffs.first().is_some_and(|&c| c <= 0) {
            return Err(Error::value(CUTOFFS_RULE));
        }
        // torch computes the widths without a check: 0 fails there with a
        // ZeroDivisionError, a negative value with a negative dimension.
        if !(self.div_value.is_finite() && self.div_value > 0.0) {
            return Err(Error::value(format!(
                "div_value must be a positive finite number, got {}",
                py_float(self.div_value)
            )));
        }
        Ok(())
    }

    /// The cutoffs against the vocabulary size (torch's `n_classes`): the
    /// last must be at most `V - 1`, so that every cluster has a token.
    pub fn check_vocab(&self, vocab_size: i64) -> Result<()> {
        self.validate()?;
        if self.cutoffs.last().is_some_and(|&c| c > vocab_size - 1) {
            return Err(Error::value(CUTOFFS_RULE));
        }
        Ok(())
    }

    /// The cutoffs a vocabulary of `vocab_size` gets when none are given, the
    /// split common recipes use: the boundaries 2,000, 10,000, 50,000, ...
    /// (each five times the last) that are at most `V / 2`, so the last
    /// cluster holds at least half the vocabulary; a vocabulary too small
    /// for 2,000 (under 4,000 tokens) gets one cutoff at `max(1, V / 4)`.
    pub fn default_cutoffs(vocab_size: i64) -> Result<Vec<i64>> {
        if vocab_size < 2 {
            return Err(Error::value(format!(
                "an adaptive head needs a vocabulary of at least 2 tokens (a shortlist and a \
                 cluster), got {vocab_size}"
            )));
        }
        let mut cutoffs = Vec::new();
        let mut c = FIRST_CUTOFF;
        while c <= vocab_size / 2 {
            cutoffs.push(c);
            c = c.saturating_mul(CUTOFF_GROWTH);
        }
        if cutoffs.is_empty() {
            cutoffs.push((vocab_size / 4).max(1));
        }
        Ok(cutoffs)
    }

    /// `cutoffs` checked against `vocab_size`, or the default ones for it.
    pub fn resolve_cutoffs(vocab_size: i64, cutoffs: Option<Vec<i64>>) -> Result<Vec<i64>> {
        match cutoffs {
            None => AdaptiveConfig::default_cutoffs(vocab_size),
            Some(cutoffs) => {
                AdaptiveConfig {
                    cutoffs: cutoffs.clone(),
                    div_value: DEFAULT_DIV_VALUE,
                }
                .check_vocab(vocab_size)?;
                Ok(cutoffs)
            }
        }
    }

    /// How many tensors the head has: its own matrix and two per cluster.
    pub fn num_tensors(&self) -> usize {
        self.cutoffs.len().saturating_mul(2).saturating_add(1)
    }

    /// The width of cluster `i`'s projection, as torch computes it
    /// (`int(in_features // (div_value ** (i + 1)))`, in float64).
    pub fn projection_size(&self, in_features: i64, i: usize) -> Result<i64> {
        let exponent = i32::try_from(i + 1).unwrap_or(i32::MAX);
        let width = py_floor_div(in_features as f64, self.div_value.powf(f64::from(exponent)));
        // Bounded well below i64::MAX: a width this large is a mistake, and the
        // checks that compare it with a file's shapes must not overflow.
        if !(0.0..=(1u64 << 40) as f64).contains(&width) {
            return Err(Error::value(format!(
                "div_value={} gives cluster {i} a projection of {} units for \
                 in_features={in_features}",
                py_float(self.div_value),
                py_float(width)
            )));
        }
        Ok(width as i64)
    }

    /// The head's tensors in torch's `state_dict` order, named as in torch's
    /// module (`head.weight`, `tail.{i}.0.weight`, `tail.{i}.1.weight`), for
    /// `in_features` inputs and `n_classes` tokens.
    pub fn param_specs(&self, in_features: i64, n_classes: i64) -> Result<Vec<ParamSpec>> {
        self.check_vocab(n_classes)?;
        let bounds = self.bounds(n_classes);
        let shortlist = bounds.first().copied().unwrap_or(0);
        let clusters = self.cutoffs.len() as i64;
        let mut specs = Vec::with_capacity(self.num_tensors());
        specs.push(ParamSpec {
            name: "head.weight".into(),
            shape: vec![shortlist + clusters, in_features],
        });
        for (i, pair) in bounds.windows(2).enumerate() {
            let (lo, hi) = (pair.first().copied(), pair.get(1).copied());
            let size = hi.unwrap_or(0) - lo.unwrap_or(0);
            let hsz = self.projection_size(in_features, i)?;
            specs.push(ParamSpec {
                name: format!("tail.{i}.0.weight"),
                shape: vec![hsz, in_features],
            });
            specs.push(ParamSpec {
                name: format!("tail.{i}.1.weight"),
                shape: vec![size, hsz],
            });
        }
        Ok(specs)
    }

    /// torch's `self.cutoffs`: the cutoffs, then `n_classes`.
    fn bounds(&self, n_classes: i64) -> Vec<i64> {
        let mut bounds = self.cutoffs.clone();
        bounds.push(n_classes);
        bounds
    }
}

/// Python's `a // b` on floats (CPython's `float_floor_div`), for positive
/// `b`: the widths must be the ones torch computes, to the last unit.
fn py_floor_div(a: f64, b: f64) -> f64 {
    let m = a % b;
    let mut div = (a - m) / b;
    if m != 0.0 && ((b < 0.0) != (m < 0.0)) {
        div -= 1.0;
    }
    if div == 0.0 {
        return 0.0f64.copysign(a / b);
    }
    let floor = div.floor();
    if div - floor > 0.5 {
        floor + 1.0
    } else {
        floor
    }
}

/// The adaptive head's weights: torch's `head.weight` `[shortlist + clusters,
/// H]` and each cluster's two projections, `[hsz_i, H]` and `[size_i, hsz_i]`
/// (torch's default `head_bias=False`: no bias anywhere).
pub struct AdaptiveHead {
    /// torch's `self.cutoffs`: the cluster boundaries, then `n_classes`.
    bounds: Vec<i64>,
    head: Tensor,
    tail: Vec<(Tensor, Tensor)>,
}

impl AdaptiveHead {
    /// The head of `cfg` over `n_classes` tokens from its tensors in
    /// [`AdaptiveConfig::param_specs`]' order (the width is the first
    /// tensor's), each checked against its spec (RuntimeError, as torch's
    /// `load_state_dict`).
    pub fn new(cfg: &AdaptiveConfig, n_classes: i64, tensors: Vec<Tensor>) -> Result<Self> {
        let in_features = match tensors.first().map(Tensor::size).as_deref() {
            Some(&[_, width]) => width,
            other => {
                return Err(Error::shape(format!(
                    "the adaptive head's head.weight must be a 2-D matrix, got {}",
                    other.map_or("no tensor".into(), |s| format!("shape {s:?}"))
                )))
            }
        };
        let specs = cfg.param_specs(in_features, n_classes)?;
        if specs.len() != tensors.len() {
            return Err(Error::shape(format!(
                "the adaptive head with {} cutoffs has {} tensors, got {}",
                cfg.cutoffs.len(),
                specs.len(),
                tensors.len()
            )));
        }
        for (spec, t) in specs.iter().zip(&tensors) {
            if t.size() != spec.shape {
                return Err(Error::shape(format!(
                    "expected 'head.{}' of shape {:?}, got shape {:?}",
                    spec.name,
                    spec.shape,
                    t.size()
                )));
            }
        }
        let mut it = tensors.into_iter();
        let head = it
            .next()
            .ok_or_else(|| Error::shape("the adaptive head has no tensors"))?;
        let mut tail = Vec::with_capacity(cfg.cutoffs.len());
        while let (Some(a), Some(b)) = (it.next(), it.next()) {
            tail.push((a, b));
        }
        Ok(AdaptiveHead {
            bounds: cfg.bounds(n_classes),
            head,
            tail,
        })
    }

    /// The tensors in `state_dict` order.
    pub fn tensors(&self) -> Vec<&Tensor> {
        let mut all = Vec::with_capacity(1 + 2 * self.tail.len());
        all.push(&self.head);
        for (a, b) in &self.tail {
            all.push(a);
            all.push(b);
        }
        all
    }

    /// Their names in the language model's `state_dict`.
    pub fn names(&self) -> Vec<String> {
        let mut names = Vec::with_capacity(1 + 2 * self.tail.len());
        names.push("head.head.weight".to_string());
        for i in 0..self.tail.len() {
            names.push(format!("head.tail.{i}.0.weight"));
            names.push(format!("head.tail.{i}.1.weight"));
        }
        names
    }

    /// The same head on tensors made from these by `f` (fresh autograd
    /// leaves, say), in the same order.
    pub fn try_map(&self, mut f: impl FnMut(&Tensor) -> Result<Tensor>) -> Result<AdaptiveHead> {
        Ok(AdaptiveHead {
            bounds: self.bounds.clone(),
            head: f(&self.head)?,
            tail: self
                .tail
                .iter()
                .map(|(a, b)| Ok((f(a)?, f(b)?)))
                .collect::<Result<_>>()?,
        })
    }

    /// `V`, the tokens it scores.
    pub fn n_classes(&self) -> i64 {
        self.bounds.last().copied().unwrap_or(0)
    }

    /// `H`, the width of its input.
    pub fn in_features(&self) -> i64 {
        self.head.size().get(1).copied().unwrap_or(0)
    }

    fn shortlist(&self) -> i64 {
        self.bounds.first().copied().unwrap_or(0)
    }

    /// The head's log-probabilities `[N, shortlist + clusters]`.
    fn head_log_prob(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.f_linear::<Tensor>(&self.head, None)?
            .f_log_softmax(1, x.f_kind()?)?)
    }

    /// Cluster `i`'s own log-probabilities for the rows `x`, `[N, size_i]`.
    fn cluster_log_prob(&self, x: &Tensor, i: usize) -> Result<Tensor> {
        let (proj, out) = self
            .tail
            .get(i)
            .ok_or_else(|| Error::shape(format!("the adaptive head has no cluster {i}")))?;
        Ok(x.f_linear::<Tensor>(proj, None)?
            .f_linear::<Tensor>(out, None)?
            .f_log_softmax(1, x.f_kind()?)?)
    }

    /// The log-probability of every token for each row of `x` `[N, H]`:
    /// `[N, V]` (torch's `log_prob`, `_get_full_log_prob`).
    pub fn log_prob(&self, x: &Tensor) -> Result<Tensor> {
        let head = self.head_log_prob(x)?;
        let shortlist = self.shortlist();
        let mut parts = Vec::with_capacity(1 + self.tail.len());
        parts.push(head.f_narrow(1, 0, shortlist)?);
        for i in 0..self.tail.len() {
            let cluster = head.f_narrow(1, shortlist + i as i64, 1)?;
            parts.push(self.cluster_log_prob(x, i)?.f_add(&cluster)?);
        }
        Ok(Tensor::f_cat(&parts, 1)?)
    }

    /// Where each target falls: the rows of each cluster that some target
    /// falls in (`(cluster, rows, ids within the cluster)`), and each row's
    /// entry in the head (its own token in the shortlist, its cluster's entry
    /// otherwise). RuntimeError, torch's message, for a target out of range.
    fn assign(&self, x: &Tensor, target: &Tensor) -> Result<Assignment> {
        let rows = target.size().first().copied().unwrap_or(0);
        if x.size().first().copied() != Some(rows) || x.dim() != 2 || target.dim() != 1 {
            return Err(Error::shape(format!(
                "the adaptive head takes (N, in_features) inputs and (N) targets, got {:?} and {:?}",
                x.size(),
                target.size()
            )));
        }
        let shortlist = self.shortlist();
        let mut head_target = target.shallow_clone();
        let mut clusters = Vec::new();
        let mut used = 0;
        let mut lo = 0;
        for (c, &hi) in self.bounds.iter().enumerate() {
            let mask = target.f_ge(lo)?.f_logical_and(&target.f_lt(hi)?)?;
            let idx = mask.f_nonzero()?.f_squeeze_dim(1)?;
            let n = idx.size().first().copied().unwrap_or(0);
            if n > 0 && c > 0 {
                let relative = target.f_masked_select(&mask)?.f_sub_scalar(lo)?;
                head_target =
                    head_target.f_index_fill(0, &idx, Scalar::int(shortlist + c as i64 - 1))?;
                clusters.push((c - 1, idx, relative));
            }
            used += n;
            lo = hi;
        }
        if used != rows {
            let (min, max) = (
                target.f_min()?.f_int64_value(&[])?,
                target.f_max()?.f_int64_value(&[])?,
            );
            return Err(Error::shape(format!(
                "Target values should be in [0, {}], but values in range [{min}, {max}] were found. ",
                self.n_classes() - 1
            )));
        }
        Ok(Assignment {
            head_target,
            clusters,
        })
    }

    /// The log-probability of each row's target, `[N]` for `x` `[N, H]` and
    /// `target` `[N]` (torch's forward's `output`): only the clusters some
    /// target falls in are computed, each on its own rows.
    pub fn target_log_prob(&self, x: &Tensor, target: &Tensor) -> Result<Tensor> {
        let at = self.assign(x, target)?;
        let rows = target.size().first().copied().unwrap_or(0);
        let mut output = x.f_new_zeros([rows], (x.f_kind()?, x.device()))?;
        for (i, idx, relative) in &at.clusters {
            let local = self
                .cluster_log_prob(&x.f_index_select(0, idx)?, *i)?
                .f_gather(1, &relative.f_unsqueeze(1)?, false)?
                .f_squeeze_dim(1)?;
            output = output.f_index_copy(0, idx, &local)?;
        }
        let head = self
            .head_log_prob(x)?
            .f_gather(1, &at.head_target.f_unsqueeze(1)?, false)?
            .f_squeeze_dim(1)?;
        Ok(output.f_add(&head)?)
    }

    /// The mean negative log-likelihood of the targets (torch's forward's
    /// `loss`).
    pub fn loss(&self, x: &Tensor, target: &Tensor) -> Result<Tensor> {
        Ok(self
            .target_log_prob(x, target)?
            .f_neg()?
            .f_mean(None::<Kind>)?)
    }

    /// [`AdaptiveHead::loss`] of rows `x` `[N, H]` and its gradients, for the
    /// trainer: `d_x` `[N, H]` and one per tensor in [`AdaptiveHead::tensors`]'
    /// order (zeros for a cluster no target falls in). Each log-softmax is
    /// fused with its product (`cross_entropy`): the head's over all rows,
    /// each cluster's over its own rows after its projection, whose two
    /// products are written out here. Nothing is recorded by autograd.
    pub fn loss_and_grads(
        &self,
        x: &Tensor,
        target: &Tensor,
    ) -> Result<(Tensor, Tensor, Vec<Tensor>)> {
        let _guard = tch::no_grad_guard();
        let at = self.assign(x, target)?;
        let missing = || Error::shape("the fused head returned no gradient");
        // The head's part is the mean over all rows; the clusters' parts,
        // over fewer, are summed and divided by all of them too.
        let (mut loss, head) = LinearCrossEntropy::new(x, &self.head, None, &at.head_target)
            .loss_and_grads(Reduction::Mean, Needs::ALL)?;
        let mut d_x = head.input.ok_or_else(missing)?;
        let mut grads = Vec::with_capacity(1 + 2 * self.tail.len());
        grads.push(head.weight.ok_or_else(missing)?);
        let scale = 1.0 / target.numel().max(1) as f64;
        let mut clusters = at.clusters.iter().peekable();
        for (i, (proj, out)) in self.tail.iter().enumerate() {
            // A cluster that no target of the window falls in is not computed,
            // so its tensors get no gradient: zeros here (torch leaves such a
            // `.grad` None, and its optimizers skip the tensor; with zeros, SGD
            // without momentum or decay does the same, while Adam and momentum
            // still move it).
            let Some((_, idx, relative)) = clusters.next_if(|(c, ..)| *c == i) else {
                grads.push(proj.f_zeros_like()?);
                grads.push(out.f_zeros_like()?);
                continue;
            };
            let x_c = x.f_index_select(0, idx)?;
            let h_c = x_c.f_linear::<Tensor>(proj, None)?;
            let needs = Needs {
                bias: false,
                ..Needs::ALL
            };
            let (loss_c, g) = LinearCrossEntropy::new(&h_c, out, None, relative)
                .loss_and_grads(Reduction::Sum, needs)?;
            let d_h = g.input.ok_or_else(missing)?.f_mul_scalar(scale)?;
            loss = loss.f_add(&loss_c.f_mul_scalar(scale)?)?;
            d_x = d_x.f_index_add(0, idx, &d_h.f_mm(proj)?)?;
            grads.push(d_h.f_tr()?.f_mm(&x_c)?);
            grads.push(g.weight.ok_or_else(missing)?.f_mul_scalar(scale)?);
        }
        Ok((loss, d_x, grads))
    }
}

/// See [`AdaptiveHead::assign`].
struct Assignment {
    head_target: Tensor,
    /// `(cluster, rows [n], ids within the cluster [n])`, by cluster.
    clusters: Vec<(usize, Tensor, Tensor)>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn default_cutoffs_follow_the_documented_rule() {
        let d = |v| AdaptiveConfig::default_cutoffs(v).unwrap();
        assert_eq!(d(2), [1]);
        assert_eq!(d(3), [1]);
        assert_eq!(d(100), [25]);
        assert_eq!(d(3_999), [999]);
        assert_eq!(d(4_000), [2_000]);
        assert_eq!(d(19_999), [2_000]);
        assert_eq!(d(20_000), [2_000, 10_000]);
        assert_eq!(d(33_278), [2_000, 10_000]);
        assert_eq!(d(267_735), [2_000, 10_000, 50_000]);
        assert_eq!(d(i64::MAX).len(), 22);
        for v in [2, 3, 50, 4_000, 33_278, 1 << 40] {
            AdaptiveConfig::new(d(v), 4.0)
                .unwrap()
                .check_vocab(v)
                .unwrap();
        }
        assert!(AdaptiveConfig::default_cutoffs(1).is_err());
    }

    #[test]
    fn bad_cutoffs_are_torchs_value_error() {
        let msg =
            |cutoffs: Vec<i64>, v: i64| match AdaptiveConfig::resolve_cutoffs(v, Some(cutoffs)) {
                Err(Error::Value(m)) => m,
                other => panic!("expected a Value error, got {other:?}"),
            };
        assert!(msg(vec![], 10).contains("length larger than 0"));
        for bad in [
            vec![0, 3],
            vec![3, 2],
            vec![2, 2],
            vec![-1],
            vec![10],
            vec![3, 12],
        ] {
            assert_eq!(msg(bad, 10), CUTOFFS_RULE);
        }
        assert_eq!(
            AdaptiveConfig::resolve_cutoffs(10, Some(vec![1, 9])).unwrap(),
            [1, 9]
        );
        for div in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(AdaptiveConfig::new(vec![2], div).is_err(), "{div}");
        }
    }

    /// Python's float `//` at the places where a plain `floor(a / b)` could
    /// round the other way; the widths torch gives.
    #[test]
    fn projection_sizes_are_torchs() {
        assert_eq!(py_floor_div(7.0, 2.0), 3.0);
        assert_eq!(py_floor_div(1.0, 0.1), 9.0); // floor(1 / 0.1) is 10
        assert_eq!(py_floor_div(0.0, 3.0), 0.0);
        let cfg = AdaptiveConfig::new(vec![5, 10], 4.0).unwrap();
        assert_eq!(cfg.projection_size(256, 0).unwrap(), 64);
        assert_eq!(cfg.projection_size(256, 1).unwrap(), 16);
        assert_eq!(cfg.projection_size(7, 1).unwrap(), 0);
        let tiny = AdaptiveConfig::new(vec![5], 1e-30).unwrap();
        assert!(tiny.projection_size(256, 0).is_err());
    }

    fn head(kind: Kind) -> AdaptiveHead {
        let cfg = AdaptiveConfig::new(vec![3, 6], 2.0).unwrap();
        let tensors = cfg
            .param_specs(8, 11)
            .unwrap()
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let n: i64 = s.shape.iter().product();
                (Tensor::arange(n, (Kind::Double, Device::Cpu)) * (0.7 + i as f64))
                    .sin()
                    .reshape(s.shape.as_slice())
                    .to_kind(kind)
            })
            .collect();
        AdaptiveHead::new(&cfg, 11, tensors).unwrap()
    }

    /// Every row of the full distribution sums to 1; each target's
    /// log-probability is its column of it, the loss their negated mean.
    #[test]
    fn target_log_probs_are_the_full_distributions_columns() {
        let h = head(Kind::Double);
        let x = Tensor::arange(40, (Kind::Double, Device::Cpu))
            .cos()
            .reshape([5, 8]);
        let full = h.log_prob(&x).unwrap();
        assert_eq!(full.size(), [5, 11]);
        let sums = full.exp().sum_dim_intlist(1, false, Kind::Double);
        assert!(sums.allclose(&sums.ones_like(), 1e-12, 1e-12, false));
        let target = Tensor::from_slice(&[0i64, 4, 10, 2, 6]);
        let got = h.target_log_prob(&x, &target).unwrap();
        let want = full.gather(1, &target.unsqueeze(1), false).squeeze_dim(1);
        assert!(got.allclose(&want, 1e-12, 1e-12, false));
        let loss = h.loss(&x, &target).unwrap().double_value(&[]);
        assert!((loss + want.mean(Kind::Double).double_value(&[])).abs() < 1e-12);
        let bad = Tensor::from_slice(&[0i64, 4, 11, 2, 6]);
        let err = h.target_log_prob(&x, &bad).err().unwrap().to_string();
        assert!(err.contains("[0, 10]") && err.contains("[0, 11]"), "{err}");
    }

    #[test]
    fn tensors_must_fit_the_config() {
        let cfg = AdaptiveConfig::new(vec![3, 6], 2.0).unwrap();
        let h = head(Kind::Float);
        let mut ts: Vec<Tensor> = h.tensors().into_iter().map(Tensor::shallow_clone).collect();
        assert_eq!(h.names()[4], "head.tail.1.1.weight");
        ts[2] = Tensor::zeros([3, 3], (Kind::Float, Device::Cpu));
        let err = AdaptiveHead::new(&cfg, 11, ts).err().unwrap();
        assert!(
            matches!(err, Error::Shape(ref m) if m.contains("head.tail.0.1.weight")),
            "{err}"
        );
    }
}
