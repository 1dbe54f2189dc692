//! The one place that chooses the engine of a layer-direction, runs it, and
//! records on the tape which one ran, so the backward follows the forward's
//! choice instead of making it again:
//!
//! * `OneDnn`   – oneDNN's LSTM layer kernel (`onednn`), what torch.nn.LSTM
//!   runs on the CPU;
//! * `Fused`    – rustrnn's fused kernels (`fused`);
//! * `Composed` – libtorch ops (`composed`), for every case the others do not
//!   take (float64, projections, devices other than the CPU and CUDA).
//!
//! Above them, for the whole stack at once, [`Preference`] and [`whole_stack`]
//! choose the `libtorch` engine: libtorch's own recurrent ops, which run
//! cuDNN on CUDA. Every CUDA stack runs there; on the CPU it is chosen only when
//! asked for (`Preference::Libtorch`), to test it, or to compare with torch.nn.
//!
//! A padded float32 CPU LSTM batch runs on oneDNN's layer kernel: as fast as
//! ours, and what torch.nn runs. oneDNN's kernel takes the whole batch at
//! every step and cannot shrink it from step to step, so a packed LSTM batch
//! runs on our kernels, as does every float32 CPU GRU and Elman RNN without
//! projections.

use std::sync::atomic::{AtomicU8, Ordering};

use tch::{Device, Kind, Tensor};

use super::check::empty_on;
use super::config::Mode;
use super::direction::{lstm_dc, DirBackward, DirOutput, DirWeights};
use super::saved::Activations;
use super::steps::Steps;
use super::{composed, fused, onednn};
use crate::error::{Error, Result};
use crate::float::float_cpu;

/// Which engines a process's stacks run on, set from Python
/// (`rustrnn.backends.set_rnn_engine`), as torch's `torch.backends` flags are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preference {
    /// libtorch's ops on CUDA; on the CPU the fastest engine for each layer.
    Auto = 0,
    /// libtorch's ops for the whole stack on every device.
    Libtorch = 1,
}

static PREFERENCE: AtomicU8 = AtomicU8::new(0);

impl Preference {
    pub const ALL: [Preference; 2] = [Preference::Auto, Preference::Libtorch];

    pub fn name(self) -> &'static str {
        match self {
            Preference::Auto => "auto",
            Preference::Libtorch => "libtorch",
        }
    }

    /// The preference spelled `name`, or a ValueError listing the spellings.
    pub fn parse(name: &str) -> Result<Preference> {
        Preference::ALL
            .into_iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| {
                Error::value(format!(
                    "the RNN engine must be one of 'auto', 'libtorch', got '{name}'"
                ))
            })
    }

    /// The preference stored as `raw` in [`PREFERENCE`].
    fn from_raw(raw: u8) -> Preference {
        if raw == Preference::Libtorch as u8 {
            Preference::Libtorch
        } else {
            Preference::Auto
        }
    }

    /// The process's preference.
    pub fn get() -> Preference {
        Preference::from_raw(PREFERENCE.load(Ordering::Relaxed))
    }

    /// Sets the process's preference; returns the one it replaces.
    pub fn set(self) -> Preference {
        Preference::from_raw(PREFERENCE.swap(self as u8, Ordering::Relaxed))
    }
}

/// Whether the whole stack over `x` runs on libtorch's ops: on CUDA, or when
/// `pref` asks for it. An empty batch never does (there is nothing to run; the
/// layer-direction path returns its empty outputs).
///
/// A forward that keeps a tape, or draws dropout masks, needs libtorch's
/// autograd to record it (the tape is autograd's; the op's masks are
/// reproducible only by rerunning the op). Where it records nothing — inside
/// torch.compile's custom ops, whose backward recomputes the forward — both the
/// forward and its recomputation run on rustrnn's engines, so they draw the
/// same masks.
pub fn whole_stack(pref: Preference, x: &Tensor, batch: usize, needs_autograd: bool) -> bool {
    batch > 0
        && (matches!(x.device(), Device::Cuda(_)) || pref == Preference::Libtorch)
        && (!needs_autograd || super::libtorch::autograd_records())
}

/// What runs one layer-direction, forward and backward.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    OneDnn,
    Fused,
    Composed,
}

impl Engine {
    /// The engine for `mode` over `x` `[N, I]` laid out by `steps`.
    pub fn choose(mode: Mode, w: &DirWeights, x: &Tensor, steps: &Steps) -> Engine {
        if mode == Mode::Lstm && onednn_usable(w, x, steps) {
            Engine::OneDnn
        } else if fused_usable(w, x) {
            Engine::Fused
        } else {
            Engine::Composed
        }
    }
}

