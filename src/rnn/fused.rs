//! One LSTM, GRU or Elman-RNN direction over a whole sequence on the fused
//! CPU kernels (`crate::kernel`): float32 on the CPU, no projections.
//!
//! Why: composed from libtorch ops (as torch.nn.GRU and RNN are on the CPU),
//! every timestep is a small matrix product, slow in MKL at these shapes on
//! this CPU, plus several pointwise ops that each pay a call's fixed cost.
//! Here a timestep is one pass over the packed `[W_ih, W_hh]` panels with the
//! gate functions applied in registers, its blocks split between a small team
//! of threads that meet at one spin barrier per step. A padded LSTM batch
//! keeps oneDNN's fused layer kernel, which is as fast; oneDNN cannot shrink
//! the batch from step to step, so packed LSTM batches run here.
//!
//! Step `t` reads `[x_t, h_{t-1}]` from `input[p]` and writes `h_t` into
//! `input[1 - p]` (and into the output); meanwhile each thread copies its
//! rows of `x_{t+1}` into `input[1 - p]`, a part nobody reads in this phase.
//!
//! A packed batch's step computes only its own rows, a prefix of the batch
//! (`steps::Steps`). Both buffers start with every row's initial state, and
//! a row no step writes keeps what it holds: a reverse pass finds each
//! sequence's initial state in its row when the sequence starts.

use tch::{Device, Kind, Tensor};

use super::direction::DirWeights;
use super::packing::{pack_layer, padded, pointwise, team_output, team_size, Floats};
use super::steps::Steps;
use super::Mode;
use crate::error::{Error, Result};
use crate::float::float_cpu;
use crate::kernel::block::{self, Dest, GateSave, Isa, Job};
use crate::kernel::team::{self, split, SharedBuf, SpinBarrier};

/// What a fused direction computed.
pub struct Fused {
    /// `[N, H]`.
    pub out: Tensor,
    /// Each sequence's last state `[B, H]`.
    pub h_n: Tensor,
    /// When asked, `[N, 4H]`: the GRU's activated r, z, n and the recurrent
    /// part of the candidate `W_hn h + b_hn`, or the LSTM's i, f, g, o.
    pub gates: Option<Tensor>,
    /// The LSTM's cell states: each sequence's last `[B, H]`, and when the
    /// gates are kept every token's `[N, H]`.
    pub c_n: Option<Tensor>,
    pub cells: Option<Tensor>,
}

/// Whether this layer-direction can run here.
pub fn usable(w: &DirWeights, x: &Tensor) -> bool {
    w.w_hr.is_none()
        && float_cpu(x)
        && [Some(w.w_ih), Some(w.w_hh), w.b_ih, w.b_hh]
            .into_iter()
            .flatten()
            .all(float_cpu)
}

