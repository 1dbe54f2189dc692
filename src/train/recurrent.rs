//! The recurrent stack as a training step runs it, with AWD-LSTM's two
//! stack-level methods: DropConnect on the hidden-to-hidden matrices (weight
//! drop) and a locked dropout mask between layers.
//!
//! Weight drop needs no engine of its own: the stack runs on the masked
//! matrices `W' = W * m` (every engine — fused, oneDNN, composed, libtorch —
//! takes them as it takes any weights), and the raw matrix's gradient is
//! `dW = dW' * m`, exact. A locked mask between layers runs the stack one
//! layer at a time (each a one-layer stack with its own tape), as AWD-LSTM
//! runs one `nn.LSTM` per layer.

use tch::Tensor;

use super::regularize::{locked_mask, Regularization};
use super::State;
use crate::dropout;
use crate::error::{Error, Result};
use crate::rnn::{stack, RnnConfig};

/// One forward, ready for its backward.
pub struct Forward {
    pub output: Tensor,
    pub h_n: Tensor,
    pub c_n: Option<Tensor>,
    /// One tape for the whole stack, or one per layer.
    tapes: Vec<stack::Tape>,
    /// Per tape: the locked mask applied to its output (none after the last
    /// layer, or when the stack ran whole).
    between: Vec<Option<Tensor>>,
    /// Per tape: zero gradients of its final states.
    zeros: Vec<(Tensor, Option<Tensor>)>,
    /// Per stack weight: its weight-drop mask, if it has one.
    drop_masks: Vec<Option<Tensor>>,
}

/// Layer `l` alone, as a one-layer stack.
fn layer_config(cfg: &RnnConfig, l: i64) -> RnnConfig {
    RnnConfig {
        input_size: if l == 0 {
            cfg.input_size
        } else {
            cfg.real_hidden_size() * cfg.num_directions()
        },
        num_layers: 1,
        dropout: 0.0,
        ..cfg.clone()
    }
}

/// The stack weights with each `weight_hh` matrix drop-connected (masks
/// drawn layer by layer), and the masks.
fn drop_connect(
    cfg: &RnnConfig,
    weights: &[Tensor],
    p: f64,
) -> Result<(Vec<Tensor>, Vec<Option<Tensor>>)> {
    if p <= 0.0 {
        return Ok((
            weights.iter().map(Tensor::shallow_clone).collect(),
            weights.iter().map(|_| None).collect(),
        ));
    }
    let specs = cfg.param_specs();
    if specs.len() != weights.len() {
        return Err(Error::shape(format!(
            "the stack has {} weights, its config names {}",
            weights.len(),
            specs.len()
        )));
    }
    let mut used = Vec::with_capacity(weights.len());
    let mut masks = Vec::with_capacity(weights.len());
    for (spec, w) in specs.iter().zip(weights) {
        if spec.name.starts_with("weight_hh") {
            let m = dropout::mask(w, p)?;
            used.push(w.f_mul(&m)?);
            masks.push(Some(m));
        } else {
            used.push(w.shallow_clone());
            masks.push(None);
        }
    }
    Ok((used, masks))
}

/// Runs the stack over `x` `[T, B, E]` from `state`, in training mode.
pub fn forward(
    cfg: &RnnConfig,
    weights: &[Tensor],
    x: &Tensor,
    state: &State,
    reg: &Regularization,
) -> Result<Forward> {
    let (used, drop_masks) = drop_connect(cfg, weights, reg.weight_drop)?;
    let Some(p_between) = reg.dropout_hidden else {
        let out = stack::forward(
            cfg,
            x,
            None,
            Some(&state.h),
            state.c.as_ref(),
            &used,
            true,
            true,
        )?;
        let tape = out
            .tape
            .ok_or_else(|| Error::shape("the stack kept no tape"))?;
        return Ok(Forward {
            zeros: vec![zero_grads(&out.h_n, out.c_n.as_ref())?],
            output: out.output,
            h_n: out.h_n,
            c_n: out.c_n,
            tapes: vec![tape],
            between: vec![None],
            drop_masks,
        });
    };
    let dirs = cfg.num_directions();
    let per_layer = cfg.params_per_direction() * dirs as usize;
    let mut input = x.shallow_clone();
    let (mut tapes, mut between, mut zeros) = (vec![], vec![], vec![]);
    let (mut h_n, mut c_n) = (vec![], vec![]);
    for l in 0..cfg.num_layers {
        let lc = layer_config(cfg, l);
        let from = l as usize * per_layer;
        let w = used
            .get(from..from + per_layer)
            .ok_or_else(|| Error::shape("the stack has too few weights for its layers"))?;
        let h0 = state.h.f_narrow(0, l * dirs, dirs)?;
        let c0 = state
            .c
            .as_ref()
            .map(|c| c.f_narrow(0, l * dirs, dirs))
            .transpose()?;
        let out = stack::forward(&lc, &input, None, Some(&h0), c0.as_ref(), w, true, true)?;
        tapes.push(
            out.tape
                .ok_or_else(|| Error::shape("the stack kept no tape"))?,
        );
        zeros.push(zero_grads(&out.h_n, out.c_n.as_ref())?);
        h_n.push(out.h_n);
        c_n.extend(out.c_n);
        input = if l + 1 < cfg.num_layers && p_between > 0.0 {
            let m = locked_mask(&out.output, p_between)?;
            let y = out.output.f_mul(&m)?;
            between.push(Some(m));
            y
        } else {
            between.push(None);
            out.output
        };
    }
    Ok(Forward {
        output: input,
        h_n: Tensor::f_cat(&h_n, 0)?,
        c_n: if c_n.is_empty() {
            None
        } else {
            Some(Tensor::f_cat(&c_n, 0)?)
        },
        tapes,
        between,
        zeros,
        drop_masks,
    })
}

/// Zero gradients for a forward's final states: nothing flows back into the
/// state carried in from the previous window.
fn zero_grads(h_n: &Tensor, c_n: Option<&Tensor>) -> Result<(Tensor, Option<Tensor>)> {
    Ok((
        h_n.f_zeros_like()?,
        c_n.map(Tensor::f_zeros_like).transpose()?,
    ))
}

impl Forward {
    /// The gradients of the stack's input and of its raw weights (torch's
    /// flat order), from the gradient of its output; nothing flows into the
    /// carried state.
    pub fn backward(self, d_output: &Tensor) -> Result<(Tensor, Vec<Tensor>)> {
        let mut d = d_output.shallow_clone();
        let mut per_layer: Vec<Vec<Tensor>> = Vec::with_capacity(self.tapes.len());
        for ((tape, (d_hn, d_cn)), m) in self.tapes.iter().zip(&self.zeros).zip(&self.between).rev()
        {
            if let Some(m) = m {
                d = d.f_mul(m)?;
            }
            let g = stack::backward(tape, &d, d_hn, d_cn.as_ref(), true)?;
            per_layer.push(g.weights);
            d = g
                .input
                .ok_or_else(|| Error::shape("the stack returned no input gradient"))?;
        }
        let mut grads: Vec<Tensor> = per_layer.into_iter().rev().flatten().collect();
        for (g, m) in grads.iter_mut().zip(&self.drop_masks) {
            if let Some(m) = m {
                *g = g.f_mul(m)?;
            }
        }
        Ok((d, grads))
    }
}