/// oneDNN takes float32 on the CPU without projections, over a padded batch.
fn onednn_usable(w: &DirWeights, x: &Tensor, steps: &Steps) -> bool {
    steps.len() > 1
        && steps.is_uniform()
        && w.w_hr.is_none()
        && x.device() == Device::Cpu
        && matches!(x.f_kind(), Ok(Kind::Float))
        && tch::utils::has_mkldnn()
}

/// Our kernels take float32 on the CPU, every tensor of it, without projections.
fn fused_usable(w: &DirWeights, x: &Tensor) -> bool {
    w.w_hr.is_none()
        && float_cpu(x)
        && [Some(w.w_ih), Some(w.w_hh), w.b_ih, w.b_hh]
            .into_iter()
            .flatten()
            .all(float_cpu)
}

/// What the tape keeps of one layer-direction: the engine that ran it, with
/// that engine's activations.
pub enum DirTape {
    OneDnn(onednn::Saved),
    Fused(Activations),
    Composed(Activations),
    /// Nothing kept: a forward without a tape, or over an empty batch.
    Discarded,
}

impl DirTape {
    /// The engine that ran, if anything was kept.
    #[cfg(test)]
    pub fn engine(&self) -> Option<Engine> {
        match self {
            DirTape::OneDnn(_) => Some(Engine::OneDnn),
            DirTape::Fused(_) => Some(Engine::Fused),
            DirTape::Composed(_) => Some(Engine::Composed),
            DirTape::Discarded => None,
        }
    }

    pub fn shallow_clone(&self) -> DirTape {
        match self {
            DirTape::OneDnn(s) => DirTape::OneDnn(s.shallow_clone()),
            DirTape::Fused(a) => DirTape::Fused(a.shallow_clone()),
            DirTape::Composed(a) => DirTape::Composed(a.shallow_clone()),
            DirTape::Discarded => DirTape::Discarded,
        }
    }
}

/// Runs one layer-direction over `x` `[N, I]` laid out by `steps` from `h0`
/// `[B, H]` (and the LSTM's `c0`) on the engine chosen for it.
#[allow(clippy::too_many_arguments)]
pub fn forward(
    mode: Mode,
    w: &DirWeights,
    x: &Tensor,
    steps: &Steps,
    h0: &Tensor,
    c0: Option<&Tensor>,
    reverse: bool,
    keep_tape: bool,
) -> Result<DirOutput<DirTape>> {
    // An empty batch (padded input of batch size 0; a packed one cannot be
    // empty) has nothing to compute: empty outputs, and the initial state,
    // itself empty, is the final one. The backward sees the same
    // (`stack::backward`).
    if steps.batch() == 0 {
        return Ok(DirOutput {
            out: empty_on(x, &[0, w.w_hh.size2()?.1])?,
            h_n: h0.shallow_clone(),
            c_n: c0.map(Tensor::shallow_clone),
            saved: DirTape::Discarded,
        });
    }
    Ok(match Engine::choose(mode, w, x, steps) {
        Engine::OneDnn => {
            let c0 = c0.ok_or_else(|| Error::shape("LSTM needs an initial cell state"))?;
            onednn::forward(w, x, steps, h0, c0, reverse, keep_tape)?.map_saved(DirTape::OneDnn)
        }
        Engine::Fused => fused::forward(mode, w, x, steps, h0, c0, reverse, keep_tape)?
            .map_saved(|s| s.map_or(DirTape::Discarded, DirTape::Fused)),
        Engine::Composed => {
            composed::forward(mode, w, x, steps, h0, c0, reverse)?.map_saved(DirTape::Composed)
        }
    })
}

/// Back-propagates through one layer-direction on the engine its forward ran.
pub fn backward(
    w: &DirWeights,
    tape: &DirTape,
    d_out: &Tensor,
    dh_n: &Tensor,
    dc_n: Option<&Tensor>,
    need_dx: bool,
) -> Result<DirBackward> {
    match tape {
        DirTape::OneDnn(s) => onednn::backward(w, s, d_out, dh_n, lstm_dc(dc_n)?),
        DirTape::Fused(a) => fused::backward(w, a, d_out, dh_n, dc_n, need_dx),
        DirTape::Composed(a) => composed::backward(w, a, d_out, dh_n, dc_n, need_dx),
        DirTape::Discarded => Err(Error::shape("this forward call kept no activations")),
    }
}
