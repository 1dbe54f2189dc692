//! rustrnn: recurrent-network language models on libtorch.
//!
//! The core modules know nothing of Python; `python` (behind the cargo feature
//! of the same name) only converts arguments, releases the GIL and maps errors.

pub mod atomic;
pub mod checkpoint;
pub mod dropout;
pub mod error;
pub mod float;
pub mod kernel;
pub mod lm;
pub mod rnn;
pub mod sampler;
pub mod train;
pub mod vocab;

#[cfg(feature = "python")]
mod python;

pub use error::{Error, Result};
