//! rustrnn: recurrent-network language models on libtorch.
//!
//! The core modules know nothing of Python; `python` (behind the cargo feature
//! of the same name) only converts arguments, releases the GIL and maps errors.
//!
//! No panic may reach Python: outside the tests, `unwrap` and `expect` are
//! errors (each remaining `expect` states the invariant that makes it safe),
//! and every binding runs inside `python::guard`, which turns a panic that
//! got past the checks into a `RuntimeError`.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod atomic;
pub mod checkpoint;
pub mod cpu;
pub mod dropout;
pub mod dtype;
pub mod error;
pub mod float;
pub mod fs;
pub mod kernel;
pub mod lm;
pub mod ngram;
pub mod pyfmt;
pub mod rnn;
pub mod sampler;
pub mod train;
pub mod vectors;
pub mod vocab;

#[cfg(feature = "python")]
mod python;

pub use error::{Error, Result};
