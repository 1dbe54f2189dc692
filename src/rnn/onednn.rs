//! The oneDNN engine: one LSTM direction through oneDNN's fused LSTM layer
//! (libtorch's `mkldnn_rnn_layer` and its backward), float32 on the CPU,
//! without projections, over a padded batch (`engine` says when it runs).
//!
//! Why: on CPUs where libtorch's BLAS runs far below peak (MKL on AMD EPYC,
//! measured here at ~160-210 GFLOP/s against oneDNN's ~270-490), no composition
//! of per-step matrix products can reach torch.nn.LSTM's speed; oneDNN's own
//! kernels can. Everything around the layer — the stack, dropout, the reverse
//! direction, the tape and the chaining of gradients — stays ours. It is
//! checked against torch.nn in the tests, as are the other engines.

use tch::{Device, Kind, Tensor};

use super::direction::{DirBackward, DirGrads, DirOutput, DirWeights};
use super::steps::Steps;
use crate::error::Result;

/// torch's `ideep::rnn_kind::LSTM`.
const MODE_LSTM: i64 = 2;

pub struct Saved {
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    out: Tensor,
    hy: Tensor,
    cy: Tensor,
    workspace: Tensor,
    reverse: bool,
}

fn biases(w: &DirWeights) -> Result<(Tensor, Tensor, bool)> {
    Ok(match (w.b_ih, w.b_hh) {
        (Some(a), Some(b)) => (a.shallow_clone(), b.shallow_clone(), true),
        _ => {
            // Ignored by the kernel without biases, but it wants tensors.
            let z = Tensor::f_zeros([w.w_ih.size()[0]], (Kind::Float, Device::Cpu))?;
            (z.shallow_clone(), z, false)
        }
    })
}

/// `x` is `[N, I]` over uniform `steps`; the kernel sees it as `[T, B, I]`.
pub fn forward(
    w: &DirWeights,
    x: &Tensor,
    steps: &Steps,
    h0: &Tensor,
    c0: &Tensor,
    reverse: bool,
    train: bool,
) -> Result<DirOutput<Saved>> {
    let hidden = w.w_hh.size()[1];
    let (b_ih, b_hh, has_bias) = biases(w)?;
    let (len, batch) = (steps.len() as i64, steps.batch() as i64);
    let x = x.f_contiguous()?.f_detach()?.f_view([len, batch, -1])?;
    let (h0, c0) = (
        h0.f_contiguous()?.f_detach()?,
        c0.f_contiguous()?.f_detach()?,
    );
    let empty: [i64; 0] = [];
    // The kernel keeps its workspace only while grad mode is on; on detached
    // tensors that records no graph.
    // oneDNN reads raw memory: hand it dense copies of any strided parameter.
    let dense = |t: &Tensor| -> Result<Tensor> { Ok(t.f_contiguous()?.f_detach()?) };
    let (w_ih, w_hh) = (dense(w.w_ih)?, dense(w.w_hh)?);
    let (b_ih, b_hh) = (dense(&b_ih)?, dense(&b_hh)?);
    let run = || {
        x.f_mkldnn_rnn_layer(
            &w_ih, &w_hh, &b_ih, &b_hh, &h0, &c0, reverse, empty, MODE_LSTM, hidden, 1, has_bias,
            false, false, train,
        )
    };
    // Inference skips grad mode: the kernel is measurably faster without it
    // (3.9 ms against 4.6 ms for a 64x32x128 -> 256 layer here).
    let (out, hy, cy, workspace) = if train { tch::with_grad(run)? } else { run()? };
    Ok(DirOutput {
        out: out.f_view([len * batch, hidden])?,
        h_n: hy.shallow_clone(),
        c_n: Some(cy.shallow_clone()),
        saved: Saved {
            x,
            h0,
            c0,
            out,
            hy,
            cy,
            workspace,
            reverse,
        },
    })
}

pub fn backward(
    w: &DirWeights,
    s: &Saved,
    d_out: &Tensor,
    dh_n: &Tensor,
    dc_n: &Tensor,
) -> Result<DirBackward> {
    let hidden = w.w_hh.size()[1];
    let (b_ih, b_hh, has_bias) = biases(w)?;
    let empty: [i64; 0] = [];
    let d_out = d_out.f_reshape(s.out.size())?;
    let (dx, dw_ih, dw_hh, db, _, dh0, dc0) = s.x.f_mkldnn_rnn_layer_backward(
        &w.w_ih.f_contiguous()?,
        &w.w_hh.f_contiguous()?,
        &b_ih.f_contiguous()?,
        &b_hh.f_contiguous()?,
        &s.h0,
        &s.c0,
        &s.out,
        &s.hy,
        &s.cy,
        Some(d_out.f_contiguous()?),
        Some(dh_n.f_contiguous()?),
        Some(dc_n.f_contiguous()?),
        s.reverse,
        MODE_LSTM,
        hidden,
        1,
        has_bias,
        true,
        false,
        empty,
        false,
        &s.workspace,
    )?;
    // Both bias vectors enter the gates as one sum, so their gradients are equal;
    // each parameter still gets a tensor of its own.
    let (b_ih, b_hh) = if has_bias {
        let mut own = db.f_zeros_like()?;
        own.f_copy_(&db)?;
        (Some(own), Some(db))
    } else {
        (None, None)
    };
    let rows = dx.size()[0] * dx.size()[1];
    Ok(DirBackward {
        dx: Some(dx.f_reshape([rows, -1])?),
        dh0,
        dc0: Some(dc0),
        grads: DirGrads {
            w_ih: dw_ih,
            w_hh: dw_hh,
            b_ih,
            b_hh,
            w_hr: None,
        },
    })
}

impl Saved {
    pub fn shallow_clone(&self) -> Saved {
        Saved {
            x: self.x.shallow_clone(),
            h0: self.h0.shallow_clone(),
            c0: self.c0.shallow_clone(),
            out: self.out.shallow_clone(),
            hy: self.hy.shallow_clone(),
            cy: self.cy.shallow_clone(),
            workspace: self.workspace.shallow_clone(),
            reverse: self.reverse,
        }
    }
}
