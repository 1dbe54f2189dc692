//! The training loop: epochs of `bptt` windows over the streams, the carried
//! (detached) state, clipping and the optimizer, evaluation with learning-rate
//! decay on plateau, and the stopping rules. Training checkpoints (writing,
//! resuming) are `resume`'s.

use std::path::Path;
use std::time::Instant;

use tch::{Kind, Tensor};

use super::resume::Progress;
use super::{
    clip_grad_norm, eval_step, grad_norm, train_step, EmbeddingGrad, EvalInfo, History, Hooks,
    LmParams, Method, Optimizer, State, StepInfo, Stop, StopReason, Streams, TrainOptions,
};
use crate::error::{Error, Result};
use crate::vocab::Vocab;

/// A training run over fixed data, resumable from its checkpoints.
pub struct Trainer {
    pub(super) model: LmParams,
    pub(super) vocab: Vocab,
    pub(super) opts: TrainOptions,
    pub(super) train: Streams,
    pub(super) valid: Option<Streams>,
    /// The parameters the optimizer updates (those that require grad), with
    /// their index in [`LmParams::distinct`].
    pub(super) trainable: Vec<(usize, String, Tensor)>,
    pub(super) optimizer: Optimizer,
    pub(super) progress: Progress,
    pub(super) state: Option<State>,
    /// With `overwrite`: the replaced run's files, removed once this run has
    /// written its first checkpoint (so a run that fails before that leaves
    /// them as they were, and none outlives the run that replaced it).
    pub(super) stale: Vec<std::path::PathBuf>,
}

fn check_ids(ids: &Tensor, vocab_size: i64, what: &str) -> Result<()> {
    if ids.f_kind()? != Kind::Int64 {
        return Err(Error::Type(format!(
            "the {what} ids must be an int64 tensor, got {:?}",
            ids.f_kind()?
        )));
    }
    if ids.numel() > 0 {
        let lo = ids.f_min()?.f_int64_value(&[])?;
        let hi = ids.f_max()?.f_int64_value(&[])?;
        if lo < 0 || hi >= vocab_size {
            return Err(Error::Index(format!(
                "{what} id {} is outside the vocabulary of size {vocab_size}",
                if lo < 0 { lo } else { hi }
            )));
        }
    }
    Ok(())
}

fn streams(
    model: &LmParams,
    ids: &Tensor,
    batch: i64,
    bptt: i64,
    rank: i64,
    world: i64,
    what: &str,
) -> Result<Streams> {
    check_ids(ids, model.vocab_size(), what)?;
    Streams::new(
        &ids.f_to_device(model.embedding().device())?,
        batch,
        bptt,
        rank,
        world,
        what,
    )
}

/// Perplexity `exp(mean cross-entropy)` of `model` over `streams` in eval
/// mode, the state carried across windows from zeros; `poll` runs between
/// windows (an error stops the evaluation).
fn perplexity(
    model: &LmParams,
    streams: &Streams,
    poll: &mut dyn FnMut() -> Result<()>,
) -> Result<f64> {
    let mut state = State::zeros(&model.rnn, streams.batch_size(), model.embedding())?;
    // Packed once: the weights hold still for the whole evaluation.
    let packed = model.head().weights().packed(streams.targets())?;
    let mut total = 0.0;
    for i in 0..streams.windows() {
        poll()?;
        let (x, y) = streams.window(i)?;
        let (sum, next) = eval_step(model, &x, &y, &state, packed.as_ref())?;
        total += sum;
        state = next;
    }
    Ok((total / streams.targets() as f64).exp())
}

/// The perplexity of `model` on the 1-D `ids`, read as `batch_size` streams in
/// windows of `bptt` (fewer streams when the data is short).
pub fn evaluate(
    model: &LmParams,
    ids: &Tensor,
    batch_size: i64,
    bptt: i64,
    poll: &mut dyn FnMut() -> Result<()>,
) -> Result<f64> {
    let batch = batch_size.min(ids.numel() as i64 / 2).max(1);
    let s = streams(model, ids, batch, bptt, 0, 1, "evaluation")?;
    perplexity(model, &s, poll)
}

