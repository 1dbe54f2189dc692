//! One LSTM direction over a whole sequence, forward and backward.
//!
//! Gates in torch's order i, f, g, o:
//!   i = σ(W_ii x + b_ii + W_hi h + b_hi)   f = σ(...)   g = tanh(...)   o = σ(...)
//!   c' = f ⊙ c + i ⊙ g,   h' = o ⊙ tanh(c')   (then h' = W_hr h' with a projection)
//! The input projection of every timestep is one matrix product up front; each
//! step adds its recurrent product in place and activates the gates in place.

use tch::Tensor;

use super::direction::{
    bias_sum, dsigmoid, dtanh, mul3_into, previous_states, project_inputs, sequence_grads,
    time_order, DirBackward, DirOutput, DirWeights,
};
use crate::error::Result;

pub struct Saved {
    x: Tensor,
    /// Activated gates `[T, B, 4H]`.
    gates: Tensor,
    /// Cell states after each step `[T, B, H]`.
    c: Tensor,
    /// `tanh(c)` `[T, B, H]`.
    tc: Tensor,
    /// Unprojected hidden states `[T, B, H]` when projecting.
    hf: Option<Tensor>,
    out: Tensor,
    h0: Tensor,
    c0: Tensor,
    reverse: bool,
}

pub fn forward(
    w: &DirWeights,
    x: &Tensor,
    h0: &Tensor,
    c0: &Tensor,
    reverse: bool,
) -> Result<DirOutput<Saved>> {
    let (len, batch) = (x.size()[0], x.size()[1]);
    let hid = w.w_hh.size()[0] / 4;
    let opts = (x.f_kind()?, x.device());
    let gates = project_inputs(x, w.w_ih, bias_sum(w)?.as_ref())?;
    let c = Tensor::f_empty([len, batch, hid], opts)?;
    let tc = Tensor::f_empty([len, batch, hid], opts)?;
    let hf = match w.w_hr {
        Some(_) => Some(Tensor::f_empty([len, batch, hid], opts)?),
        None => None,
    };
    let out = Tensor::f_empty([len, batch, h0.size()[1]], opts)?;
    let w_hh_t = w.w_hh.f_tr()?;
    let w_hr_t = match w.w_hr {
        Some(p) => Some(p.f_tr()?),
        None => None,
    };
    let mut h_prev = h0.shallow_clone();
    let mut c_prev = c0.shallow_clone();
    for t in time_order(len, reverse) {
        let mut g = gates.f_select(0, t)?;
        _ = g.f_addmm_(&h_prev, &w_hh_t)?;
        _ = g.f_narrow(1, 0, 2 * hid)?.f_sigmoid_()?;
        _ = g.f_narrow(1, 2 * hid, hid)?.f_tanh_()?;
        _ = g.f_narrow(1, 3 * hid, hid)?.f_sigmoid_()?;
        let gs = g.f_chunk(4, 1)?;
        let (i, f, gg, o) = (&gs[0], &gs[1], &gs[2], &gs[3]);
        let mut ct = c.f_select(0, t)?;
        _ = f.f_mul_out(&ct, &c_prev)?;
        _ = ct.f_addcmul_(i, gg)?;
        let tct = tc.f_select(0, t)?;
        _ = ct.f_tanh_out(&tct)?;
        let ht = out.f_select(0, t)?;
        match (&hf, &w_hr_t) {
            (Some(hf), Some(w_hr_t)) => {
                let hft = hf.f_select(0, t)?;
                _ = o.f_mul_out(&hft, &tct)?;
                _ = hft.f_mm_out(&ht, w_hr_t)?;
            }
            _ => {
                _ = o.f_mul_out(&ht, &tct)?;
            }
        }
        h_prev = ht;
        c_prev = ct;
    }
    Ok(DirOutput {
        out: out.shallow_clone(),
        h_n: h_prev,
        c_n: Some(c_prev),
        saved: Saved {
            x: x.shallow_clone(),
            gates,
            c,
            tc,
            hf,
            out,
            h0: h0.shallow_clone(),
            c0: c0.shallow_clone(),
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
    need_dx: bool,
) -> Result<DirBackward> {
    let len = s.x.size()[0];
    let hid = w.w_hh.size()[0] / 4;
    let dgates = s.gates.f_zeros_like()?;
    let dh_all = match w.w_hr {
        Some(_) => Some(d_out.f_zeros_like()?),
        None => None,
    };
    let mut dh = dh_n.shallow_clone();
    let mut dc = dc_n.shallow_clone();
    for t in time_order(len, !s.reverse) {
        let prev_t = if s.reverse { t + 1 } else { t - 1 };
        let c_prev = if prev_t < 0 || prev_t >= len {
            s.c0.shallow_clone()
        } else {
            s.c.f_select(0, prev_t)?
        };
        let dht = d_out.f_select(0, t)?.f_add(&dh)?;
        let dhf = match (w.w_hr, &dh_all) {
            (Some(w_hr), Some(all)) => {
                all.f_select(0, t)?.f_copy_(&dht)?;
                dht.f_mm(w_hr)?
            }
            _ => dht,
        };
        let g = s.gates.f_select(0, t)?.f_chunk(4, 1)?;
        let (i, f, gg, o) = (&g[0], &g[1], &g[2], &g[3]);
        let tct = s.tc.f_select(0, t)?;
        // dc += dh ⊙ o ⊙ (1 - tanh²(c))
        let dct = dhf.f_mul(o)?.f_mul_(&dtanh(&tct)?)?.f_add_(&dc)?;
        let dg = dgates.f_select(0, t)?.f_chunk(4, 1)?;
        mul3_into(&dg[0], &dct, gg, &dsigmoid(i)?)?;
        mul3_into(&dg[1], &dct, &c_prev, &dsigmoid(f)?)?;
        mul3_into(&dg[2], &dct, i, &dtanh(gg)?)?;
        mul3_into(&dg[3], &dhf, &tct, &dsigmoid(o)?)?;
        dc = dct.f_mul(f)?;
        dh = dgates.f_select(0, t)?.f_mm(w.w_hh)?;
    }
    let h_prev = previous_states(&s.out, &s.h0, s.reverse)?;
    let (dx, mut grads) = sequence_grads(w, &s.x, &h_prev, &dgates, &dgates, need_dx)?;
    if let (Some(dh_all), Some(hf)) = (&dh_all, &s.hf) {
        let (rows, p) = (dh_all.size()[0] * dh_all.size()[1], dh_all.size()[2]);
        let dh2 = dh_all.f_reshape([rows, p])?;
        grads.w_hr = Some(dh2.f_tr()?.f_mm(&hf.f_reshape([rows, hid])?)?);
    }
    Ok(DirBackward {
        dx,
        dh0: dh,
        dc0: Some(dc),
        grads,
    })
}

impl Saved {
    pub fn shallow_clone(&self) -> Saved {
        Saved {
            x: self.x.shallow_clone(),
            gates: self.gates.shallow_clone(),
            c: self.c.shallow_clone(),
            tc: self.tc.shallow_clone(),
            hf: self.hf.as_ref().map(Tensor::shallow_clone),
            out: self.out.shallow_clone(),
            h0: self.h0.shallow_clone(),
            c0: self.c0.shallow_clone(),
            reverse: self.reverse,
        }
    }
}
