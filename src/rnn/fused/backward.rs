//! The fused engine's backward: the LSTM's, GRU's and Elman RNN's backward
//! recurrences on the fused CPU kernels (float32), the per-step work of the
//! composed engine's backward without a libtorch call per op.
//!
//! Each step is two phases of the team, a barrier after each:
//!
//! 1. pointwise, rows split between the threads: the gradient reaching the
//!    step's state (`d_out[t]` plus what the later step sent back) becomes
//!    the gate gradients, written to the tensors `sequence_grads` reads;
//! 2. the product of those gate gradients with `W_hh` (packed transposed),
//!    output blocks split: the gradient sent back to the previous state.
//!
//! The weight and input gradients of all steps stay one large product each,
//! in `direction::sequence_grads`.
//!
//! A packed batch's step works on its own rows only (see `fused`): the
//! gradient buffer starts as `dh_n` in every row, a sequence's row is first
//! touched at its own last step, and when the loop ends every row holds the
//! gradient of its sequence's initial state.

use tch::{Device, Kind, Tensor};

use super::packing::{team_output, team_size, Floats};
use crate::error::{Error, Result};
use crate::kernel::block::{self, Dest, Isa, Job, Pointwise};
use crate::kernel::lanes::LANES;
use crate::kernel::packed::{Dense, PackedLayer, Source, SLOTS};
use crate::kernel::team::{self, split, SharedBuf, SpinBarrier};
use crate::rnn::direction::{lstm_dc, sequence_grads, DirBackward, DirWeights};
use crate::rnn::saved::{self, Activations};
use crate::rnn::steps::Steps;

/// Back-propagates through what the fused forward saved.
pub fn backward(
    w: &DirWeights,
    saved: &Activations,
    d_out: &Tensor,
    dh_n: &Tensor,
    dc_n: Option<&Tensor>,
    need_dx: bool,
) -> Result<DirBackward> {
    match saved {
        Activations::Lstm(s) => lstm_backward(w, s, d_out, dh_n, lstm_dc(dc_n)?, need_dx),
        Activations::Gru(s) => gru_backward(w, s, d_out, dh_n, need_dx),
        Activations::Simple(s) => simple_backward(w, s, d_out, dh_n, need_dx),
    }
}

fn lstm_backward(
    w: &DirWeights,
    s: &saved::Lstm,
    d_out: &Tensor,
    dh_n: &Tensor,
    dc_n: &Tensor,
    need_dx: bool,
) -> Result<DirBackward> {
    let steps = &s.steps;
    let c_prev_all = steps.previous(&s.c, &s.c0, s.reverse)?;
    let h_prev = steps.previous(&s.out, &s.h0, s.reverse)?;
    let (dgates, dh0, dc0) = lstm_steps(
        w.w_hh,
        &s.gates,
        &s.tc,
        &c_prev_all,
        d_out,
        dh_n,
        dc_n,
        steps,
        s.reverse,
    )?;
    let (dx, grads) = sequence_grads(w, &s.x, &h_prev, &dgates, &dgates, need_dx)?;
    Ok(DirBackward {
        dx,
        dh0,
        dc0: Some(dc0),
        grads,
    })
}

fn gru_backward(
    w: &DirWeights,
    s: &saved::Gru,
    d_out: &Tensor,
    dh_n: &Tensor,
    need_dx: bool,
) -> Result<DirBackward> {
    let steps = &s.steps;
    let h_prev_all = steps.previous(&s.out, &s.h0, s.reverse)?;
    let (dgx, dgh, dh0) = gru_steps(
        w.w_hh,
        &s.gates,
        &s.hn,
        &h_prev_all,
        d_out,
        dh_n,
        steps,
        s.reverse,
    )?;
    let (dx, grads) = sequence_grads(w, &s.x, &h_prev_all, &dgx, &dgh, need_dx)?;
    Ok(DirBackward {
        dx,
        dh0,
        dc0: None,
        grads,
    })
}

fn simple_backward(
    w: &DirWeights,
    s: &saved::Simple,
    d_out: &Tensor,
    dh_n: &Tensor,
    need_dx: bool,
) -> Result<DirBackward> {
    let steps = &s.steps;
    let h_prev = steps.previous(&s.out, &s.h0, s.reverse)?;
    let (dpre, dh0) = simple_steps(w.w_hh, &s.out, d_out, dh_n, steps, s.reverse, s.relu)?;
    let (dx, grads) = sequence_grads(w, &s.x, &h_prev, &dpre, &dpre, need_dx)?;
    Ok(DirBackward {
        dx,
        dh0,
        dc0: None,
        grads,
    })
}