/// A run that failed, with its history as far as it got (None when the
/// trainer could not be built; otherwise its `stop_reason` is set).
#[derive(Debug)]
pub struct RunError {
    pub error: Error,
    pub history: Option<Box<History>>,
}

/// A whole run, as `rustrnn.train` asks for it: the trainer built, the
/// checkpoint directory claimed, the run restored from `resume` if given, and
/// the loop run. Either way the history says how the run ended in its
/// `stop_reason`.
pub fn run(
    model: LmParams,
    vocab: Vocab,
    train: &Tensor,
    valid: Option<&Tensor>,
    opts: TrainOptions,
    resume: Option<&Path>,
    hooks: &mut dyn Hooks,
) -> std::result::Result<History, RunError> {
    let mut trainer = Trainer::new(model, vocab, train, valid, opts).map_err(|error| RunError {
        error,
        history: None,
    })?;
    let result = trainer
        .claim_checkpoint_dir(resume.is_some())
        .and_then(|()| match resume {
            Some(path) => trainer.resume(path, hooks),
            None => Ok(()),
        })
        .and_then(|()| trainer.run(hooks));
    let mut history = trainer.history().clone();
    // Failing before the loop (the directory refused, a checkpoint that cannot
    // be resumed) ends the run too.
    if history.stop_reason.is_none() {
        history.stop_reason = Some(StopReason::of(&result));
    }
    match result {
        Ok(_) => Ok(history),
        Err(error) => Err(RunError {
            error,
            history: Some(Box::new(history)),
        }),
    }
}

impl Trainer {
    /// Prepares a run: validates the options and the data (1-D int64 ids
    /// within the vocabulary) and cuts the data into streams.
    pub fn new(
        model: LmParams,
        vocab: Vocab,
        train: &Tensor,
        valid: Option<&Tensor>,
        opts: TrainOptions,
    ) -> Result<Trainer> {
        opts.validate()?;
        if vocab.len() as i64 != model.vocab_size() {
            return Err(Error::value(format!(
                "the vocabulary has {} tokens but the embedding {} rows",
                vocab.len(),
                model.vocab_size()
            )));
        }
        let train_streams = streams(
            &model,
            train,
            opts.batch_size,
            opts.bptt,
            opts.rank,
            opts.world_size,
            "training",
        )?;
        let valid = match valid {
            Some(v) => {
                // Every rank evaluates all of it, as one process on the combined batch would.
                let global = opts.batch_size.saturating_mul(opts.world_size);
                let batch = global.min(v.numel() as i64 / 2).max(1);
                Some(streams(&model, v, batch, opts.bptt, 0, 1, "validation")?)
            }
            None => None,
        };
        let trainable: Vec<(usize, String, Tensor)> = model
            .distinct()
            .into_iter()
            .enumerate()
            .filter(|(_, (_, t))| t.requires_grad())
            .map(|(i, (n, t))| (i, n, t))
            .collect();
        let optimizer = Optimizer::new(opts.optimizer.clone(), trainable.len())?;
        let progress = Progress {
            step: 0,
            epoch: 0,
            position: 0,
            lr: opts.optimizer.lr,
            best_valid_ppl: None,
            bad_evals: 0,
            eval_pending: false,
            optimizer_steps: 0,
            averaging: None,
            variable_bptt: opts.variable_bptt,
            method: opts.optimizer.method,
            batch_size: opts.batch_size,
            bptt: opts.bptt,
            world_size: opts.world_size,
            train_tokens: train.numel() as i64,
            history: History::default(),
        };
        Ok(Trainer {
            model,
            vocab,
            opts,
            train: train_streams,
            valid,
            trainable,
            optimizer,
            progress,
            state: None,
            stale: Vec::new(),
        })
    }

    pub fn history(&self) -> &History {
        &self.progress.history
    }

    /// Steps done so far (resumed ones included).
    pub fn steps_done(&self) -> i64 {
        self.progress.step
    }

    pub fn lr(&self) -> f64 {
        self.optimizer.lr()
    }

    /// Changes the learning rate from the next step on.
    pub fn set_lr(&mut self, lr: f64) -> Result<()> {
        self.optimizer.set_lr(lr)
    }

