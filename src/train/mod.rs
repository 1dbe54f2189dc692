//! Training a language model: truncated back-propagation through time over
//! token streams, with our own optimizers, gradient clipping, evaluation,
//! learning-rate decay on plateau and resumable checkpoints.
//!
//! * `batch`   – the streams and their `bptt` windows (word_language_model's batchify).
//! * `step`    – one step's forward and backward, and the evaluation pass.
//! * `optim`   – SGD, Adam, AdamW, NT-ASGD with torch.optim's update rules; clipping.
//! * `regularize`, `recurrent` – AWD-LSTM's regularisation (weight drop,
//!   locked and embedding dropout, AR/TAR), each an option.
//! * `trainer` – the loop and its stopping rules.
//! * `resume`  – training checkpoints: writing them, and resuming a run from one.
//!
//! The core knows nothing of Python: the caller observes and steers the loop
//! through [`Hooks`] (progress, interrupts, the RNG state, gradient all-reduce).

mod adam_one_pass;
mod batch;
pub mod optim;
mod recurrent;
pub mod regularize;
mod resume;
mod step;
mod trainer;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tch::Tensor;

pub use batch::Streams;
pub use optim::{clip_grad_norm, grad_norm, Method, OptimConfig, Optimizer};
pub use regularize::Regularization;
pub use step::{eval_step, train_step, EmbeddingGrad, State, StepOutput};
pub use trainer::{evaluate, run, RunError, Trainer};

use crate::error::{Error, Result};
pub use crate::lm::LmParams;

/// What `train` was asked to do. It reaches the core as typed values (the
/// Python glue converts `rustrnn.train`'s keywords one by one), never as text;
/// a checkpoint keeps what resuming must match in its own record (`resume`'s
/// `Progress`), not these options.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainOptions {
    pub batch_size: i64,
    pub bptt: i64,
    pub epochs: i64,
    pub max_steps: Option<i64>,
    /// Seconds; checked before each step. `None` or infinity: no limit.
    pub time_budget: Option<f64>,
    pub optimizer: OptimConfig,
    /// Max global L2 norm of the gradients; `None` or infinity for no clipping.
    pub clip: Option<f64>,
    /// Factor applied to the learning rate when validation stops improving.
    pub lr_decay: f64,
    /// Non-improving evaluations tolerated before decaying.
    pub patience: i64,
    /// Also evaluate every this many steps (always at each epoch's end).
    pub eval_every: Option<i64>,
    /// Where `last.safetensors` and `best.safetensors` go.
    pub checkpoint_dir: Option<PathBuf>,
    /// Data-parallel rank and world size (0 and 1 for a single process).
    pub rank: i64,
    pub world_size: i64,
    /// A checkpoint directory that already holds files may be written to
    /// only when the run resumes from it, or when told to replace what is
    /// there (see [`claim_checkpoint_dir`]).
    pub resume: bool,
    pub overwrite: bool,
    /// AWD-LSTM's regularisation (all off by default).
    pub regularization: Regularization,
    /// Window lengths drawn around `bptt` as AWD-LSTM draws them (`bptt`
    /// with probability 0.95, else `bptt / 2`; then Normal(that, 5), at least
    /// 5 tokens), the learning rate of each step scaled by `length / bptt`.
    pub variable_bptt: bool,
    /// NT-ASGD's non-monotone interval: averaging starts at an evaluation
    /// worse than the best of those before the last `nonmono`.
    pub nonmono: i64,
}

pub(crate) use crate::pyfmt::py_float;

