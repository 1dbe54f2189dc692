//! One Elman RNN direction (tanh or ReLU) over a whole sequence in libtorch ops,
//! forward and backward.
//!
//!   h' = act(W_ih x + b_ih + W_hh h + b_hh)

use tch::Tensor;

use crate::error::Result;
use crate::rnn::direction::{
    bias_sum, dtanh, project_inputs, sequence_grads, DirBackward, DirOutput, DirWeights,
};
use crate::rnn::saved;
use crate::rnn::steps::{Carry, Steps};

pub fn forward(
    w: &DirWeights,
    x: &Tensor,
    steps: &Steps,
    h0: &Tensor,
    reverse: bool,
    relu: bool,
) -> Result<DirOutput<saved::Simple>> {
    // The pre-activations are built in the output buffer and activated in place.
    let out = project_inputs(x, w.w_ih, bias_sum(w)?.as_ref())?;
    let w_hh_t = w.w_hh.f_tr()?;
    let mut state = Carry::new(h0, steps)?;
    for t in steps.order(reverse) {
        let mut ht = steps.step(&out, t)?;
        _ = ht.f_addmm_(&state.rows(steps.at(t).1)?, &w_hh_t)?;
        if relu {
            _ = ht.f_relu_()?;
        } else {
            _ = ht.f_tanh_()?;
        }
        state.set(&ht)?;
    }
    Ok(DirOutput {
        out: out.shallow_clone(),
        h_n: state.into_state(),
        c_n: None,
        saved: saved::Simple {
            x: x.shallow_clone(),
            out,
            h0: h0.shallow_clone(),
            steps: steps.clone(),
            reverse,
            relu,
        },
    })
}

pub fn backward(
    w: &DirWeights,
    s: &saved::Simple,
    d_out: &Tensor,
    dh_n: &Tensor,
    need_dx: bool,
) -> Result<DirBackward> {
    let steps = &s.steps;
    let h_prev = steps.previous(&s.out, &s.h0, s.reverse)?;
    // The activation's derivative depends only on its output, so it is taken
    // for all timesteps at once.
    // ReLU's is torch's threshold_backward: 0 where the output is <= 0, so a
    // NaN output passes its gradient on.
    let act_grad = if s.relu {
        s.out
            .f_le(0.0)?
            .f_logical_not()?
            .f_to_dtype(s.out.f_kind()?, false, false)?
    } else {
        dtanh(&s.out)?
    };
    let dpre = s.out.f_zeros_like()?;
    let mut dh = Carry::new(dh_n, steps)?;
    for t in steps.order(!s.reverse) {
        let mut dpt = steps.step(&dpre, t)?;
        _ = steps
            .step(d_out, t)?
            .f_add_out(&dpt, &dh.rows(steps.at(t).1)?)?;
        _ = dpt.f_mul_(&steps.step(&act_grad, t)?)?;
        dh.set(&dpt.f_mm(w.w_hh)?)?;
    }
    let (dx, grads) = sequence_grads(w, &s.x, &h_prev, &dpre, &dpre, need_dx)?;
    Ok(DirBackward {
        dx,
        dh0: dh.into_state(),
        dc0: None,
        grads,
    })
}
