//! One timestep of a whole stack for inference (generation): the weights are
//! rearranged once — input and recurrent matrices side by side and
//! pre-transposed, biases summed — so each token costs one matrix product and
//! a few in-place pointwise ops per layer.

use tch::Tensor;

use super::config::{Mode, RnnConfig};
use super::product::Product;
use crate::error::{Error, Result};

enum LayerWeights {
    /// `[x, h] W^T + b` gives all gates at once (LSTM, plain RNN).
    Joint {
        gates: Product,
        w_hr_t: Option<Tensor>,
    },
    /// The GRU keeps the two products apart: r scales only the recurrent one.
    Split { ih: Product, hh: Product },
}

/// A unidirectional stack prepared for stepping.
pub struct TokenStepper {
    mode: Mode,
    hidden: i64,
    layers: Vec<LayerWeights>,
}

/// The stack's state between steps: `h` `[L, B, H_out]`, `c` `[L, B, H]` for LSTM.
pub struct TokenState {
    pub h: Vec<Tensor>,
    pub c: Vec<Tensor>,
}

impl TokenStepper {
    /// `weights` in torch's flat order; checked by the caller (`check_weights`).
    pub fn new(cfg: &RnnConfig, weights: &[Tensor]) -> Result<Self> {
        if cfg.bidirectional {
            return Err(Error::value(
                "a bidirectional stack cannot be stepped forward in time",
            ));
        }
        let per = cfg.params_per_direction();
        let mut layers = Vec::new();
        for chunk in weights.chunks(per) {
            let (w_ih, w_hh) = (&chunk[0], &chunk[1]);
            let (b_ih, b_hh) = if cfg.bias {
                (Some(&chunk[2]), Some(&chunk[3]))
            } else {
                (None, None)
            };
            let w_hr = (cfg.proj_size > 0).then(|| &chunk[per - 1]);
            layers.push(match cfg.mode {
                Mode::Gru => LayerWeights::Split {
                    ih: Product::new(w_ih, b_ih.map(Tensor::shallow_clone))?,
                    hh: Product::new(w_hh, b_hh.map(Tensor::shallow_clone))?,
                },
                _ => LayerWeights::Joint {
                    gates: Product::new(
                        &Tensor::f_cat(&[w_ih, w_hh], 1)?,
                        match (b_ih, b_hh) {
                            (Some(a), Some(b)) => Some(a.f_add(b)?),
                            _ => None,
                        },
                    )?,
                    w_hr_t: w_hr.map(|w| w.f_tr()?.f_contiguous()).transpose()?,
                },
            });
        }
        Ok(TokenStepper {
            mode: cfg.mode,
            hidden: cfg.hidden_size,
            layers,
        })
    }

    /// Advances every layer by one timestep: `x` `[B, In]` -> top layer's `h` `[B, H_out]`.
    pub fn step(&self, x: &Tensor, state: &mut TokenState) -> Result<Tensor> {
        let _guard = tch::no_grad_guard();
        let hid = self.hidden;
        let mut input = x.shallow_clone();
        for (l, weights) in self.layers.iter().enumerate() {
            let h = &state.h[l];
            let h_next = match (self.mode, weights) {
                (Mode::Lstm, LayerWeights::Joint { gates, w_hr_t }) => {
                    let g = gates.apply(&Tensor::f_cat(&[&input, h], 1)?)?;
                    let _ = g.f_narrow(1, 0, 2 * hid)?.f_sigmoid_()?;
                    let (i, f) = (g.f_narrow(1, 0, hid)?, g.f_narrow(1, hid, hid)?);
                    let (mut cand, mut o) =
                        (g.f_narrow(1, 2 * hid, hid)?, g.f_narrow(1, 3 * hid, hid)?);
                    let cand = cand.f_tanh_()?;
                    let o = o.f_sigmoid_()?;
                    let mut c = f.f_mul(&state.c[l])?;
                    let _ = c.f_addcmul_(&i, &cand)?;
                    let h_full = o.f_mul(&c.f_tanh()?)?;
                    state.c[l] = c;
                    match w_hr_t {
                        Some(p) => h_full.f_mm(p)?,
                        None => h_full,
                    }
                }
                (_, LayerWeights::Joint { gates, .. }) => {
                    let mut pre = gates.apply(&Tensor::f_cat(&[&input, h], 1)?)?;
                    if self.mode == Mode::RnnRelu {
                        pre.f_relu_()?
                    } else {
                        pre.f_tanh_()?
                    }
                }
                (_, LayerWeights::Split { ih, hh }) => {
                    let gi = ih.apply(&input)?;
                    let gh = hh.apply(h)?;
                    let mut rz = gi.f_narrow(1, 0, 2 * hid)?;
                    let _ = rz.f_add_(&gh.f_narrow(1, 0, 2 * hid)?)?.f_sigmoid_()?;
                    let mut n = gi.f_narrow(1, 2 * hid, hid)?;
                    let _ =
                        n.f_addcmul_(&rz.f_narrow(1, 0, hid)?, &gh.f_narrow(1, 2 * hid, hid)?)?;
                    let _ = n.f_tanh_()?;
                    // h' = n + z ⊙ (h - n)
                    h.f_sub(&n)?
                        .f_mul_(&rz.f_narrow(1, hid, hid)?)?
                        .f_add_(&n)?
                }
            };
            state.h[l] = h_next.shallow_clone();
            input = h_next;
        }
        Ok(input)
    }
}
