//! The language model on the fused CPU kernels (`crate::kernel`): float32
//! weights on the CPU, a unidirectional stack without projections, a linear
//! head. The whole token loop runs on a small team of threads in lock step,
//! which meet at a spin barrier between phases.
//!
//! * `stack`    – the packed model and its buffers, and each member's share
//!   of a phase (a step of the layers, the logits).
//! * `generate` – sampled generation: logits, the draw, the layers, per token.
//! * `beam`     – beam search: logits, each beam's best continuations, the
//!   search's choice (member 0), the layers, per token.
//! * `select`   – the log-sum-exp and best tokens of a row of logits.

mod beam;
mod generate;
mod select;
mod stack;

use std::cell::UnsafeCell;

pub use self::beam::beam_search;
pub use self::generate::generate;
use super::{HeadWeights, LmWeights};
use crate::float::float_cpu;
use crate::rnn::RnnConfig;

/// Whether [`generate`] and [`beam_search`] can run this model.
pub fn supports(cfg: &RnnConfig, w: &LmWeights) -> bool {
    cfg.proj_size == 0
        && !cfg.bidirectional
        && float_cpu(w.embedding)
        && match w.head {
            // A projection runs on the op path (see `head::HeadOp`).
            HeadWeights::Linear {
                weight,
                bias,
                projection: None,
            } => float_cpu(weight) && bias.is_none_or(float_cpu),
            HeadWeights::Linear { .. } => false,
            HeadWeights::Adaptive(_) => false,
        }
        && w.stack.iter().all(float_cpu)
}

/// What only team member 0 touches. `team::run` runs member 0 on the caller's
/// own thread, so what it holds (the generator, the interrupt poller, which
/// need not be `Send`) stays on the thread that owns it.
struct CallerOnly<T>(UnsafeCell<Option<T>>);

// SAFETY: only member 0, on the creating thread, reads the cell (see above).
unsafe impl<T> Sync for CallerOnly<T> {}

impl<T> CallerOnly<T> {
    fn new(value: T) -> Self {
        CallerOnly(UnsafeCell::new(Some(value)))
    }

    /// # Safety
    /// Called only on the thread that made `self`, by one member.
    unsafe fn take(&self) -> Option<T> {
        (*self.0.get()).take()
    }
}