    /// Runs until the epochs, `max_steps` or the time budget are used up.
    ///
    /// On a hook's error (an interrupt) the loop stops at a step boundary,
    /// `last` is written (with a checkpoint directory) and the error returned.
    /// On a non-finite loss or gradient norm it stops before updating the
    /// weights and returns `Error::NonFinite`; no checkpoint is written then,
    /// so the previous ones stay.
    pub fn run(&mut self, hooks: &mut dyn Hooks) -> Result<Stop> {
        let result = self.run_loop(hooks);
        self.progress.history.stop_reason = Some(StopReason::of(&result));
        match result {
            Ok(stop) => {
                self.save("last", hooks)?;
                self.keep_averages()?;
                Ok(stop)
            }
            Err(Error::Interrupted) => {
                self.save("last", hooks)?;
                self.keep_averages()?;
                Err(Error::Interrupted)
            }
            Err(e) => Err(e),
        }
    }

    /// Windows (or, with variable-length windows, steps of the streams) in
    /// one epoch: what `progress.position` runs up to.
    pub(super) fn epoch_length(&self) -> i64 {
        if self.opts.variable_bptt {
            self.train.positions()
        } else {
            self.train.windows()
        }
    }

    /// NT-ASGD's result: once averaging, the model keeps the averaged weights
    /// (what it was evaluated with), as AWD-LSTM keeps them. `last` holds the
    /// raw ones and the averages, so resuming continues the run exactly.
    fn keep_averages(&mut self) -> Result<()> {
        if let Some(avg) = self.optimizer.averages() {
            let _guard = tch::no_grad_guard();
            for ((_, _, p), a) in self.trainable.iter().zip(&avg) {
                p.shallow_clone().f_copy_(a)?;
            }
        }
        Ok(())
    }

    fn run_loop(&mut self, hooks: &mut dyn Hooks) -> Result<Stop> {
        let start = Instant::now();
        let per_epoch = self.epoch_length();
        // Steps to expect (variable windows: as many as fixed ones would take).
        let mut total = self.opts.epochs.saturating_mul(self.train.windows());
        if let Some(m) = self.opts.max_steps {
            total = total.min(m);
        }
        hooks.on_start(total, self.progress.step)?;
        // One flat loop, each turn starting from a state a checkpoint can hold,
        // so a resumed run takes exactly the turns the uninterrupted one would.
        loop {
            if self.progress.position >= per_epoch {
                // The epoch's end: the next one starts from a zero state.
                self.progress.epoch += 1;
                self.progress.position = 0;
                self.state = None;
                if self.valid.is_some() {
                    self.progress.eval_pending = true;
                } else {
                    self.save("last", hooks)?;
                }
            }
            // A due evaluation (after an `eval_every` step or an epoch) comes
            // before the stopping rules.
            if self.progress.eval_pending {
                self.evaluate(hooks)?;
            }
            if self.progress.epoch >= self.opts.epochs {
                return Ok(Stop::Epochs);
            }
            if self.opts.max_steps.is_some_and(|m| self.progress.step >= m) {
                return Ok(Stop::MaxSteps);
            }
            if self
                .opts
                .time_budget
                .is_some_and(|b| start.elapsed().as_secs_f64() >= b)
            {
                return Ok(Stop::TimeBudget);
            }
            self.step(hooks, total)?;
        }
    }

