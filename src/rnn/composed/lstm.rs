//! One LSTM direction over a whole sequence in libtorch ops, forward and backward.
//!
//! Gates in torch's order i, f, g, o:
//!   i = σ(W_ii x + b_ii + W_hi h + b_hi)   f = σ(...)   g = tanh(...)   o = σ(...)
//!   c' = f ⊙ c + i ⊙ g,   h' = o ⊙ tanh(c')   (then h' = W_hr h' with a projection)
//! The input projection of every timestep is one matrix product up front; each
//! step adds its recurrent product in place and activates the gates in place.

use tch::Tensor;

use crate::error::Result;
use crate::rnn::check::empty_on;
use crate::rnn::direction::{
    bias_sum, dsigmoid, dtanh, mul3_into, project_inputs, sequence_grads, DirBackward, DirOutput,
    DirWeights,
};
use crate::rnn::saved;
use crate::rnn::steps::{Carry, Steps};

pub fn forward(
    w: &DirWeights,
    x: &Tensor,
    steps: &Steps,
    h0: &Tensor,
    c0: &Tensor,
    reverse: bool,
) -> Result<DirOutput<saved::Lstm>> {
    let rows = x.size()[0];
    let hid = w.w_hh.size()[0] / 4;
    let gates = project_inputs(x, w.w_ih, bias_sum(w)?.as_ref())?;
    let c = empty_on(x, &[rows, hid])?;
    let tc = empty_on(x, &[rows, hid])?;
    let hf = match w.w_hr {
        Some(_) => Some(empty_on(x, &[rows, hid])?),
        None => None,
    };
    let out = empty_on(x, &[rows, h0.size()[1]])?;
    let w_hh_t = w.w_hh.f_tr()?;
    let w_hr_t = match w.w_hr {
        Some(p) => Some(p.f_tr()?),
        None => None,
    };
    let mut h_prev = Carry::new(h0, steps)?;
    let mut c_prev = Carry::new(c0, steps)?;
    for t in steps.order(reverse) {
        let n = steps.at(t).1;
        let mut g = steps.step(&gates, t)?;
        _ = g.f_addmm_(&h_prev.rows(n)?, &w_hh_t)?;
        _ = g.f_narrow(1, 0, 2 * hid)?.f_sigmoid_()?;
        _ = g.f_narrow(1, 2 * hid, hid)?.f_tanh_()?;
        _ = g.f_narrow(1, 3 * hid, hid)?.f_sigmoid_()?;
        let gs = g.f_chunk(4, 1)?;
        let (i, f, gg, o) = (&gs[0], &gs[1], &gs[2], &gs[3]);
        let mut ct = steps.step(&c, t)?;
        _ = f.f_mul_out(&ct, &c_prev.rows(n)?)?;
        _ = ct.f_addcmul_(i, gg)?;
        let tct = steps.step(&tc, t)?;
        _ = ct.f_tanh_out(&tct)?;
        let ht = steps.step(&out, t)?;
        match (&hf, &w_hr_t) {
            (Some(hf), Some(w_hr_t)) => {
                let hft = steps.step(hf, t)?;
                _ = o.f_mul_out(&hft, &tct)?;
                _ = hft.f_mm_out(&ht, w_hr_t)?;
            }
            _ => {
                _ = o.f_mul_out(&ht, &tct)?;
            }
        }
        h_prev.set(&ht)?;
        c_prev.set(&ct)?;
    }
    Ok(DirOutput {
        out: out.shallow_clone(),
        h_n: h_prev.into_state(),
        c_n: Some(c_prev.into_state()),
        saved: saved::Lstm {
            x: x.shallow_clone(),
            gates,
            c,
            tc,
            hf,
            out,
            h0: h0.shallow_clone(),
            c0: c0.shallow_clone(),
            steps: steps.clone(),
            reverse,
        },
    })
}

pub fn backward(
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
    let dgates = s.gates.f_zeros_like()?;
    let dh_all = match w.w_hr {
        Some(_) => Some(d_out.f_zeros_like()?),
        None => None,
    };
    let mut dh = Carry::new(dh_n, steps)?;
    let mut dc = Carry::new(dc_n, steps)?;
    for t in steps.order(!s.reverse) {
        let n = steps.at(t).1;
        let c_prev = steps.step(&c_prev_all, t)?;
        let dht = steps.step(d_out, t)?.f_add(&dh.rows(n)?)?;
        let dhf = match (w.w_hr, &dh_all) {
            (Some(w_hr), Some(all)) => {
                steps.step(all, t)?.f_copy_(&dht)?;
                dht.f_mm(w_hr)?
            }
            _ => dht,
        };
        let g = steps.step(&s.gates, t)?.f_chunk(4, 1)?;
        let (i, f, gg, o) = (&g[0], &g[1], &g[2], &g[3]);
        let tct = steps.step(&s.tc, t)?;
        // dc += dh ⊙ o ⊙ (1 - tanh²(c))
        let dct = dhf.f_mul(o)?.f_mul_(&dtanh(&tct)?)?.f_add_(&dc.rows(n)?)?;
        let dgt = steps.step(&dgates, t)?;
        let dg = dgt.f_chunk(4, 1)?;
        mul3_into(&dg[0], &dct, gg, &dsigmoid(i)?)?;
        mul3_into(&dg[1], &dct, &c_prev, &dsigmoid(f)?)?;
        mul3_into(&dg[2], &dct, i, &dtanh(gg)?)?;
        mul3_into(&dg[3], &dhf, &tct, &dsigmoid(o)?)?;
        dc.set(&dct.f_mul(f)?)?;
        dh.set(&dgt.f_mm(w.w_hh)?)?;
    }
    let (dx, mut grads) = sequence_grads(w, &s.x, &h_prev, &dgates, &dgates, need_dx)?;
    if let (Some(dh_all), Some(hf)) = (&dh_all, &s.hf) {
        grads.w_hr = Some(dh_all.f_tr()?.f_mm(hf)?);
    }
    Ok(DirBackward {
        dx,
        dh0: dh.into_state(),
        dc0: Some(dc.into_state()),
        grads,
    })
}
