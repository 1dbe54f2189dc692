//! Resumable training checkpoints: where a run stands ([`Progress`]), claiming
//! the checkpoint directory, writing `last`/`best`, and restoring a run from
//! one so that it continues exactly.
//!
//! A training checkpoint (`last.safetensors`, `best.safetensors`) is a model
//! checkpoint (see `crate::checkpoint`) plus
//!
//! * `optimizer.<state>.<parameter name>`: `exp_avg`, `exp_avg_sq` (Adam, AdamW)
//!   or `momentum_buffer` (SGD with momentum);
//! * `rng.<name>`: the random generators' states, from [`Hooks::rng_state`];
//! * `state.h`, `state.c`: the state carried into the next window (absent at
//!   an epoch boundary, where the state restarts from zeros);
//! * the `training` metadata field: [`Progress`] as JSON (step, epoch, position
//!   in the epoch, learning rate, best validation perplexity, history, ...).
//!
//! `last` is written after every evaluation, at every epoch's end, when the
//! loop stops (its limits reached or interrupted by a hook); `best` whenever
//! the validation perplexity improves. Weights that are not finite are never
//! written.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::optim::Averaging;
use super::trainer::Trainer;
use super::{History, Hooks, Method, Optimizer, State};
use crate::checkpoint::{Checkpoint, FileKind};
use crate::error::{Error, Result};

/// Where a run stands: everything besides tensors that resuming needs.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Progress {
    /// Steps done.
    pub(super) step: i64,
    /// The current epoch (0-based) and the windows of it already trained on.
    pub(super) epoch: i64,
    pub(super) position: i64,
    pub(super) lr: f64,
    pub(super) best_valid_ppl: Option<f64>,
    pub(super) bad_evals: i64,
    /// An evaluation is due (after an `eval_every` step or an epoch's end) and
    /// has not run yet: kept in checkpoints so a resumed run makes it too.
    pub(super) eval_pending: bool,
    pub(super) optimizer_steps: i64,
    /// NT-ASGD's averaging scalars, once it started. This and
    /// `variable_bptt` are written only when set, so other runs' records
    /// are as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) averaging: Option<Averaging>,
    /// What a resumed run must share with this one. With `variable_bptt`,
    /// `position` counts steps of the streams, not windows.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(super) variable_bptt: bool,
    pub(super) method: Method,
    pub(super) batch_size: i64,
    pub(super) bptt: i64,
    pub(super) world_size: i64,
    pub(super) train_tokens: i64,
    pub(super) history: History,
}

impl Progress {
    /// What a checkpoint's training state must satisfy before it is used.
    fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("step", self.step),
            ("epoch", self.epoch),
            ("position", self.position),
            ("bad_evals", self.bad_evals),
            ("optimizer_steps", self.optimizer_steps),
            ("batch_size", self.batch_size),
            ("bptt", self.bptt),
            ("world_size", self.world_size),
        ] {
            if v < 0 {
                return Err(Error::value(format!(
                    "invalid training state: {name} is {v}, it must be >= 0"
                )));
            }
        }
        if self.optimizer_steps > self.step {
            return Err(Error::value(format!(
                "invalid training state: optimizer_steps {} is more than the {} steps done",
                self.optimizer_steps, self.step
            )));
        }
        if !(self.lr.is_finite() && self.lr >= 0.0) {
            return Err(Error::value(format!(
                "invalid training state: lr is {}",
                super::py_float(self.lr)
            )));
        }
        if let Some(b) = self.best_valid_ppl {
            if !(b.is_finite() && b > 0.0) {
                return Err(Error::value(format!(
                    "invalid training state: best_valid_ppl is {b}"
                )));
            }
        }
        Ok(())
    }
}

