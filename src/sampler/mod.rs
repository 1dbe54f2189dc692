//! Sampling: `multinomial` with torch.multinomial's contract, and next-token
//! sampling from logits (`sample_logits`: temperature, top-k, top-p, greedy).
//!
//! One idea per file:
//! * `uniform.rs`: where the random numbers come from ([`UniformSource`],
//!   [`DefaultGenerator`]), and how a call asks for them;
//! * `multinomial.rs`: [`multinomial()`], torch.multinomial's contract (the
//!   argument checks, the row errors, the whole-tensor path for devices other
//!   than the CPU), with its CPU kernel in `multinomial/cpu.rs`;
//! * `logits.rs`: [`sample_logits`] and its [`SampleOptions`] (temperature,
//!   top-k, top-p/nucleus, greedy), drawing with the multinomial kernel;
//! * `chain.rs`: the rest of the decoding chain on one row of logits
//!   (repetition, frequency and presence penalties, no repeated n-grams,
//!   min-p, typical), with transformers' semantics.
//!
//! The constants the kernel is tuned by are here, in one place.

// Values from Python reach this module: no index or slice may panic.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

pub mod chain;
mod logits;
mod multinomial;
mod uniform;

pub use chain::Penalties;
pub(crate) use logits::nonfinite_logits;
pub use logits::{
    process_logits, sample_after, sample_deferred, sample_logits, sample_validated, SampleOptions,
};
pub use multinomial::multinomial;
pub use uniform::{DefaultGenerator, UniformSource};

/// Weights per block: the unit of the scan after the Fenwick search.
pub const BLOCK: usize = 64;

/// Below this many weights (or weight visits) per thread, threads cost more than they save.
const WORK_PER_THREAD: usize = 1 << 16;

/// Uniforms asked of the source at once when a draw needs more (8 MiB).
const UNIFORM_CHUNK: usize = 1 << 20;
