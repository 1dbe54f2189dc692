//! One Elman RNN direction (tanh or ReLU) over a whole sequence.
//!
//!   h' = act(W_ih x + b_ih + W_hh h + b_hh)

use tch::Tensor;

use super::direction::{
    bias_sum, dtanh, previous_states, project_inputs, sequence_grads, time_order, DirBackward,
    DirOutput, DirWeights,
};
use super::{fused, fused_backward, Mode};
use crate::error::Result;

pub struct Saved {
    x: Tensor,
    out: Tensor,
    h0: Tensor,
    reverse: bool,
    relu: bool,
}

pub fn forward(
    w: &DirWeights,
    x: &Tensor,
    h0: &Tensor,
    reverse: bool,
    relu: bool,
) -> Result<DirOutput<Saved>> {
    let len = x.size()[0];
    // The pre-activations are built in the output buffer and activated in place.
    let out = project_inputs(x, w.w_ih, bias_sum(w)?.as_ref())?;
    let w_hh_t = w.w_hh.f_tr()?;
    let mut h_prev = h0.shallow_clone();
    for t in time_order(len, reverse) {
        let mut ht = out.f_select(0, t)?;
        _ = ht.f_addmm_(&h_prev, &w_hh_t)?;
        if relu {
            _ = ht.f_relu_()?;
        } else {
            _ = ht.f_tanh_()?;
        }
        h_prev = ht;
    }
    Ok(DirOutput {
        out: out.shallow_clone(),
        h_n: h_prev,
        c_n: None,
        saved: Saved {
            x: x.shallow_clone(),
            out,
            h0: h0.shallow_clone(),
            reverse,
            relu,
        },
    })
}

pub fn backward(
    w: &DirWeights,
    s: &Saved,
    d_out: &Tensor,
    dh_n: &Tensor,
    need_dx: bool,
) -> Result<DirBackward> {
    if fused::usable(Mode::RnnTanh, w, &s.x) {
        let (dpre, dh0) = fused_backward::simple(w.w_hh, &s.out, d_out, dh_n, s.reverse, s.relu)?;
        let h_prev = previous_states(&s.out, &s.h0, s.reverse)?;
        let (dx, grads) = sequence_grads(w, &s.x, &h_prev, &dpre, &dpre, need_dx)?;
        return Ok(DirBackward {
            dx,
            dh0,
            dc0: None,
            grads,
        });
    }
    let len = s.x.size()[0];
    // The activation's derivative depends only on its output, so it is taken
    // for all timesteps at once.
    let act_grad = if s.relu {
        s.out.f_gt(0.0)?.f_to_dtype(s.out.f_kind()?, false, false)?
    } else {
        dtanh(&s.out)?
    };
    let dpre = s.out.f_zeros_like()?;
    let mut dh = dh_n.shallow_clone();
    for t in time_order(len, !s.reverse) {
        let mut dpt = dpre.f_select(0, t)?;
        _ = d_out.f_select(0, t)?.f_add_out(&dpt, &dh)?;
        _ = dpt.f_mul_(&act_grad.f_select(0, t)?)?;
        dh = dpt.f_mm(w.w_hh)?;
    }
    let h_prev = previous_states(&s.out, &s.h0, s.reverse)?;
    let (dx, grads) = sequence_grads(w, &s.x, &h_prev, &dpre, &dpre, need_dx)?;
    Ok(DirBackward {
        dx,
        dh0: dh,
        dc0: None,
        grads,
    })
}

impl Saved {
    /// What the backward needs from a forward on the fused kernels.
    pub fn from_fused(x: &Tensor, h0: &Tensor, reverse: bool, relu: bool, out: &Tensor) -> Saved {
        Saved {
            x: x.shallow_clone(),
            out: out.shallow_clone(),
            h0: h0.shallow_clone(),
            reverse,
            relu,
        }
    }

    pub fn shallow_clone(&self) -> Saved {
        Saved {
            x: self.x.shallow_clone(),
            out: self.out.shallow_clone(),
            h0: self.h0.shallow_clone(),
            reverse: self.reverse,
            relu: self.relu,
        }
    }
}