/// Makes `dir` ready for a run's checkpoints before any step: created if
/// missing, refused if it is a file or cannot be written to, and refused if
/// it already holds files (another run's checkpoints, a saved model) unless
/// `allow_existing` (the run resumes from it, or was told to overwrite).
/// A stray temporary file of a killed save does not count.
pub fn claim_checkpoint_dir(dir: &std::path::Path, allow_existing: bool) -> Result<()> {
    use std::io;
    if let Ok(m) = std::fs::metadata(dir) {
        if !m.is_dir() {
            return Err(Error::io(
                dir,
                io::Error::new(
                    io::ErrorKind::NotADirectory,
                    "the checkpoint directory exists and is not a directory",
                ),
            ));
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    // Writable? The probe is the temporary file a save of `last` would use.
    let probe =
        crate::atomic::temp_path(&dir.join("last.safetensors")).map_err(|e| Error::io(dir, e))?;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&probe)
        .and_then(|_| std::fs::remove_file(&probe))
        .map_err(|e| {
            Error::io(
                dir,
                io::Error::new(e.kind(), format!("cannot write checkpoints here: {e}")),
            )
        })?;
    if allow_existing {
        return Ok(());
    }
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !(n.starts_with('.') && n.ends_with(".tmp")))
        .collect();
    if names.is_empty() {
        return Ok(());
    }
    names.sort();
    let shown = names.len().min(3);
    let more = if names.len() > shown {
        format!(" and {} more", names.len() - shown)
    } else {
        String::new()
    };
    Err(Error::io(
        dir,
        io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "the checkpoint directory already holds {}{more} (another run's?); \
                 resume to continue that run, overwrite to replace it, or choose an empty directory",
                names[..shown].join(", ")
            ),
        ),
    ))
}

impl TrainOptions {
    pub fn validate(&self) -> Result<()> {
        let positive = |name: &str, v: i64| {
            if v < 1 {
                Err(Error::value(format!("{name} must be >= 1, got {v}")))
            } else {
                Ok(())
            }
        };
        positive("batch_size", self.batch_size)?;
        positive("bptt", self.bptt)?;
        positive("nonmono", self.nonmono)?;
        self.regularization.validate()?;
        if self.epochs < 0 {
            return Err(Error::value(format!(
                "epochs must be >= 0, got {}",
                self.epochs
            )));
        }
        if let Some(m) = self.max_steps {
            if m < 0 {
                return Err(Error::value(format!("max_steps must be >= 0, got {m}")));
            }
        }
        if let Some(t) = self.time_budget {
            if t.is_nan() || t < 0.0 {
                return Err(Error::value(format!(
                    "time_budget must be >= 0 seconds (None or inf for no limit), got {}",
                    py_float(t)
                )));
            }
        }
        if let Some(c) = self.clip {
            if c.is_nan() || c <= 0.0 {
                return Err(Error::value(format!(
                    "clip must be > 0 (None or inf for no clipping), got {}",
                    py_float(c)
                )));
            }
        }
        if !(self.lr_decay > 0.0 && self.lr_decay <= 1.0) {
            return Err(Error::value(format!(
                "lr_decay must be in (0, 1], got {}",
                py_float(self.lr_decay)
            )));
        }
        if self.patience < 0 {
            return Err(Error::value(format!(
                "patience must be >= 0, got {}",
                self.patience
            )));
        }
        if let Some(e) = self.eval_every {
            positive("eval_every", e)?;
        }
        if self.world_size < 1 || !(0..self.world_size).contains(&self.rank) {
            return Err(Error::value(format!(
                "rank {} is outside world_size {}",
                self.rank, self.world_size
            )));
        }
        self.optimizer.validate()
    }
}

/// The record of a run: one entry per step, one per evaluation. Training
/// checkpoints keep it as JSON (serde's field names, the strings below), and
/// the Python glue hands it to `rustrnn.History` field by field.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// Per step: its number (1-based), epoch (0-based), mean loss, learning
    /// rate, gradient norm before clipping, and throughput.
    pub steps: Vec<i64>,
    pub epochs: Vec<i64>,
    pub losses: Vec<f64>,
    pub lrs: Vec<f64>,
    pub grad_norms: Vec<f64>,
    pub tokens_per_sec: Vec<f64>,
    /// Per evaluation: the step after which it ran, and the perplexity.
    pub eval_steps: Vec<i64>,
    pub valid_ppls: Vec<f64>,
    pub best_valid_ppl: Option<f64>,
    /// NT-ASGD: the step after which averaging started (None: not averaging;
    /// then not written, so other runs' records are as before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub averaged_from: Option<i64>,
    /// Why the run ended, or None while it runs.
    pub stop_reason: Option<StopReason>,
}

