//! Training a language model: truncated back-propagation through time over
//! token streams, with our own optimizers, gradient clipping, evaluation,
//! learning-rate decay on plateau and resumable checkpoints.
//!
//! * `batch`   – the streams and their `bptt` windows (word_language_model's batchify).
//! * `step`    – one step's forward and backward, and the evaluation pass.
//! * `optim`   – SGD, Adam, AdamW with torch.optim's update rules; clipping.
//! * `trainer` – the loop and its stopping rules.
//! * `resume`  – training checkpoints: writing them, and resuming a run from one.
//!
//! The core knows nothing of Python: the caller observes and steers the loop
//! through [`Hooks`] (progress, interrupts, the RNG state, gradient all-reduce).

mod adam_one_pass;
mod batch;
pub mod optim;
mod resume;
mod step;
mod trainer;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tch::Tensor;

pub use batch::Streams;
pub use optim::{clip_grad_norm, grad_norm, Method, OptimConfig, Optimizer};
pub use step::{eval_step, train_step, State, StepOutput};
pub use trainer::{evaluate, run, Trainer};

use crate::error::{Error, Result};
pub use crate::lm::LmParams;

/// What `train` was asked to do (all of it serializable, for checkpoints).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainOptions {
    pub batch_size: i64,
    pub bptt: i64,
    pub epochs: i64,
    pub max_steps: Option<i64>,
    /// Seconds; checked before each step. `None` or infinity: no limit.
    #[serde(default, deserialize_with = "num::opt_f64")]
    pub time_budget: Option<f64>,
    pub optimizer: OptimConfig,
    /// Max global L2 norm of the gradients; `None` or infinity for no clipping.
    #[serde(default, deserialize_with = "num::opt_f64")]
    pub clip: Option<f64>,
    /// Factor applied to the learning rate when validation stops improving.
    #[serde(deserialize_with = "num::f64")]
    pub lr_decay: f64,
    /// Non-improving evaluations tolerated before decaying.
    pub patience: i64,
    /// Also evaluate every this many steps (always at each epoch's end).
    pub eval_every: Option<i64>,
    /// Where `last.safetensors` and `best.safetensors` go.
    pub checkpoint_dir: Option<PathBuf>,
    /// Data-parallel rank and world size (1 for a single process).
    #[serde(default)]
    pub rank: i64,
    #[serde(default = "one")]
    pub world_size: i64,
    /// A checkpoint directory that already holds files may be written to
    /// only when the run resumes from it, or when told to replace what is
    /// there (see [`claim_checkpoint_dir`]).
    #[serde(default)]
    pub resume: bool,
    #[serde(default)]
    pub overwrite: bool,
}

pub(crate) use crate::pyfmt::py_float;

/// Floats in the options' JSON: numbers, or the strings `"inf"`, `"-inf"` and
/// `"nan"`, which JSON cannot spell and which the checks then name.
pub(crate) mod num {
    use serde::{Deserialize, Deserializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Num {
        Number(f64),
        Text(String),
    }

    fn value<E: serde::de::Error>(n: Num) -> Result<f64, E> {
        match n {
            Num::Number(v) => Ok(v),
            Num::Text(t) => match t.as_str() {
                "inf" | "Infinity" => Ok(f64::INFINITY),
                "-inf" | "-Infinity" => Ok(f64::NEG_INFINITY),
                "nan" | "NaN" => Ok(f64::NAN),
                other => Err(E::custom(format!("expected a number, got {other:?}"))),
            },
        }
    }

    pub fn f64<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        value(Num::deserialize(d)?)
    }

    pub fn opt_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        Option::<Num>::deserialize(d)?.map(value).transpose()
    }

    pub fn pair<'de, D: Deserializer<'de>>(d: D) -> Result<(f64, f64), D::Error> {
        let (a, b) = <(Num, Num)>::deserialize(d)?;
        Ok((value(a)?, value(b)?))
    }
}

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

fn one() -> i64 {
    1
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

/// The record of a run: one entry per step, one per evaluation.
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
    /// Why the run ended, or None while it runs: a [`Stop`]'s name (`"epochs"`,
    /// `"max_steps"`, `"time_budget"`) or, when it ended in an error,
    /// `"interrupted"` (Ctrl-C or the callback's KeyboardInterrupt),
    /// `"non_finite"` (a loss, gradient or update that was not finite) or
    /// `"error"` (anything else: the error says what).
    pub stop_reason: Option<String>,
}

/// Why the loop ended normally.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    Epochs,
    MaxSteps,
    TimeBudget,
}

impl Stop {
    pub fn name(self) -> &'static str {
        match self {
            Stop::Epochs => "epochs",
            Stop::MaxSteps => "max_steps",
            Stop::TimeBudget => "time_budget",
        }
    }
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
}

/// Hooks that observe nothing.
pub struct NoHooks;

impl Hooks for NoHooks {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_options_parse_and_are_named() {
        let json = |clip: &str, lr: &str| {
            format!(
                r#"{{"batch_size": 2, "bptt": 4, "epochs": 1, "max_steps": null,
                    "time_budget": "inf", "clip": {clip}, "lr_decay": 0.5, "patience": 0,
                    "eval_every": null, "checkpoint_dir": null,
                    "optimizer": {{"method": "adam", "lr": {lr}}}}}"#
            )
        };
        let ok: TrainOptions = serde_json::from_str(&json("\"inf\"", "0.1")).unwrap();
        assert_eq!(ok.time_budget, Some(f64::INFINITY));
        ok.validate().unwrap();
        let bad: TrainOptions = serde_json::from_str(&json("\"nan\"", "0.1")).unwrap();
        let m = bad.validate().unwrap_err().to_string();
        assert!(
            m.starts_with("clip must be > 0") && m.ends_with("got nan"),
            "{m}"
        );
        let bad: TrainOptions = serde_json::from_str(&json("1.0", "\"inf\"")).unwrap();
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("learning rate: inf"));
        assert!(serde_json::from_str::<TrainOptions>(&json("\"lots\"", "0.1")).is_err());
        assert_eq!(py_float(1e300), "1e+300");
        assert_eq!(py_float(1e-5), "1e-05");
        assert_eq!(py_float(0.003), "0.003");
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
