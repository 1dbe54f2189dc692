//! A layer's torch-layout weights packed for the fused kernels
//! (`crate::kernel`), shared by generation and the sequence forward.

use tch::Tensor;

use crate::error::{Error, Result};
use crate::float::float_cpu;
use crate::kernel::block::Pointwise;
use crate::kernel::lanes::LANES;
use crate::kernel::packed::{Dense, PackedLayer, Source, SLOTS};
use crate::kernel::team::{self, SharedBuf};
use crate::rnn::direction::DirWeights;
use crate::rnn::Mode;

/// Below this many multiply-adds per step and thread, fewer threads are faster.
const MIN_WORK_PER_THREAD: usize = 1 << 16;

/// Threads for a step of `layer`'s product over `rows` rows.
pub fn team_size(layer: &PackedLayer, rows: usize) -> usize {
    team::size(
        team::available(),
        layer.blocks,
        layer.blocks * layer.k * SLOTS * LANES * rows,
        MIN_WORK_PER_THREAD,
    )
}

/// A fresh float32 CPU tensor as a buffer the team writes, so results land
/// in it directly.
///
/// # Safety
/// `t` is contiguous float32 on the CPU and outlives the buffer; only the
/// team touches it while the buffer is used.
pub unsafe fn team_output(t: &Tensor) -> SharedBuf {
    SharedBuf::borrowed(t.data_ptr() as *mut f32, t.numel())
}

/// A float32 CPU tensor's elements in row-major order, read in place.
pub struct Floats(Tensor);

impl Floats {
    pub fn new(t: &Tensor) -> Result<Self> {
        if !float_cpu(t) {
            return Err(Error::value(format!(
                "the fused kernels take float32 CPU tensors, got {:?} on {:?}",
                t.f_kind()?,
                t.device()
            )));
        }
        Ok(Floats(t.f_contiguous()?))
    }

    pub fn get(&self) -> &[f32] {
        // SAFETY: `new` checked that the tensor holds float32 on the CPU; it
        // is contiguous and kept alive (and its storage with it) by `self`.
        unsafe { std::slice::from_raw_parts(self.0.data_ptr() as *const f32, self.0.numel()) }
    }
}

pub fn pointwise(mode: Mode) -> Pointwise {
    match mode {
        Mode::Lstm => Pointwise::Lstm,
        Mode::Gru => Pointwise::Gru,
        Mode::RnnTanh => Pointwise::Tanh,
        Mode::RnnRelu => Pointwise::Relu,
    }
}

/// Hidden units rounded up to whole blocks.
pub fn padded(units: usize, pw: Pointwise) -> usize {
    units.div_ceil(pw.units()) * pw.units()
}

/// Packs one layer whose input `[x, h]` has `x_width` (possibly padded) input
/// columns followed by the padded hidden state.
pub fn pack_layer(
    mode: Mode,
    hidden: usize,
    w: &DirWeights,
    x_width: usize,
) -> Result<PackedLayer> {
    let pw = pointwise(mode);
    let hp = padded(hidden, pw);
    let (w_ih, w_hh) = (Floats::new(w.w_ih)?, Floats::new(w.w_hh)?);
    let b_ih = w.b_ih.map(Floats::new).transpose()?;
    let b_hh = w.b_hh.map(Floats::new).transpose()?;
    let input = Dense {
        weight: w_ih.get(),
        cols: w.w_ih.size()[1] as usize,
        bias: b_ih.as_ref().map(Floats::get),
    };
    let recurrent = Dense {
        weight: w_hh.get(),
        cols: hidden,
        bias: b_hh.as_ref().map(Floats::get),
    };
    let column = |b: usize, slot: usize, lane: usize| {
        let (unit, row, source) = match mode {
            // Slots are the gates of 16 units, in torch's gate order.
            Mode::Lstm => {
                let u = b * LANES + lane;
                (u, slot * hidden + u, Source::Both)
            }
            Mode::Gru => {
                let u = b * LANES + lane;
                match slot {
                    0 => (u, u, Source::Both),
                    1 => (u, hidden + u, Source::Both),
                    2 => (u, 2 * hidden + u, Source::Input),
                    _ => (u, 2 * hidden + u, Source::Recurrent),
                }
            }
            Mode::RnnTanh | Mode::RnnRelu => {
                let u = (b * SLOTS + slot) * LANES + lane;
                (u, u, Source::Both)
            }
        };
        (unit < hidden).then_some((row, source))
    };
    Ok(PackedLayer::new(
        hp / pw.units(),
        x_width,
        hp,
        input,
        Some(recurrent),
        column,
    ))
}
