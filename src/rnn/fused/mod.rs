//! The fused engine: one LSTM, GRU or Elman-RNN direction over a whole
//! sequence on rustrnn's fused CPU kernels (`crate::kernel`), float32 on the
//! CPU, no projections (`engine` says when it runs).
//!
//! Why: composed from libtorch ops (as torch.nn.GRU and RNN are on the CPU),
//! every timestep is a small matrix product, slow in MKL at these shapes on
//! this CPU, plus several pointwise ops that each pay a call's fixed cost.
//! Here a timestep is one pass over the packed `[W_ih, W_hh]` panels with the
//! gate functions applied in registers, its blocks split between a small team
//! of threads that meet at one spin barrier per step.
//!
//! Step `t` reads `[x_t, h_{t-1}]` from `input[p]` and writes `h_t` into
//! `input[1 - p]` (and into the output); meanwhile each thread copies its
//! rows of `x_{t+1}` into `input[1 - p]`, a part nobody reads in this phase.
//!
//! A packed batch's step computes only its own rows, a prefix of the batch
//! (`steps::Steps`). Both buffers start with every row's initial state, and
//! a row no step writes keeps what it holds: a reverse pass finds each
//! sequence's initial state in its row when the sequence starts.
//!
//! * `backward` – the backward recurrence on the same kernels.
//! * `packing`  – weights packed for the kernels (shared with generation).

mod backward;
pub mod packing;

pub use backward::backward;

use tch::{Device, Kind, Tensor};

use packing::{pack_layer, padded, pointwise, team_output, team_size, Floats};

use super::direction::{DirOutput, DirWeights};
use super::saved::{self, Activations};
use super::steps::Steps;
use super::Mode;
use crate::error::{Error, Result};
use crate::kernel::block::{self, Dest, GateSave, Isa, Job};
use crate::kernel::team::{self, split, SharedBuf, SpinBarrier};

/// What the kernels computed.
struct Fused {
    /// `[N, H]`.
    out: Tensor,
    /// Each sequence's last state `[B, H]`.
    h_n: Tensor,
    /// When asked, `[N, 4H]`: the GRU's activated r, z, n and the recurrent
    /// part of the candidate `W_hn h + b_hn`, or the LSTM's i, f, g, o.
    gates: Option<Tensor>,
    /// The LSTM's cell states: each sequence's last `[B, H]`, and when the
    /// gates are kept every token's `[N, H]`.
    c_n: Option<Tensor>,
    cells: Option<Tensor>,
}

/// Runs `mode`'s recurrence over `x` `[N, I]` laid out by `steps` from `h0`
/// `[B, H]` (and the LSTM's `c0`), with what the backward needs when
/// `keep_tape`.
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
) -> Result<DirOutput<Option<Activations>>> {
    let f = recurrence(mode, w, x, steps, h0, c0, reverse, keep_tape)?;
    let saved = match (mode, &f.gates, &f.cells, c0) {
        _ if !keep_tape => None,
        (Mode::Lstm, Some(gates), Some(c), Some(c0)) => Some(Activations::Lstm(saved::Lstm {
            x: x.shallow_clone(),
            gates: gates.shallow_clone(),
            c: c.shallow_clone(),
            tc: c.f_tanh()?,
            hf: None,
            out: f.out.shallow_clone(),
            h0: h0.shallow_clone(),
            c0: c0.shallow_clone(),
            steps: steps.clone(),
            reverse,
        })),
        // The kernels keep the GRU's r, z, n and then `W_hn h + b_hn`.
        (Mode::Gru, Some(gates), _, _) => {
            let hid = f.out.size()[1];
            Some(Activations::Gru(saved::Gru {
                x: x.shallow_clone(),
                gates: gates.f_narrow(1, 0, 3 * hid)?,
                hn: gates.f_narrow(1, 3 * hid, hid)?,
                out: f.out.shallow_clone(),
                h0: h0.shallow_clone(),
                steps: steps.clone(),
                reverse,
            }))
        }
        (Mode::RnnTanh | Mode::RnnRelu, _, _, _) => Some(Activations::Simple(saved::Simple {
            x: x.shallow_clone(),
            out: f.out.shallow_clone(),
            h0: h0.shallow_clone(),
            steps: steps.clone(),
            reverse,
            relu: mode == Mode::RnnRelu,
        })),
        // Not reached: the kernels keep an LSTM's or a GRU's gates when asked.
        (Mode::Lstm | Mode::Gru, _, _, _) => None,
    };
    Ok(DirOutput {
        out: f.out,
        h_n: f.h_n,
        c_n: f.c_n,
        saved,
    })
}

/// Runs the kernels, keeping the gates when `keep_gates`.
#[allow(clippy::too_many_arguments)]
fn recurrence(
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