    /// One window: forward and backward, all-reduce, clipping, the update.
    fn step(&mut self, hooks: &mut dyn Hooks, total: i64) -> Result<()> {
        let t0 = Instant::now();
        let n = self.progress.step + 1;
        let epoch = self.progress.epoch;
        let (x, y, lr_scale) = if self.opts.variable_bptt {
            let len = draw_window(self.opts.bptt)?;
            let (x, y) = self.train.span(self.progress.position, len)?;
            let scale = x.size()[0] as f64 / self.opts.bptt as f64;
            (x, y, scale)
        } else {
            let (x, y) = self.train.window(self.progress.position)?;
            (x, y, 1.0)
        };
        let state = match &self.state {
            Some(s) => s.shallow_clone(),
            None => State::zeros(
                &self.model.rnn,
                self.train.batch_size(),
                self.model.embedding(),
            )?,
        };
        let out = train_step(
            &self.model,
            &x,
            &y,
            &state,
            &self.opts.regularization,
            self.embedding_grad(hooks),
        )?;
        if !out.loss.is_finite() {
            return Err(Error::NonFinite(format!(
                "the loss is {} at step {n} (epoch {}); training stopped before updating the \
                 weights",
                out.loss,
                epoch + 1
            )));
        }
        let grads: Vec<Tensor> = self
            .trainable
            .iter()
            .map(|(i, _, _)| out.grads[*i].shallow_clone())
            .collect();
        hooks.all_reduce(&grads)?;
        let norm = match self.opts.clip {
            Some(c) if c.is_finite() => clip_grad_norm(&grads, c)?,
            _ => grad_norm(&grads)?,
        };
        if !norm.is_finite() {
            return Err(Error::NonFinite(format!(
                "the gradient norm is {norm} at step {n} (epoch {}); training stopped before \
                 updating the weights",
                epoch + 1
            )));
        }
        let base_lr = self.optimizer.lr();
        let lr = base_lr * lr_scale;
        let params: Vec<Tensor> = self
            .trainable
            .iter()
            .map(|(_, _, t)| t.shallow_clone())
            .collect();
        self.optimizer.set_lr(lr)?;
        let stepped = self.optimizer.step(&params, &grads);
        self.optimizer.set_lr(base_lr)?;
        stepped?;
        if let Some(name) = self.first_non_finite()? {
            return Err(Error::NonFinite(format!(
                "the update of step {n} (epoch {}, learning rate {}) made parameter '{name}' \
                 non-finite: the model's weights are no longer usable (reload a checkpoint and \
                 lower the learning rate)",
                epoch + 1,
                super::py_float(lr)
            )));
        }
        self.state = Some(out.state);
        self.progress.position += if self.opts.variable_bptt {
            x.size()[0]
        } else {
            1
        };
        self.progress.step = n;
        // Marked before the hook runs, so an interrupt there leaves it due.
        if self.valid.is_some() && self.opts.eval_every.is_some_and(|e| n % e == 0) {
            self.progress.eval_pending = true;
        }
        let tokens = x.numel() as i64;
        let secs = t0.elapsed().as_secs_f64();
        let info = StepInfo {
            step: n,
            epoch,
            loss: out.loss,
            lr,
            grad_norm: norm,
            tokens,
            tokens_per_sec: tokens as f64 / secs.max(1e-9),
            total_steps: total,
        };
        let h = &mut self.progress.history;
        h.steps.push(n);
        h.epochs.push(epoch);
        h.losses.push(out.loss);
        h.lrs.push(lr);
        h.grad_norms.push(norm);
        h.tokens_per_sec.push(info.tokens_per_sec);
        hooks.on_step(&info)
    }

    /// Sparse rows where nothing downstream needs the whole table: an
    /// untied CPU embedding without embedding dropout, an optimizer that
    /// [takes sparse gradients](super::OptimConfig::takes_sparse), and no all-reduce.
    /// The update is torch's SGD with a sparse gradient, `p.add_(g, alpha=-lr)`
    /// on the window's rows, so the weights are those of the dense step.
    fn embedding_grad(&self, hooks: &dyn Hooks) -> EmbeddingGrad {
        let sparse = self.opts.optimizer.takes_sparse()
            && !self.model.config.tie_weights
            && self.opts.regularization.dropout_embedding == 0.0
            && self.model.embedding().device() == tch::Device::Cpu
            && !hooks.reduces();
        if sparse {
            EmbeddingGrad::Sparse
        } else {
            EmbeddingGrad::Dense
        }
    }

