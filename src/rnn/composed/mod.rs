//! The composed engine: one direction of one layer as libtorch ops — the
//! input products of all timesteps up front, then per step a small product
//! and pointwise ops — forward and hand-written backward. It runs every
//! case: any float dtype, any device, projections (`engine` says when the
//! others run instead).
//!
//! * `lstm`, `gru`, `simple` – each cell's recurrence.

mod gru;
mod lstm;
mod simple;

use tch::Tensor;

use super::config::Mode;
use super::direction::{lstm_dc, DirBackward, DirOutput, DirWeights};
use super::saved::Activations;
use super::steps::Steps;
use crate::error::{Error, Result};

/// Runs `mode`'s recurrence over `x` `[N, I]` laid out by `steps` from `h0`
/// `[B, H]` (and the LSTM's `c0`).
pub fn forward(
    mode: Mode,
    w: &DirWeights,
    x: &Tensor,
    steps: &Steps,
    h0: &Tensor,
    c0: Option<&Tensor>,
    reverse: bool,
) -> Result<DirOutput<Activations>> {
    Ok(match mode {
        Mode::Lstm => {
            let c0 = c0.ok_or_else(|| Error::shape("LSTM needs an initial cell state"))?;
            lstm::forward(w, x, steps, h0, c0, reverse)?.map_saved(Activations::Lstm)
        }
        Mode::Gru => gru::forward(w, x, steps, h0, reverse)?.map_saved(Activations::Gru),
        Mode::RnnTanh | Mode::RnnRelu => {
            simple::forward(w, x, steps, h0, reverse, mode == Mode::RnnRelu)?
                .map_saved(Activations::Simple)
        }
    })
}

/// Back-propagates through what `forward` saved.
pub fn backward(
    w: &DirWeights,
    saved: &Activations,
    d_out: &Tensor,
    dh_n: &Tensor,
    dc_n: Option<&Tensor>,
    need_dx: bool,
) -> Result<DirBackward> {
    match saved {
        Activations::Lstm(s) => lstm::backward(w, s, d_out, dh_n, lstm_dc(dc_n)?, need_dx),
        Activations::Gru(s) => gru::backward(w, s, d_out, dh_n, need_dx),
        Activations::Simple(s) => simple::backward(w, s, d_out, dh_n, need_dx),
    }
}