impl Trainer {
    /// Prepares `checkpoint_dir` before the first step (see
    /// [`super::claim_checkpoint_dir`]): a directory holding files is used
    /// only with `resume` or `overwrite`. With `overwrite` and nothing to
    /// resume, the replaced run's `best.safetensors` and `model.safetensors`
    /// (the final model the `rustrnn train` command saves) are removed when
    /// this run writes its first checkpoint, which replaces its `last`; so
    /// the two runs' files never mix, and a run that fails before its first
    /// checkpoint leaves the old ones as they were.
    pub fn claim_checkpoint_dir(&mut self, resuming: bool) -> Result<()> {
        let Some(dir) = &self.opts.checkpoint_dir else {
            return Ok(());
        };
        if self.opts.rank != 0 {
            return Ok(());
        }
        super::claim_checkpoint_dir(dir, self.opts.resume || self.opts.overwrite)?;
        if self.opts.overwrite && !resuming {
            self.stale = ["best.safetensors", "model.safetensors"]
                .iter()
                .map(|n| dir.join(n))
                .filter(|p| p.exists())
                .collect();
        }
        Ok(())
    }

    /// Writes `<checkpoint_dir>/<name>.safetensors` (rank 0 only).
    pub(super) fn save(&mut self, name: &str, hooks: &mut dyn Hooks) -> Result<()> {
        let Some(dir) = self.opts.checkpoint_dir.clone() else {
            return Ok(());
        };
        if self.opts.rank != 0 {
            return Ok(());
        }
        let path = dir.join(format!("{name}.safetensors"));
        for (pname, t) in self.model.named() {
            if t.f_isfinite()?.f_all()?.f_int64_value(&[])? == 0 {
                return Err(Error::NonFinite(format!(
                    "{}: not written, parameter '{pname}' is not finite",
                    path.display()
                )));
            }
        }
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let mut extra = BTreeMap::new();
        for (kind, i, t) in self.optimizer.state() {
            extra.insert(format!("optimizer.{kind}.{}", self.trainable[i].1), t);
        }
        for (n, t) in hooks.rng_state()? {
            extra.insert(format!("rng.{n}"), t);
        }
        if let Some(s) = &self.state {
            extra.insert("state.h".to_string(), s.h.shallow_clone());
            if let Some(c) = &s.c {
                extra.insert("state.c".to_string(), c.shallow_clone());
            }
        }
        self.progress.lr = self.optimizer.lr();
        self.progress.optimizer_steps = self.optimizer.steps();
        self.progress.averaging = self.optimizer.averaging();
        let training = serde_json::to_string(&self.progress)
            .map_err(|e| Error::value(format!("cannot serialize the training state: {e}")))?;
        let ckpt = Checkpoint {
            kind: FileKind::Training,
            config: self.model.config.clone(),
            vocab: self.vocab.clone(),
            params: self
                .model
                .named()
                .iter()
                .map(|(n, t)| (n.clone(), t.shallow_clone()))
                .collect(),
            extra,
            training: Some(training),
        };
        ckpt.save(&path)?;
        for old in std::mem::take(&mut self.stale) {
            if old != path {
                match std::fs::remove_file(&old) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(Error::io(old, e))
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// Continues the run saved in `path` (a training checkpoint of the same
    /// model, vocabulary, data, batch size, bptt and optimizer): restores the
    /// weights, the optimizer state and learning rate, the carried state, the
    /// RNG (through [`Hooks::set_rng_state`]), the position and the history.
    /// Everything is checked before anything is changed.
    pub fn resume(&mut self, path: &Path, hooks: &mut dyn Hooks) -> Result<()> {
        let ckpt = Checkpoint::load(path)?;
        self.restore(ckpt, hooks).map_err(|e| match e {
            Error::Value(m) | Error::Shape(m) => Error::format(path, m),
            other => other,
        })
    }

    fn restore(&mut self, ckpt: Checkpoint, hooks: &mut dyn Hooks) -> Result<()> {
        let Some(training) = ckpt
            .training
            .as_deref()
            .filter(|_| ckpt.kind == FileKind::Training)
        else {
            return Err(Error::value(
                "a model checkpoint, not a training checkpoint: there is no run to resume",
            ));
        };
        if ckpt.config != self.model.config {
            return Err(Error::value(format!(
                "the checkpoint's model config {} differs from this model's {}",
                ckpt.config.to_json(),
                self.model.config.to_json()
            )));
        }
        if ckpt.vocab != self.vocab {
            return Err(Error::value(
                "the checkpoint's vocabulary differs from this model's",
            ));
        }
        let model_kind = self.model.embedding().f_kind()?;
        if ckpt.dtype()? != model_kind {
            return Err(Error::value(format!(
                "the checkpoint holds {:?} weights, the model is {model_kind:?}",
                ckpt.dtype()?
            )));
        }
        let mut progress: Progress = serde_json::from_str(training)
            .map_err(|e| Error::value(format!("invalid training state: {e}")))?;
        progress.validate()?;
        let now = (
            self.opts.optimizer.method,
            self.opts.batch_size,
            self.opts.bptt,
            self.opts.variable_bptt,
            self.opts.world_size,
            self.progress.train_tokens,
        );
        let then = (
            progress.method,
            progress.batch_size,
            progress.bptt,
            progress.variable_bptt,
            progress.world_size,
            progress.train_tokens,
        );
        if now != then {
            return Err(Error::value(format!(
                "the run in the checkpoint used (optimizer, batch_size, bptt, variable_bptt, \
                 world_size, training tokens) = {then:?}; resuming needs the same, got {now:?}"
            )));
        }
        if progress.position > self.epoch_length() {
            return Err(Error::value(
                "the checkpoint's position is past the epoch's end",
            ));
        }

        // The optimizer, checked against the parameters it updates.
        let params: Vec<Tensor> = self
            .trainable
            .iter()
            .map(|(_, _, t)| t.shallow_clone())
            .collect();
        let mut opt_state = Vec::new();
        let mut rng = Vec::new();
        let mut carried: BTreeMap<&str, Tensor> = BTreeMap::new();
        for (name, t) in &ckpt.extra {
            if let Some(rest) = name.strip_prefix("optimizer.") {
                let (kind, pname) = rest
                    .split_once('.')
                    .ok_or_else(|| Error::value(format!("unexpected tensor '{name}'")))?;
                let idx = self
                    .trainable
                    .iter()
                    .position(|(_, n, _)| n == pname)
                    .ok_or_else(|| {
                        Error::value(format!(
                            "optimizer state '{name}' for a parameter that is not trained"
                        ))
                    })?;
                opt_state.push((kind.to_string(), idx, t.shallow_clone()));
            } else if let Some(rest) = name.strip_prefix("rng.") {
                rng.push((rest.to_string(), t.shallow_clone()));
            } else if name == "state.h" || name == "state.c" {
                carried.insert(name.as_str(), t.shallow_clone());
            } else {
                return Err(Error::value(format!("unexpected tensor '{name}'")));
            }
        }
        let mut optimizer = Optimizer::new(self.opts.optimizer.clone(), params.len())?;
        optimizer.load_state(
            progress.optimizer_steps,
            progress.averaging,
            opt_state,
            &params,
        )?;
        optimizer.set_lr(progress.lr)?;

        // The carried state: present mid-epoch only.
        let zeros = State::zeros(
            &self.model.rnn,
            self.train.batch_size(),
            self.model.embedding(),
        )?;
        let state = if progress.position == 0 {
            None
        } else {
            let device = self.model.embedding().device();
            let mut get = |key: &str, like: &Tensor| -> Result<Tensor> {
                let t = carried
                    .remove(key)
                    .ok_or_else(|| Error::value(format!("missing tensor '{key}'")))?;
                if t.size() != like.size() || t.f_kind()? != like.f_kind()? {
                    return Err(Error::value(format!(
                        "tensor '{key}' has shape {:?}, expected {:?}",
                        t.size(),
                        like.size()
                    )));
                }
                Ok(t.f_to_device(device)?)
            };
            let h = get("state.h", &zeros.h)?;
            let c = match &zeros.c {
                Some(c) => Some(get("state.c", c)?),
                None => None,
            };
            Some(State { h, c })
        };

        // All checked: change things.
        if !rng.is_empty() {
            hooks.set_rng_state(rng)?;
        }
        {
            let _guard = tch::no_grad_guard();
            for ((_, dst), (_, src)) in self.model.named().iter().zip(&ckpt.params) {
                dst.shallow_clone().f_copy_(src)?;
            }
        }
        progress.history.stop_reason = None;
        self.optimizer = optimizer;
        self.progress = progress;
        self.state = state;
        Ok(())
    }
}
