//! What every engine shares: the weights of one layer in one direction,
//! the time order, and the sequence-wide matrix products that turn per-step
//! gate gradients into weight and input gradients.

use tch::Tensor;

use super::product;

use crate::error::{Error, Result};

/// One layer's parameters in one direction, in torch's order.
pub struct DirWeights<'a> {
    pub w_ih: &'a Tensor,
    pub w_hh: &'a Tensor,
    pub b_ih: Option<&'a Tensor>,
    pub b_hh: Option<&'a Tensor>,
    pub w_hr: Option<&'a Tensor>,
}

impl<'a> DirWeights<'a> {
    /// Picks the `params_per_direction` tensors starting at `chunk[0]`.
    pub fn from_slice(chunk: &'a [Tensor], bias: bool, proj: bool) -> Self {
        let (b_ih, b_hh) = if bias {
            (Some(&chunk[2]), Some(&chunk[3]))
        } else {
            (None, None)
        };
        let w_hr = proj.then(|| &chunk[if bias { 4 } else { 2 }]);
        DirWeights {
            w_ih: &chunk[0],
            w_hh: &chunk[1],
            b_ih,
            b_hh,
            w_hr,
        }
    }
}

/// Gradients of one layer-direction's parameters, in torch's order.
pub struct DirGrads {
    pub w_ih: Tensor,
    pub w_hh: Tensor,
    pub b_ih: Option<Tensor>,
    pub b_hh: Option<Tensor>,
    pub w_hr: Option<Tensor>,
}

impl DirGrads {
    pub fn into_vec(self) -> Vec<Tensor> {
        let mut v = vec![self.w_ih, self.w_hh];
        v.extend(self.b_ih);
        v.extend(self.b_hh);
        v.extend(self.w_hr);
        v
    }
}

/// Result of running one direction forward over a sequence.
pub struct DirOutput<S> {
    /// `[N, H_out]`, one row per token in the batch's step order (also for
    /// the reverse direction).
    pub out: Tensor,
    /// Each sequence's last state `[B, H_out]` (and cell state).
    pub h_n: Tensor,
    pub c_n: Option<Tensor>,
    /// Activations kept for the backward pass.
    pub saved: S,
}

impl<S> DirOutput<S> {
    /// The same output with its saved activations wrapped by `f`.
    pub fn map_saved<T>(self, f: impl FnOnce(S) -> T) -> DirOutput<T> {
        DirOutput {
            out: self.out,
            h_n: self.h_n,
            c_n: self.c_n,
            saved: f(self.saved),
        }
    }
}

/// Gradients flowing out of one direction's backward pass.
pub struct DirBackward {
    pub dx: Option<Tensor>,
    pub dh0: Tensor,
    pub dc0: Option<Tensor>,
    pub grads: DirGrads,
}

/// The gradient of an LSTM's last cell state, which every engine's LSTM
/// backward needs (the stack checked that it was given).
pub fn lstm_dc(dc_n: Option<&Tensor>) -> Result<&Tensor> {
    dc_n.ok_or_else(|| Error::shape("LSTM backward needs the gradient of c_n"))
}

/// `x W^T + b` for every row at once: `[N, In] -> [N, G]`.
pub fn project_inputs(x: &Tensor, w: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    Ok(match bias {
        Some(b) => b.f_addmm(x, &w.f_tr()?)?,
        None => x.f_mm(&w.f_tr()?)?,
    })
}

/// The sum of both biases, which LSTM and plain RNNs may add once up front.
pub fn bias_sum(w: &DirWeights) -> Result<Option<Tensor>> {
    Ok(match (w.b_ih, w.b_hh) {
        (Some(a), Some(b)) => Some(a.f_add(b)?),
        _ => None,
    })
}

/// Weight, bias and input gradients from gate gradients of all rows, as
/// a handful of large matrix products instead of one small one per step.
/// Returns the input gradient and the parameter gradients (`w_hr` left unset).
///
/// `dgx` are the gradients of the input-side pre-activations, `dgh` of the
/// hidden-side ones (the same tensor except for the GRU's candidate gate);
/// every tensor is `[N, *]`, one row per token.
pub fn sequence_grads(
    w: &DirWeights,
    x: &Tensor,
    h_prev: &Tensor,
    dgx: &Tensor,
    dgh: &Tensor,
    need_dx: bool,
) -> Result<(Option<Tensor>, DirGrads)> {
    let db_ih = match w.b_ih {
        Some(_) => Some(dgx.f_sum_dim_intlist(0, false, None)?),
        None => None,
    };
    let db_hh = match w.b_hh {
        Some(_) => Some(dgh.f_sum_dim_intlist(0, false, None)?),
        None => None,
    };
    let (dw_ih, dw_hh, dx) = product::sequence_grads(w.w_ih, w.w_hh, x, h_prev, dgx, dgh, need_dx)?;
    let grads = DirGrads {
        w_ih: dw_ih,
        w_hh: dw_hh,
        b_ih: db_ih,
        b_hh: db_hh,
        w_hr: None,
    };
    Ok((dx, grads))
}

/// `s ⊙ (1 - s)`: the derivative of σ at the point where it returned `s`.
pub fn dsigmoid(s: &Tensor) -> Result<Tensor> {
    Ok(s.f_rsub_scalar(1.0)?.f_mul_(s)?)
}

/// `1 - t²`: the derivative of tanh at the point where it returned `t`.
pub fn dtanh(t: &Tensor) -> Result<Tensor> {
    Ok(t.f_mul(t)?.f_rsub_scalar(1.0)?)
}

/// `dst = a ⊙ b ⊙ c`, written into a view of a larger gradient buffer.
pub fn mul3_into(dst: &Tensor, a: &Tensor, b: &Tensor, c: &Tensor) -> Result<()> {
    let mut dst = dst.shallow_clone();
    _ = a.f_mul_out(&dst, b)?;
    _ = dst.f_mul_(c)?;
    Ok(())
}
