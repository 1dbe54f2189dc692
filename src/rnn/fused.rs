//! One GRU or Elman-RNN direction over a whole sequence on the fused CPU
//! kernels (`crate::kernel`): float32 on the CPU, no projections.
//!
//! Why: composed from libtorch ops (as torch.nn.GRU and RNN are on the CPU),
//! every timestep is a small matrix product, slow in MKL at these shapes on
//! this CPU, plus several pointwise ops that each pay a call's fixed cost.
//! Here a timestep is one pass over the packed `[W_ih, W_hh]` panels with the
//! gate functions applied in registers, its blocks split between a small team
//! of threads that meet at one spin barrier per step. The LSTM keeps oneDNN's
//! fused kernel, which is faster for it.
//!
//! Step `t` reads `[x_t, h_{t-1}]` from `input[p]` and writes `h_t` into
//! `input[1 - p]` (and into the output); meanwhile each thread copies its
//! rows of `x_{t+1}` into `input[1 - p]`, a part nobody reads in this phase.

use tch::{Device, Kind, Tensor};

use super::direction::DirWeights;
use super::packing::{float_cpu, pack_layer, padded, pointwise, team_output, team_size, Floats};
use super::Mode;
use crate::error::{Error, Result};
use crate::kernel::block::{self, Dest, GateSave, Isa, Job};
use crate::kernel::team::{self, split, SharedBuf, SpinBarrier};

/// What a fused direction computed.
pub struct Fused {
    /// `[T, B, H]`.
    pub out: Tensor,
    /// The last step's state `[B, H]` (a view of `out`).
    pub h_n: Tensor,
    /// GRU only, when asked: `[T, B, 4H]`, the activated r, z, n and the
    /// recurrent part of the candidate `W_hn h + b_hn`.
    pub gates: Option<Tensor>,
}

/// Whether this layer-direction can run here.
pub fn usable(mode: Mode, w: &DirWeights, x: &Tensor) -> bool {
    mode != Mode::Lstm
        && w.w_hr.is_none()
        && float_cpu(x)
        && [Some(w.w_ih), Some(w.w_hh), w.b_ih, w.b_hh]
            .into_iter()
            .flatten()
            .all(float_cpu)
}

/// Runs the recurrence over `x` `[T, B, I]` from `h0` `[B, H]`, keeping the
/// GRU's gates when `keep_gates`.
pub fn forward(
    mode: Mode,
    w: &DirWeights,
    x: &Tensor,
    h0: &Tensor,
    reverse: bool,
    keep_gates: bool,
) -> Result<Fused> {
    let (len, rows, in_w) = x.size3()?;
    let (len, rows, in_w) = (len as usize, rows as usize, in_w as usize);
    if len == 0 {
        return Err(Error::value(
            "the fused recurrence needs at least one timestep",
        ));
    }
    let hidden = w.w_hh.size()[1] as usize;
    let pw = pointwise(mode);
    let hp = padded(hidden, pw);
    let layer = pack_layer(mode, hidden, w, in_w)?;
    let k = layer.k;
    let xs = Floats::new(x)?;
    let xs = xs.get();
    let h0 = Floats::new(h0)?;
    let time = |step: usize| if reverse { len - 1 - step } else { step };

    let inputs = [SharedBuf::new(rows * k), SharedBuf::new(rows * k)];
    // SAFETY: no thread runs yet.
    unsafe {
        let first = inputs[0].get_mut(0..rows * k);
        for r in 0..rows {
            let at = (time(0) * rows + r) * in_w;
            first[r * k..r * k + in_w].copy_from_slice(&xs[at..at + in_w]);
            first[r * k + in_w..r * k + in_w + hidden]
                .copy_from_slice(&h0.get()[r * hidden..(r + 1) * hidden]);
        }
    }
    let opts = (Kind::Float, Device::Cpu);
    let out = Tensor::f_empty([len as i64, rows as i64, hp as i64], opts)?;
    // SAFETY: a fresh float32 tensor, written by the team only (each element
    // once) and read after it has finished.
    let out_buf = unsafe { team_output(&out) };
    let gates = if keep_gates && mode == Mode::Gru {
        Some(Tensor::f_empty(
            [len as i64, rows as i64, 4, hp as i64],
            opts,
        )?)
    } else {
        None
    };
    // SAFETY: as for `out_buf`.
    let gates_buf = gates.as_ref().map(|g| unsafe { team_output(g) });

    let threads = team_size(&layer, rows);
    let barrier = SpinBarrier::new(threads);
    let isa = Isa::detect();
    let run = |tid: usize| {
        let my_rows = split(rows, threads, tid);
        let my_blocks = split(layer.blocks, threads, tid);
        for step in 0..len {
            let (p, t) = (step % 2, time(step));
            let job = Job {
                layer: &layer,
                pointwise: pw,
                input: &inputs[p],
                rows,
                cell: None,
                out: [
                    Some(Dest {
                        buf: &inputs[1 - p],
                        stride: k,
                        offset: in_w,
                    }),
                    Some(Dest {
                        buf: &out_buf,
                        stride: hp,
                        offset: t * rows * hp,
                    }),
                ],
                gates: gates_buf.as_ref().map(|buf| GateSave {
                    buf,
                    stride: 4 * hp,
                    offset: t * rows * 4 * hp,
                    slot_stride: hp,
                }),
            };
            // SAFETY: this phase reads `inputs[p]`; each thread writes the
            // state of its own blocks and the `x` of its own rows in
            // `inputs[1 - p]`, and its blocks of this step's outputs.
            unsafe {
                block::run(isa, &job, my_blocks.clone());
                if step + 1 < len {
                    let next = inputs[1 - p].get_mut(my_rows.start * k..my_rows.end * k);
                    let tn = time(step + 1);
                    for (i, r) in my_rows.clone().enumerate() {
                        let at = (tn * rows + r) * in_w;
                        next[i * k..i * k + in_w].copy_from_slice(&xs[at..at + in_w]);
                    }
                }
            }
            barrier.wait();
        }
    };
    team::run(threads, run);
    drop(out_buf);
    let out = if hp == hidden {
        out
    } else {
        out.f_narrow(2, 0, hidden as i64)?.f_contiguous()?
    };
    let gates = match gates {
        Some(g) if hp == hidden => Some(g.f_view([len as i64, rows as i64, 4 * hp as i64])?),
        Some(g) => Some(g.f_narrow(3, 0, hidden as i64)?.f_reshape([
            len as i64,
            rows as i64,
            4 * hidden as i64,
        ])?),
        None => None,
    };
    let last = if reverse { 0 } else { len as i64 - 1 };
    let h_n = out.f_select(0, last)?;
    Ok(Fused { out, h_n, gates })
}