/// Runs the recurrence over `x` `[N, I]` laid out by `steps` from `h0`
/// `[B, H]` (and the LSTM's `c0`), keeping the gates when `keep_gates`.
#[allow(clippy::too_many_arguments)]
pub fn forward(
    mode: Mode,
    w: &DirWeights,
    x: &Tensor,
    steps: &Steps,
    h0: &Tensor,
    c0: Option<&Tensor>,
    reverse: bool,
    keep_gates: bool,
) -> Result<Fused> {
    let (total, in_w) = x.size2()?;
    let (total, in_w) = (total as usize, in_w as usize);
    let (len, rows) = (steps.len(), steps.batch());
    if len == 0 || total != steps.rows() {
        return Err(Error::value(format!(
            "the fused recurrence needs at least one timestep and one row per token, got {len} \
             steps of {} rows for {total} rows",
            steps.rows()
        )));
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
        let (at0, n0) = steps.at(time(0));
        for (p, buf) in inputs.iter().enumerate() {
            let buf = buf.get_mut(0..rows * k);
            for r in 0..rows {
                buf[r * k + in_w..r * k + in_w + hidden]
                    .copy_from_slice(&h0.get()[r * hidden..(r + 1) * hidden]);
                if p == 0 && r < n0 {
                    let at = (at0 + r) * in_w;
                    buf[r * k..r * k + in_w].copy_from_slice(&xs[at..at + in_w]);
                }
            }
        }
    }
    let lstm = mode == Mode::Lstm;
    // The LSTM's cell state, updated in place: each row holds its
    // sequence's latest, as the inputs' state part does for h.
    let cell = SharedBuf::new(if lstm { rows * hp } else { 0 });
    if lstm {
        let c0 = Floats::new(c0.ok_or_else(|| Error::value("the LSTM needs a cell state"))?)?;
        // SAFETY: no thread runs yet.
        let buf = unsafe { cell.get_mut(0..rows * hp) };
        for r in 0..rows {
            buf[r * hp..r * hp + hidden].copy_from_slice(&c0.get()[r * hidden..(r + 1) * hidden]);
        }
    }
    let opts = (Kind::Float, Device::Cpu);
    let out = Tensor::f_empty([total as i64, hp as i64], opts)?;
    // SAFETY: a fresh float32 tensor, written by the team only (each element
    // once) and read after it has finished.
    let out_buf = unsafe { team_output(&out) };
    let keep = keep_gates && matches!(mode, Mode::Gru | Mode::Lstm);
    let gates = if keep {
        Some(Tensor::f_empty([total as i64, 4, hp as i64], opts)?)
    } else {
        None
    };
    let cells = if keep && lstm {
        Some(Tensor::f_empty([total as i64, hp as i64], opts)?)
    } else {
        None
    };
    // SAFETY: as for `out_buf`.
    let gates_buf = gates.as_ref().map(|g| unsafe { team_output(g) });
    let cells_buf = cells.as_ref().map(|c| unsafe { team_output(c) });

    let threads = team_size(&layer, rows);
    let barrier = SpinBarrier::new(threads);
    let isa = Isa::detect();
    let run = |tid: usize| {
        let my_blocks = split(layer.blocks, threads, tid);
        for step in 0..len {
            let (p, t) = (step % 2, time(step));
            let (at, n) = steps.at(t);
            let job = Job {
                layer: &layer,
                pointwise: pw,
                input: &inputs[p],
                rows: n,
                cell: lstm.then_some(Dest {
                    buf: &cell,
                    stride: hp,
                    offset: 0,
                }),
                out: [
                    Some(Dest {
                        buf: &inputs[1 - p],
                        stride: k,
                        offset: in_w,
                    }),
                    Some(Dest {
                        buf: &out_buf,
                        stride: hp,
                        offset: at * hp,
                    }),
                ],
                gates: gates_buf.as_ref().map(|buf| GateSave {
                    buf,
                    stride: 4 * hp,
                    offset: at * 4 * hp,
                    slot_stride: hp,
                    cell: cells_buf.as_ref().map(|buf| Dest {
                        buf,
                        stride: hp,
                        offset: at * hp,
                    }),
                }),
            };
            // SAFETY: this phase reads `inputs[p]`; each thread writes the
            // state of its own blocks and the `x` of its own rows in
            // `inputs[1 - p]`, and its blocks of this step's outputs.
            unsafe {
                block::run(isa, &job, my_blocks.clone());
                if step + 1 < len {
                    let (next_at, next_n) = steps.at(time(step + 1));
                    let my_rows = split(next_n, threads, tid);
                    let next = inputs[1 - p].get_mut(my_rows.start * k..my_rows.end * k);
                    for (i, r) in my_rows.enumerate() {
                        let at = (next_at + r) * in_w;
                        next[i * k..i * k + in_w].copy_from_slice(&xs[at..at + in_w]);
                    }
                }
            }
            barrier.wait();
        }
    };
    team::run(threads, &barrier, run)?;
    drop((out_buf, gates_buf, cells_buf));
    let unpad = |t: Tensor| -> Result<Tensor> {
        Ok(if hp == hidden {
            t
        } else {
            t.f_narrow(1, 0, hidden as i64)?.f_contiguous()?
        })
    };
    let out = unpad(out)?;
    let cells = cells.map(unpad).transpose()?;
    let c_n = if lstm {
        // SAFETY: the team has finished.
        let c = Tensor::f_from_slice(unsafe { cell.get(0..rows * hp) })?
            .f_view([rows as i64, hp as i64])?;
        Some(unpad(c)?)
    } else {
        None
    };
    let gates = match gates {
        Some(g) if hp == hidden => Some(g.f_view([total as i64, 4 * hp as i64])?),
        Some(g) => Some(
            g.f_narrow(2, 0, hidden as i64)?
                .f_reshape([total as i64, 4 * hidden as i64])?,
        ),
        None => None,
    };
    let h_n = steps.last(&out, reverse)?;
    Ok(Fused {
        out,
        h_n,
        gates,
        c_n,
        cells,
    })
}