    /// The name of the first trained parameter that holds a NaN or an
    /// infinity, if any (one device synchronisation for all of them).
    fn first_non_finite(&self) -> Result<Option<String>> {
        if self.trainable.is_empty() {
            return Ok(None);
        }
        let _guard = tch::no_grad_guard();
        // A finite sum means every element is finite (a NaN or an infinity
        // would reach it), and it is one pass over the weights where
        // `isfinite().all()` is five (a tenth of a word-level step here). It
        // is summed in float32 (float64 for float64 weights): a float64 sum
        // of float32 weights converts them first, a copy that cost more than
        // the sum. A sum that overflowed (weights near 1e38, or 1e308)
        // proves nothing: then the elements are checked one by one.
        let mut sums = Vec::with_capacity(self.trainable.len());
        for (_, _, t) in &self.trainable {
            let kind = match t.f_kind()? {
                Kind::Double => Kind::Double,
                _ => Kind::Float,
            };
            sums.push(t.f_sum(kind)?);
        }
        let sums = Tensor::f_stack(&sums, 0)?.f_to_device(tch::Device::Cpu)?;
        if sums.f_isfinite()?.f_all()?.f_int64_value(&[])? != 0 {
            return Ok(None);
        }
        let mut flags = Vec::with_capacity(self.trainable.len());
        for (_, _, t) in &self.trainable {
            flags.push(t.f_isfinite()?.f_all()?);
        }
        let flags = Tensor::f_stack(&flags, 0)?.f_to_device(tch::Device::Cpu)?;
        let flags: Vec<bool> = Vec::<bool>::try_from(&flags)?;
        Ok(flags
            .iter()
            .zip(&self.trainable)
            .find(|(ok, _)| !**ok)
            .map(|(_, (_, name, _))| name.clone()))
    }

    /// Validation perplexity; on a plateau the learning rate decays (or,
    /// with NT-ASGD, averaging starts); `best` and `last` are written. Once
    /// averaging, the averaged weights are evaluated and written to `best`.
    fn evaluate(&mut self, hooks: &mut dyn Hooks) -> Result<()> {
        let Some(valid) = &self.valid else {
            return Ok(());
        };
        let averages = self.optimizer.averages();
        let raw = match &averages {
            Some(avg) => Some(self.swap_in(avg)?),
            None => None,
        };
        let measured = perplexity(&self.model, valid, &mut || hooks.poll());
        let ppl = match measured {
            Ok(ppl) => ppl,
            Err(e) => {
                if let Some(raw) = &raw {
                    self.swap_in(raw)?;
                }
                return Err(e);
            }
        };
        let p = &mut self.progress;
        p.eval_pending = false;
        let earlier = p.history.valid_ppls.clone();
        p.history.eval_steps.push(p.step);
        p.history.valid_ppls.push(ppl);
        let improved = ppl.is_finite() && p.best_valid_ppl.is_none_or(|b| ppl < b);
        if improved {
            p.best_valid_ppl = Some(ppl);
            p.history.best_valid_ppl = Some(ppl);
            p.bad_evals = 0;
        } else if self.opts.optimizer.method == Method::NtAsgd {
            // NT-ASGD's trigger replaces the plateau decay.
        } else {
            p.bad_evals += 1;
            if p.bad_evals > self.opts.patience {
                p.bad_evals = 0;
                let lr = self.optimizer.lr() * self.opts.lr_decay;
                self.optimizer.set_lr(lr)?;
            }
        }
        let info = EvalInfo {
            step: self.progress.step,
            epoch: self.progress.epoch,
            valid_ppl: ppl,
            best_valid_ppl: self.progress.best_valid_ppl,
            lr: self.optimizer.lr(),
            improved,
        };
        if improved {
            let saved = self.save("best", hooks);
            if let Some(raw) = &raw {
                self.swap_in(raw)?;
            }
            saved?;
        } else if let Some(raw) = &raw {
            self.swap_in(raw)?;
        }
        if self.opts.optimizer.method == Method::NtAsgd
            && averages.is_none()
            && nonmonotone(&earlier, ppl, self.opts.nonmono)
        {
            self.optimizer.start_averaging()?;
            self.progress.history.averaged_from = Some(self.progress.step);
        }
        self.save("last", hooks)?;
        hooks.on_eval(&info)
    }

    /// Copies `values` into the trained parameters; returns what they held.
    fn swap_in(&self, values: &[Tensor]) -> Result<Vec<Tensor>> {
        let _guard = tch::no_grad_guard();
        let mut old = Vec::with_capacity(values.len());
        for ((_, _, p), v) in self.trainable.iter().zip(values) {
            let mut keep = p.f_empty_like()?;
            keep.f_copy_(p)?;
            old.push(keep);
            p.shallow_clone().f_copy_(v)?;
        }
        Ok(old)
    }
}

