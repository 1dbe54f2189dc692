//! The recurrent stack: cells, the per-direction recurrences and the
//! multi-layer, optionally bidirectional network built from them.
//!
//! * `config`  – the hyper-parameters of stacks and cells, torch's parameter names
//!   and shapes, and the modes' names.
//! * `check`   – input validation with torch.nn's exception classes and messages.
//! * `cell`    – one timestep of each cell, written with autograd-recorded ops.
//! * `engine`  – which engine runs a layer-direction, recorded on the tape so
//!   the backward follows it. The three engines, forward and backward:
//!   * `composed` – libtorch ops (`composed/lstm`, `gru`, `simple`), any case;
//!   * `onednn`   – the LSTM on oneDNN's fused layer kernel (float32 CPU);
//!   * `libtorch` – the whole stack on libtorch's recurrent ops under its
//!     autograd: cuDNN on CUDA, and on the CPU when asked for;
//!   * `fused`    – LSTM, GRU and RNN on rustrnn's fused kernels (float32 CPU),
//!     with `fused/backward` and `fused/packing` (weights packed for the
//!     kernels, shared with generation).
//! * `saved`   – the activations the composed and fused engines keep per cell.
//! * `direction` – what every engine shares: a layer-direction's weights,
//!   outputs and gradients, the sequence-wide gradient products.
//! * `product` – the one choice of CPU matrix-product engine (MKL or oneDNN), for
//!   inference products and the recurrences' gradient products.
//! * `token`   – one token through a whole stack (generation), weights prepared once.
//! * `steps`   – the time axis over flat rows: padded and packed batches alike.
//! * `stack`   – layers chained with dropout between them, the reverse direction,
//!   and the tape that carries the forward's activations to the backward.

pub mod cell;
pub mod check;
mod composed;
pub mod config;
pub(crate) mod direction;
mod engine;
pub(crate) mod fused;
mod libtorch;
mod onednn;
pub mod product;
mod saved;
pub mod stack;
pub mod steps;
#[cfg(test)]
mod tests;
pub mod token;

pub use config::{CellConfig, Mode, RnnConfig};
pub use engine::Preference;
pub use stack::{Grads, RnnOutput, Tape};