/// Why a run ended: one of [`Stop`]'s (a run that finished) or how it failed.
/// Serialized as its [`StopReason::name`], the string checkpoints hold and
/// `rustrnn.History.stop_reason` shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// `"epochs"`: every epoch was trained.
    Epochs,
    /// `"max_steps"`: `max_steps` steps were done (resumed ones included).
    MaxSteps,
    /// `"time_budget"`: the time budget was used up (checked before each step).
    TimeBudget,
    /// `"interrupted"`: a hook stopped the run at a step boundary (in Python:
    /// Ctrl-C, or an exception the callback raised); `last` was written.
    Interrupted,
    /// `"non_finite"`: a loss, gradient norm or update was not finite; the
    /// run stopped before (or, for an update, right after) it, no checkpoint written.
    NonFinite,
    /// `"error"`: any other error (the checkpoint directory refused, a
    /// checkpoint that cannot be resumed or written, ...): the error says what.
    Error,
}

impl StopReason {
    /// Every reason, in the order above.
    pub const ALL: [StopReason; 6] = [
        StopReason::Epochs,
        StopReason::MaxSteps,
        StopReason::TimeBudget,
        StopReason::Interrupted,
        StopReason::NonFinite,
        StopReason::Error,
    ];

    /// The reason a run that ended with `result` records.
    pub fn of(result: &Result<Stop>) -> StopReason {
        match result {
            Ok(Stop::Epochs) => StopReason::Epochs,
            Ok(Stop::MaxSteps) => StopReason::MaxSteps,
            Ok(Stop::TimeBudget) => StopReason::TimeBudget,
            Err(Error::Interrupted) => StopReason::Interrupted,
            Err(Error::NonFinite(_)) => StopReason::NonFinite,
            Err(_) => StopReason::Error,
        }
    }

    /// The name serde writes (`"max_steps"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            StopReason::Epochs => "epochs",
            StopReason::MaxSteps => "max_steps",
            StopReason::TimeBudget => "time_budget",
            StopReason::Interrupted => "interrupted",
            StopReason::NonFinite => "non_finite",
            StopReason::Error => "error",
        }
    }
}

/// Why the loop ended normally.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    Epochs,
    MaxSteps,
    TimeBudget,
}

/// One step, as reported to [`Hooks::on_step`].
#[derive(Clone, Debug)]
pub struct StepInfo {
    /// Steps done, this one included (1-based).
    pub step: i64,
    /// 0-based epoch of this step.
    pub epoch: i64,
    pub loss: f64,
    /// The learning rate this step used.
    pub lr: f64,
    /// Gradient norm before clipping.
    pub grad_norm: f64,
    pub tokens: i64,
    pub tokens_per_sec: f64,
    /// Steps this call plans in all (resumed steps included).
    pub total_steps: i64,
}

/// One evaluation, as reported to [`Hooks::on_eval`].
#[derive(Clone, Debug)]
pub struct EvalInfo {
    pub step: i64,
    pub epoch: i64,
    pub valid_ppl: f64,
    pub best_valid_ppl: Option<f64>,
    /// The learning rate from now on (after any decay).
    pub lr: f64,
    pub improved: bool,
}

/// How the caller observes and steers the loop. Every method may fail:
/// `Error::Interrupted` asks for a stop at a step boundary (`last` is written,
/// then the error returned); any other error is returned as it is.
pub trait Hooks {
    /// Before the first step, with the steps planned and those already done.
    fn on_start(&mut self, _total_steps: i64, _done: i64) -> Result<()> {
        Ok(())
    }
    /// After every step (the place to check for Ctrl-C).
    fn on_step(&mut self, _info: &StepInfo) -> Result<()> {
        Ok(())
    }
    /// After every evaluation.
    fn on_eval(&mut self, _info: &EvalInfo) -> Result<()> {
        Ok(())
    }
    /// Between evaluation windows, so a long evaluation can be interrupted.
    fn poll(&mut self) -> Result<()> {
        Ok(())
    }
    /// The random generators' states, saved in training checkpoints as `rng.<name>`.
    fn rng_state(&mut self) -> Result<Vec<(String, Tensor)>> {
        Ok(Vec::new())
    }
    /// Restores what `rng_state` returned.
    fn set_rng_state(&mut self, _state: Vec<(String, Tensor)>) -> Result<()> {
        Ok(())
    }
    /// Data-parallel training: average `grads` in place across processes.
    fn all_reduce(&mut self, _grads: &[Tensor]) -> Result<()> {
        Ok(())
    }
    /// Whether `all_reduce` does anything (the gradients must then be dense).
    fn reduces(&self) -> bool {
        false
    }
}