/// AWD-LSTM's non-monotone trigger: more than `nonmono` evaluations before
/// this one, and this one worse than the best of all but the last `nonmono`.
fn nonmonotone(earlier: &[f64], ppl: f64, nonmono: i64) -> bool {
    let n = usize::try_from(nonmono).unwrap_or(usize::MAX);
    if earlier.len() <= n {
        return false;
    }
    let best = earlier[..earlier.len() - n]
        .iter()
        .copied()
        .fold(f64::INFINITY, f64::min);
    ppl > best
}

/// AWD-LSTM's window length: `bptt` with probability 0.95, else `bptt / 2`;
/// then Normal(that, 5), truncated to an integer, at least 5 tokens. Two
/// draws from torch's default generator (a float64 uniform, then a float64
/// standard normal), so `torch.manual_seed` governs them.
fn draw_window(bptt: i64) -> Result<i64> {
    let opts = (Kind::Double, tch::Device::Cpu);
    let u = Tensor::f_rand([] as [i64; 0], opts)?.f_double_value(&[])?;
    let n = Tensor::f_randn([] as [i64; 0], opts)?.f_double_value(&[])?;
    let mean = if u < 0.95 {
        bptt as f64
    } else {
        bptt as f64 / 2.0
    };
    Ok(((mean + 5.0 * n) as i64).max(5))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lm::LmConfig;
    use crate::rnn::Mode;
    use crate::train::{Method, NoHooks, OptimConfig};
    use crate::vocab::{BuildOptions, Level};
    use tch::Device;

    const TEXT: &str = "abcabcabdabcabcabd";

    /// Weights from a fixed formula (not torch's global generator, which the
    /// tests running in parallel share), different for each `seed`.
    fn model(seed: i64) -> (LmParams, Vocab) {
        let vocab = Vocab::build(TEXT, Level::Char, &BuildOptions::default()).unwrap();
        let config = LmConfig {
            embed_size: 5,
            hidden_size: 6,
            num_layers: 2,
            cell: Mode::Lstm,
            dropout: 0.0,
            tie_weights: false,
            head: crate::lm::HeadConfig::Full,
        };
        let named = config
            .param_specs(vocab.len() as i64)
            .unwrap()
            .into_iter()
            .map(|s| {
                let n: i64 = s.shape.iter().product();
                let t = (Tensor::arange(n, (Kind::Double, Device::Cpu)) * (1.7 + seed as f64))
                    .sin()
                    .g_mul_scalar(0.4)
                    .reshape(s.shape.as_slice())
                    .set_requires_grad(true);
                (s.name, t)
            })
            .collect();
        (LmParams::new(config, named).unwrap(), vocab)
    }

    fn ids(vocab: &Vocab) -> Tensor {
        vocab.encode(&TEXT.repeat(8)).unwrap()
    }

    fn options(dir: Option<&Path>, max_steps: i64) -> TrainOptions {
        TrainOptions {
            batch_size: 3,
            bptt: 5,
            epochs: 100,
            max_steps: Some(max_steps),
            time_budget: None,
            optimizer: OptimConfig::new(Method::Adam, 0.02),
            clip: Some(1.0),
            lr_decay: 0.25,
            patience: 0,
            eval_every: None,
            checkpoint_dir: dir.map(Path::to_path_buf),
            rank: 0,
            world_size: 1,
            resume: true,
            overwrite: false,
            regularization: crate::train::Regularization::default(),
            variable_bptt: false,
            nonmono: 5,
        }
    }

    struct StopAt(i64);

    impl Hooks for StopAt {
        fn on_step(&mut self, info: &StepInfo) -> Result<()> {
            if info.step == self.0 {
                Err(Error::Interrupted)
            } else {
                Ok(())
            }
        }
    }

    fn tmp(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("rustrnn-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    /// AWD-LSTM's rule: `len(earlier) > nonmono and ppl > min(earlier[:-nonmono])`.
    #[test]
    fn the_nonmonotone_trigger_is_awd_lstms() {
        let earlier = [10.0, 8.0, 9.0, 7.5];
        assert!(
            !nonmonotone(&earlier[..2], 50.0, 2),
            "too few evaluations before"
        );
        assert!(
            nonmonotone(&earlier[..3], 10.5, 2),
            "worse than 10, the best before the last 2"
        );
        assert!(!nonmonotone(&earlier[..3], 9.5, 2), "better than 10");
        assert!(!nonmonotone(&earlier, 7.9, 2), "better than 8");
        assert!(nonmonotone(&earlier, 8.1, 2));
    }

    /// An all-reduce that averages over one process: the gradients stay
    /// dense, as `rustrnn.train(..., distributed)` needs them.
    struct OneProcess;

    impl Hooks for OneProcess {
        fn reduces(&self) -> bool {
            true
        }
    }

    #[test]
    fn sparse_embedding_rows_update_the_weights_as_the_dense_gradient_does() {
        let mut opts = options(None, 12);
        opts.optimizer = OptimConfig::new(Method::Sgd, 0.5);
        let (m, vocab) = model(3);
        let data = ids(&vocab);
        let mut sparse = Trainer::new(m, vocab.clone(), &data, None, opts.clone()).unwrap();
        assert_eq!(sparse.embedding_grad(&NoHooks), EmbeddingGrad::Sparse);
        assert_eq!(sparse.embedding_grad(&OneProcess), EmbeddingGrad::Dense);
        sparse.run(&mut NoHooks).unwrap();
        let (m, _) = model(3);
        let mut dense = Trainer::new(m, vocab.clone(), &data, None, opts.clone()).unwrap();
        dense.run(&mut OneProcess).unwrap();
        assert_eq!(sparse.history().losses.len(), 12);
        for (a, b) in sparse.history().losses.iter().zip(&dense.history().losses) {
            assert!((a - b).abs() <= 1e-12 * b.abs(), "loss {a} vs {b}");
        }
        for ((name, a), (_, b)) in sparse.model.distinct().iter().zip(dense.model.distinct()) {
            assert!(a.allclose(&b, 0.0, 1e-12, false), "{name}");
        }

        // Whatever needs the whole table keeps it dense.
        for change in [
            |o: &mut TrainOptions| o.optimizer.momentum = 0.9,
            |o: &mut TrainOptions| o.optimizer.weight_decay = 1e-4,
            |o: &mut TrainOptions| o.optimizer.method = Method::Adam,
            |o: &mut TrainOptions| o.regularization.dropout_embedding = 0.1,
        ] {
            let mut o = opts.clone();
            change(&mut o);
            let (m, _) = model(3);
            let t = Trainer::new(m, vocab.clone(), &data, None, o).unwrap();
            assert_eq!(t.embedding_grad(&NoHooks), EmbeddingGrad::Dense);
        }
    }

    #[test]
    fn the_loss_goes_down_on_a_repeating_pattern() {
        let (m, vocab) = model(0);
        let data = ids(&vocab);
        let mut t = Trainer::new(m, vocab, &data, None, options(None, 60)).unwrap();
        assert_eq!(t.run(&mut NoHooks).unwrap(), Stop::MaxSteps);
        let l = &t.history().losses;
        assert_eq!(l.len(), 60);
        let head: f64 = l[..5].iter().sum::<f64>() / 5.0;
        let tail: f64 = l[55..].iter().sum::<f64>() / 5.0;
        assert!(tail < 0.5 * head, "{head} -> {tail}");
    }

    #[test]
    fn an_interrupt_stops_at_a_step_and_resume_continues_exactly() {
        let dir = tmp("resume");
        let (m, vocab) = model(1);
        let data = ids(&vocab);
        let mut full = Trainer::new(m, vocab.clone(), &data, None, options(None, 9)).unwrap();
        full.run(&mut NoHooks).unwrap();

        let (m, _) = model(1);
        let mut first =
            Trainer::new(m, vocab.clone(), &data, None, options(Some(&dir), 9)).unwrap();
        assert!(matches!(first.run(&mut StopAt(4)), Err(Error::Interrupted)));
        assert_eq!(first.history().steps, [1, 2, 3, 4]);
        assert_eq!(first.history().stop_reason, Some(StopReason::Interrupted));

        let (m, _) = model(2);
        let mut rest = Trainer::new(m, vocab, &data, None, options(Some(&dir), 9)).unwrap();
        rest.resume(&dir.join("last.safetensors"), &mut NoHooks)
            .unwrap();
        assert_eq!(rest.steps_done(), 4);
        rest.run(&mut NoHooks).unwrap();
        assert_eq!(rest.history().losses, full.history().losses);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
