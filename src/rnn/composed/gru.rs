//! One GRU direction over a whole sequence in libtorch ops, forward and backward.
//!
//! torch's gates, in the order r, z, n:
//!   r = σ(W_ir x + b_ir + W_hr h + b_hr)     z = σ(W_iz x + b_iz + W_hz h + b_hz)
//!   n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))
//!   h' = (1 - z) ⊙ n + z ⊙ h
//! The hidden-side bias of n sits inside the product with r, so the two bias
//! vectors cannot be folded together as for the LSTM.

use tch::Tensor;

use crate::error::Result;
use crate::rnn::check::empty_on;
use crate::rnn::direction::{
    dsigmoid, dtanh, mul3_into, project_inputs, sequence_grads, DirBackward, DirOutput, DirWeights,
};
use crate::rnn::saved;
use crate::rnn::steps::{Carry, Steps};

pub fn forward(
    w: &DirWeights,
    x: &Tensor,
    steps: &Steps,
    h0: &Tensor,
    reverse: bool,
) -> Result<DirOutput<saved::Gru>> {
    let rows = x.size()[0];
    let hid = w.w_hh.size()[1];
    let gates = project_inputs(x, w.w_ih, w.b_ih)?;
    let hn = empty_on(x, &[rows, hid])?;
    let out = empty_on(x, &[rows, hid])?;
    let w_hh_t = w.w_hh.f_tr()?;
    let mut state = Carry::new(h0, steps)?;
    for t in steps.order(reverse) {
        let h_prev = state.rows(steps.at(t).1)?;
        let hg = match w.b_hh {
            Some(b) => b.f_addmm(&h_prev, &w_hh_t)?,
            None => h_prev.f_mm(&w_hh_t)?,
        };
        let g = steps.step(&gates, t)?;
        let mut rz = g.f_narrow(1, 0, 2 * hid)?;
        _ = rz.f_add_(&hg.f_narrow(1, 0, 2 * hid)?)?;
        _ = rz.f_sigmoid_()?;
        let r = g.f_narrow(1, 0, hid)?;
        let z = g.f_narrow(1, hid, hid)?;
        let mut hnt = steps.step(&hn, t)?;
        hnt.f_copy_(&hg.f_narrow(1, 2 * hid, hid)?)?;
        let mut n = g.f_narrow(1, 2 * hid, hid)?;
        _ = n.f_addcmul_(&r, &hnt)?;
        _ = n.f_tanh_()?;
        // h' = n + z ⊙ (h - n)
        let mut ht = steps.step(&out, t)?;
        _ = h_prev.f_sub_out(&ht, &n)?;
        _ = ht.f_mul_(&z)?;
        _ = ht.f_add_(&n)?;
        state.set(&ht)?;
    }
    Ok(DirOutput {
        out: out.shallow_clone(),
        h_n: state.into_state(),
        c_n: None,
        saved: saved::Gru {
            x: x.shallow_clone(),
            gates,
            hn,
            out,
            h0: h0.shallow_clone(),
            steps: steps.clone(),
            reverse,
        },
    })
}

pub fn backward(
    w: &DirWeights,
    s: &saved::Gru,
    d_out: &Tensor,
    dh_n: &Tensor,
    need_dx: bool,
) -> Result<DirBackward> {
    let steps = &s.steps;
    let h_prev_all = steps.previous(&s.out, &s.h0, s.reverse)?;
    let dgx = s.gates.f_zeros_like()?;
    let dgh = s.gates.f_zeros_like()?;
    let mut dh = Carry::new(dh_n, steps)?;
    for t in steps.order(!s.reverse) {
        let dht = steps.step(d_out, t)?.f_add(&dh.rows(steps.at(t).1)?)?;
        let g = steps.step(&s.gates, t)?.f_chunk(3, 1)?;
        let (r, z, n) = (&g[0], &g[1], &g[2]);
        let h_prev = steps.step(&h_prev_all, t)?;
        let hnt = steps.step(&s.hn, t)?;
        let dgh_t = steps.step(&dgh, t)?;
        let dx_g = steps.step(&dgx, t)?.f_chunk(3, 1)?;
        let dh_g = dgh_t.f_chunk(3, 1)?;
        // dn_pre = dh ⊙ (1 - z) ⊙ (1 - n²)
        mul3_into(&dx_g[2], &dht, &z.f_rsub_scalar(1.0)?, &dtanh(n)?)?;
        // dr_pre = dn_pre ⊙ hn ⊙ σ'(r)
        mul3_into(&dx_g[0], &dx_g[2], &hnt, &dsigmoid(r)?)?;
        // dz_pre = dh ⊙ (h - n) ⊙ σ'(z)
        mul3_into(&dx_g[1], &dht, &h_prev.f_sub(n)?, &dsigmoid(z)?)?;
        dh_g[0].shallow_clone().f_copy_(&dx_g[0])?;
        dh_g[1].shallow_clone().f_copy_(&dx_g[1])?;
        _ = dx_g[2].f_mul_out(&dh_g[2], r)?;
        dh.set(&dgh_t.f_mm(w.w_hh)?.f_addcmul_(&dht, z)?)?;
    }
    let (dx, grads) = sequence_grads(w, &s.x, &h_prev_all, &dgx, &dgh, need_dx)?;
    Ok(DirBackward {
        dx,
        dh0: dh.into_state(),
        dc0: None,
        grads,
    })
}