/// Hooks that observe nothing.
pub struct NoHooks;

impl Hooks for NoHooks {}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> TrainOptions {
        TrainOptions {
            batch_size: 2,
            bptt: 4,
            epochs: 1,
            max_steps: None,
            time_budget: Some(f64::INFINITY),
            optimizer: OptimConfig::new(Method::Adam, 0.1),
            clip: Some(f64::INFINITY),
            lr_decay: 0.5,
            patience: 0,
            eval_every: None,
            checkpoint_dir: None,
            rank: 0,
            world_size: 1,
            resume: false,
            overwrite: false,
            regularization: Regularization::default(),
            variable_bptt: false,
            nonmono: 5,
        }
    }

    #[test]
    fn non_finite_options_are_named() {
        options().validate().unwrap();
        let bad = TrainOptions {
            clip: Some(f64::NAN),
            ..options()
        };
        let m = bad.validate().unwrap_err().to_string();
        assert!(
            m.starts_with("clip must be > 0") && m.ends_with("got nan"),
            "{m}"
        );
        let mut bad = options();
        bad.optimizer.lr = f64::INFINITY;
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("learning rate: inf"));
        assert_eq!(py_float(1e300), "1e+300");
        assert_eq!(py_float(1e-5), "1e-05");
        assert_eq!(py_float(0.003), "0.003");
    }

    #[test]
    fn stop_reasons_keep_the_strings_checkpoints_hold() {
        for r in StopReason::ALL {
            let json = serde_json::to_string(&r).unwrap();
            assert_eq!(json, format!("\"{}\"", r.name()));
            assert_eq!(serde_json::from_str::<StopReason>(&json).unwrap(), r);
        }
        // A history as checkpoints written before the enum stored it.
        let old = r#"{"steps":[1,2],"epochs":[0,0],"losses":[2.5,2.25],"lrs":[0.1,0.1],
            "grad_norms":[1.0,0.5],"tokens_per_sec":[10.0,12.0],"eval_steps":[2],
            "valid_ppls":[9.5],"best_valid_ppl":9.5,"stop_reason":"max_steps"}"#;
        let h: History = serde_json::from_str(old).unwrap();
        assert_eq!(h.stop_reason, Some(StopReason::MaxSteps));
        let compact: String = old.split_whitespace().collect();
        assert_eq!(serde_json::to_string(&h).unwrap(), compact);
        assert!(serde_json::from_str::<History>(&old.replace("max_steps", "lost")).is_err());
    }

    #[test]
    fn a_directory_holding_files_is_claimed_only_when_allowed() {
        let d = std::env::temp_dir().join(format!("rustrnn-claim-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        claim_checkpoint_dir(&d, false).unwrap();
        claim_checkpoint_dir(&d, false).unwrap(); // still empty
        std::fs::write(d.join(".last.safetensors.tmp"), b"stray").unwrap();
        claim_checkpoint_dir(&d, false).unwrap(); // a killed save's file does not count
        std::fs::write(d.join("best.safetensors"), b"x").unwrap();
        let e = claim_checkpoint_dir(&d, false).unwrap_err();
        assert!(
            matches!(&e, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::AlreadyExists)
        );
        claim_checkpoint_dir(&d, true).unwrap();
        let e = claim_checkpoint_dir(&d.join("best.safetensors"), true).unwrap_err();
        assert!(
            matches!(&e, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotADirectory)
        );
        std::fs::remove_dir_all(&d).unwrap();
    }
}