/// A float32 CPU tensor `[N, C]`, one row per token, read in place
/// (contiguous within a row): the GRU's gates are views into one `[N, 4H]`
/// buffer. Anything else is copied first.
struct Rows<'a> {
    data: &'a [f32],
    stride: usize,
}

/// `t` itself when it can be read as [`Rows`] in place, else a contiguous copy.
fn dense_rows(t: &Tensor) -> Result<Tensor> {
    let (size, stride) = (t.size(), t.stride());
    let in_place = t.dim() == 2 && (size[1] <= 1 || stride[1] == 1) && stride[0] >= size[1];
    Ok(if in_place {
        t.shallow_clone()
    } else {
        t.f_contiguous()?
    })
}

impl<'a> Rows<'a> {
    /// `t` must come from [`dense_rows`] and outlive the result.
    fn new(t: &'a Tensor) -> Result<Rows<'a>> {
        if t.device() != Device::Cpu || t.f_kind()? != Kind::Float || t.dim() != 2 {
            return Err(Error::value(format!(
                "the fused backward takes float32 CPU [N, C] tensors, got {:?} {:?} on {:?}",
                t.size(),
                t.f_kind()?,
                t.device()
            )));
        }
        let (size, stride) = (t.size(), t.stride());
        let span = if t.numel() == 0 {
            0
        } else {
            ((size[0] - 1) * stride[0] + size[1]) as usize
        };
        // SAFETY: float32 on the CPU; `dense_rows` made each row contiguous
        // with rows `stride` apart, so every element lies within `span` of
        // the first; `t` outlives `'a`.
        let data = unsafe { std::slice::from_raw_parts(t.data_ptr() as *const f32, span) };
        Ok(Rows {
            data,
            stride: stride[0] as usize,
        })
    }

    /// Row `i` from column `c0`, `n` long.
    fn row(&self, i: usize, c0: usize, n: usize) -> &[f32] {
        let at = i * self.stride + c0;
        &self.data[at..at + n]
    }
}

/// `W_hh` transposed and packed: the product `g W_hh` of a gate gradient
/// `g` `[B, G]` as a linear "layer" with `hidden` outputs.
fn pack_transposed(w_hh: &Tensor) -> Result<(PackedLayer, usize)> {
    let (gates, hidden) = w_hh.size2()?;
    let (gates, hidden) = (gates as usize, hidden as usize);
    let wt = Floats::new(&w_hh.f_tr()?.f_contiguous()?)?;
    let width = SLOTS * LANES;
    let blocks = hidden.div_ceil(width);
    let dense = Dense {
        weight: wt.get(),
        cols: gates,
        bias: None,
    };
    let layer = PackedLayer::new(blocks, gates, 0, dense, None, |b, s, l| {
        let o = (b * SLOTS + s) * LANES + l;
        (o < hidden).then_some((o, Source::Input))
    });
    Ok((layer, blocks * width))
}

fn empty(rows: usize, cols: usize) -> Result<Tensor> {
    Ok(Tensor::f_empty(
        [rows as i64, cols as i64],
        (Kind::Float, Device::Cpu),
    )?)
}

/// Runs the two-phase loop: `pointwise(token, batch_row, prod_row,
/// gate_grads_row)` turns the product of the later step (`prod_row`, `[H]`)
/// into this token's gate gradients (`[G]`), which are then multiplied by
/// `W_hh`. Returns the last product `[B, H]` (the gradient reaching the
/// initial state, before any pointwise term the caller adds).
fn run_loop(
    w_hh: &Tensor,
    steps: &Steps,
    reverse: bool,
    dh_n: &Tensor,
    grads_for_product: &Tensor,
    pointwise: impl Fn(usize, usize, &[f32], &mut [f32]) + Sync,
) -> Result<Tensor> {
    let (layer, hp) = pack_transposed(w_hh)?;
    let (gates, hidden) = (layer.k, w_hh.size()[1] as usize);
    let rows = steps.batch();
    let prod = SharedBuf::new(rows * hp);
    let dh_n = Floats::new(dh_n)?;
    // SAFETY: no thread runs yet.
    unsafe {
        let p = prod.get_mut(0..rows * hp);
        for r in 0..rows {
            p[r * hp..r * hp + hidden].copy_from_slice(&dh_n.get()[r * hidden..(r + 1) * hidden]);
        }
    }
    // SAFETY: a fresh float32 tensor the caller keeps; only the team writes it.
    let grads = unsafe { team_output(grads_for_product) };
    let order: Vec<usize> = steps.order(!reverse).collect();
    let threads = team_size(&layer, rows);
    let barrier = SpinBarrier::new(threads);
    let isa = Isa::detect();
    team::run(threads, &barrier, |tid| {
        let my_blocks = split(layer.blocks, threads, tid);
        for &t in &order {
            let (first, n) = steps.at(t);
            // SAFETY (phase 1): each thread reads and writes only its rows of
            // `prod` and of step t's gate gradients.
            unsafe {
                for r in split(n, threads, tid) {
                    let p = prod.get(r * hp..r * hp + hidden);
                    let at = (first + r) * gates;
                    pointwise(first + r, r, p, grads.get_mut(at..at + gates));
                }
            }
            barrier.wait();
            // SAFETY (phase 2): every thread reads step t's gate gradients;
            // each writes its own blocks of `prod` (its first n rows).
            let step_grads = unsafe { grads.window(first * gates..(first + n) * gates) };
            let job = Job {
                layer: &layer,
                pointwise: Pointwise::Linear,
                input: &step_grads,
                rows: n,
                cell: None,
                out: [
                    Some(Dest {
                        buf: &prod,
                        stride: hp,
                        offset: 0,
                    }),
                    None,
                ],
                gates: None,
            };
            unsafe { block::run(isa, &job, my_blocks.clone()) };
            barrier.wait();
        }
    })?;
    drop(grads);
    // SAFETY: the team has finished.
    let p = unsafe { prod.get(0..rows * hp) };
    let mut out = Vec::with_capacity(rows * hidden);
    for r in 0..rows {
        out.extend_from_slice(&p[r * hp..r * hp + hidden]);
    }
    Ok(Tensor::f_from_slice(&out)?.f_view([rows as i64, hidden as i64])?)
}

/// The GRU's per-step backward: from the saved activated gates (r, z, n),
/// `hn = W_hn h + b_hn`, the states each token started from `h_prev`, the
/// output gradient and `dh_n`, returns the input-side and hidden-side gate
/// gradients `[N, 3H]` and the initial state's gradient.
#[allow(clippy::too_many_arguments)]
fn gru_steps(
    w_hh: &Tensor,
    gates: &Tensor,
    hn: &Tensor,
    h_prev: &Tensor,
    d_out: &Tensor,
    dh_n: &Tensor,
    steps: &Steps,
    reverse: bool,
) -> Result<(Tensor, Tensor, Tensor)> {
    let (total, rows) = (steps.rows(), steps.batch());
    let hid = w_hh.size()[1] as usize;
    let (gates, hn, h_prev, d_out) = (
        dense_rows(gates)?,
        dense_rows(hn)?,
        dense_rows(h_prev)?,
        dense_rows(d_out)?,
    );
    let (g, hn, hp_, d_out) = (
        Rows::new(&gates)?,
        Rows::new(&hn)?,
        Rows::new(&h_prev)?,
        Rows::new(&d_out)?,
    );
    let dgx = empty(total, 3 * hid)?;
    let dgh = empty(total, 3 * hid)?;
    // SAFETY: as for `grads` in `run_loop`.
    let dgx_buf = unsafe { team_output(&dgx) };
    // What each step passes back to the previous state besides the product: dh ⊙ z.
    let carry = SharedBuf::<f32>::new(rows * hid);
    let pointwise = |i: usize, r: usize, prod: &[f32], out: &mut [f32]| {
        let (gr, hnr) = (g.row(i, 0, 3 * hid), hn.row(i, 0, hid));
        let (hpr, dor) = (hp_.row(i, 0, hid), d_out.row(i, 0, hid));
        // SAFETY: batch row r of `carry` and token i's `dgx` belong to this thread.
        let (c, x) = unsafe {
            (
                carry.get_mut(r * hid..(r + 1) * hid),
                dgx_buf.get_mut(i * 3 * hid..(i + 1) * 3 * hid),
            )
        };
        for u in 0..hid {
            let (rg, z, n) = (gr[u], gr[hid + u], gr[2 * hid + u]);
            let dh = dor[u] + prod[u] + c[u];
            let dn = dh * (1.0 - z) * (1.0 - n * n);
            let dr = dn * hnr[u] * (rg * (1.0 - rg));
            let dz = dh * (hpr[u] - n) * (z * (1.0 - z));
            x[u] = dr;
            x[hid + u] = dz;
            x[2 * hid + u] = dn;
            out[u] = dr;
            out[hid + u] = dz;
            out[2 * hid + u] = dn * rg;
            c[u] = dh * z;
        }
    };
    let last = run_loop(w_hh, steps, reverse, dh_n, &dgh, pointwise)?;
    drop(dgx_buf);
    // SAFETY: the team has finished.
    let c = Tensor::f_from_slice(unsafe { carry.get(0..rows * hid) })?
        .f_view([rows as i64, hid as i64])?;
    Ok((dgx, dgh, last.f_add(&c)?))
}

/// The Elman RNN's per-step backward from its outputs: returns the
/// pre-activation gradients `[N, H]` and the initial state's gradient.
fn simple_steps(
    w_hh: &Tensor,
    out: &Tensor,
    d_out: &Tensor,
    dh_n: &Tensor,
    steps: &Steps,
    reverse: bool,
    relu: bool,
) -> Result<(Tensor, Tensor)> {
    let hid = w_hh.size()[1] as usize;
    let (out, d_out) = (dense_rows(out)?, dense_rows(d_out)?);
    let (o, d_out) = (Rows::new(&out)?, Rows::new(&d_out)?);
    let dpre = empty(steps.rows(), hid)?;
    let pointwise = |i: usize, _r: usize, prod: &[f32], g: &mut [f32]| {
        let (or, dor) = (o.row(i, 0, hid), d_out.row(i, 0, hid));
        for u in 0..hid {
            let act = if relu {
                // torch's threshold_backward: a NaN output passes the gradient.
                if or[u] <= 0.0 {
                    0.0
                } else {
                    1.0
                }
            } else {
                1.0 - or[u] * or[u]
            };
            g[u] = (dor[u] + prod[u]) * act;
        }
    };
    let dh0 = run_loop(w_hh, steps, reverse, dh_n, &dpre, pointwise)?;
    Ok((dpre, dh0))
}

/// The LSTM's per-step backward: from the saved activated gates (i, f, g, o)
/// `[N, 4H]`, `tanh(c)` of the cell state after each token, the cell
/// states each token started from, the output gradient and the final
/// states' gradients, returns the gate pre-activation gradients `[N, 4H]`
/// and the gradients of the initial `h` and `c`.
#[allow(clippy::too_many_arguments)]
fn lstm_steps(
    w_hh: &Tensor,
    gates: &Tensor,
    tc: &Tensor,
    c_prev: &Tensor,
    d_out: &Tensor,
    dh_n: &Tensor,
    dc_n: &Tensor,
    steps: &Steps,
    reverse: bool,
) -> Result<(Tensor, Tensor, Tensor)> {
    let rows = steps.batch();
    let hid = w_hh.size()[1] as usize;
    let (gates, tc) = (dense_rows(gates)?, dense_rows(tc)?);
    let (c_prev, d_out) = (dense_rows(c_prev)?, dense_rows(d_out)?);
    let (g, tc, cp, d_out) = (
        Rows::new(&gates)?,
        Rows::new(&tc)?,
        Rows::new(&c_prev)?,
        Rows::new(&d_out)?,
    );
    let dgates = empty(steps.rows(), 4 * hid)?;
    // The cell state's gradient, carried from step to step in each sequence's
    // row; it starts as dc_n and ends as the initial cell state's gradient.
    let carry = SharedBuf::<f32>::new(rows * hid);
    {
        let dc_n = Floats::new(dc_n)?;
        // SAFETY: no thread runs yet.
        unsafe { carry.get_mut(0..rows * hid) }.copy_from_slice(&dc_n.get()[..rows * hid]);
    }
    let pointwise = |i: usize, r: usize, prod: &[f32], out: &mut [f32]| {
        let (gr, tcr) = (g.row(i, 0, 4 * hid), tc.row(i, 0, hid));
        let (cpr, dor) = (cp.row(i, 0, hid), d_out.row(i, 0, hid));
        // SAFETY: batch row r of `carry` belongs to this thread.
        let dcr = unsafe { carry.get_mut(r * hid..(r + 1) * hid) };
        for u in 0..hid {
            let (ig, fg, gg, og) = (gr[u], gr[hid + u], gr[2 * hid + u], gr[3 * hid + u]);
            let dh = dor[u] + prod[u];
            let t = tcr[u];
            let dc = dh * og * (1.0 - t * t) + dcr[u];
            out[u] = dc * gg * (ig * (1.0 - ig));
            out[hid + u] = dc * cpr[u] * (fg * (1.0 - fg));
            out[2 * hid + u] = dc * ig * (1.0 - gg * gg);
            out[3 * hid + u] = dh * t * (og * (1.0 - og));
            dcr[u] = dc * fg;
        }
    };
    let dh0 = run_loop(w_hh, steps, reverse, dh_n, &dgates, pointwise)?;
    // SAFETY: the team has finished.
    let dc0 = Tensor::f_from_slice(unsafe { carry.get(0..rows * hid) })?
        .f_view([rows as i64, hid as i64])?;
    Ok((dgates, dh0, dc0))
}
