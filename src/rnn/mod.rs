//! The recurrent stack: cells, the per-direction recurrences and the
//! multi-layer, optionally bidirectional network built from them.
//!
//! * `config`  – the hyper-parameters of stacks and cells, torch's parameter names
//!   and shapes, and the modes' names.
//! * `check`   – input validation with torch.nn's exception classes and messages.
//! * `cell`    – one timestep of each cell, written with autograd-recorded ops.
//! * `lstm`, `gru`, `simple` – one direction of one layer over a whole sequence,
//!   forward and hand-written backward.
//! * `lstm_onednn` – the LSTM direction on oneDNN's fused kernel (float32 CPU).
//! * `fused`, `fused_backward` – LSTM, GRU and RNN directions on rustrnn's fused
//!   kernels (float32 CPU), forward and the backward recurrence.
//! * `packing` – weights packed for those kernels (shared with generation).
//! * `product` – the one choice of CPU matrix-product engine (MKL or oneDNN), for
//!   inference products and the recurrences' gradient products.
//! * `token`   – one token through a whole stack (generation), weights prepared once.
//! * `steps`   – the time axis over flat rows: padded and packed batches alike.
//! * `stack`   – layers chained with dropout between them, the reverse direction,
//!   and the tape that carries the forward's activations to the backward.

pub mod cell;
pub mod check;
pub mod config;
pub(crate) mod direction;
mod fused;
mod fused_backward;
mod gru;
mod lstm;
mod lstm_onednn;
pub mod packing;
pub mod product;
mod simple;
pub mod stack;
pub mod steps;
#[cfg(test)]
mod tests;
pub mod token;

pub use config::{CellConfig, Mode, RnnConfig};
pub use stack::{Grads, RnnOutput, Tape};
