//! The one place that chooses a CPU matrix-product engine: libtorch's BLAS
//! (MKL) or oneDNN's matmul (through `mkldnn_linear` and its weight
//! backward), for the inference products `x W^T + b` ([`Product`]) and the
//! sequence-wide gradient products of a recurrence ([`sequence_grads`]).
//!
//! oneDNN was measured here (AMD EPYC, 2 threads) at about twice MKL's speed
//! for many-row float32 products, layout conversions included: the batch-64
//! generation product `[64, 320] x [320, 1024]` 134 µs against 269 µs,
//! `[2048, 768] x [768, 256]` 1.9 ms against 3.6 ms, and a weight gradient
//! `[881, 1024]^T x [881, 256]` 1.2 ms against 2.3 ms. For few rows or a
//! narrow output the conversions dominate and MKL wins. Both engines compute
//! the same product in float32; only the rounding order differs.

use tch::{Device, Kind, Tensor};

use crate::error::Result;
use crate::float::float_cpu;

/// Fewest rows for which oneDNN's forward product pays for converting the
/// input (the weight is converted once, in [`Product::new`]).
const FORWARD_MIN_ROWS: i64 = 16;
/// Narrowest output for which it does.
const FORWARD_MIN_OUT: i64 = 512;
/// Fewest rows for which the gradient products pay for converting the gate
/// gradients and the inputs (all of them, every backward pass).
const GRADIENT_MIN_ROWS: i64 = 256;

/// A weight prepared once for many products.
pub struct Product {
    /// `[out, in]`, as torch stores it (what `mkldnn_linear` takes).
    w: Tensor,
    /// `[in, out]`, contiguous (what `addmm` reads fastest).
    w_t: Tensor,
    bias: Option<Tensor>,
    onednn: bool,
}

impl Product {
    pub fn new(w: &Tensor, bias: Option<Tensor>) -> Result<Self> {
        let onednn = w.device() == Device::Cpu
            && w.f_kind()? == Kind::Float
            && w.size().first().is_some_and(|&out| out >= FORWARD_MIN_OUT)
            && tch::utils::has_mkldnn();
        Ok(Product {
            w: w.f_contiguous()?,
            w_t: w.f_tr()?.f_contiguous()?,
            bias,
            onednn,
        })
    }

    /// `x W^T + b` for `x` `[rows, in]`.
    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        if self.onednn && rows(x) >= FORWARD_MIN_ROWS {
            let y = x
                .f_contiguous()?
                .f_to_mkldnn(None)?
                .f_mkldnn_linear(&self.w, self.bias.as_ref())?;
            return Ok(y.f_to_dense(None, false)?);
        }
        Ok(match &self.bias {
            Some(b) => b.f_addmm(x, &self.w_t)?,
            None => x.f_mm(&self.w_t)?,
        })
    }
}

fn rows(t: &Tensor) -> i64 {
    t.size().first().copied().unwrap_or(0)
}

fn onednn_rows(t: &Tensor) -> bool {
    rows(t) >= GRADIENT_MIN_ROWS && float_cpu(t) && tch::utils::has_mkldnn()
}

/// A recurrence's weight and input gradients from the gate gradients of all
/// its rows: `(dW_ih, dW_hh, dx)` = `(dgx^T x, dgh^T h_prev, dgx W_ih)`, the
/// last only when `need_dx`. Every tensor is `[N, *]`, one row per token.
pub fn sequence_grads(
    w_ih: &Tensor,
    w_hh: &Tensor,
    x: &Tensor,
    h_prev: &Tensor,
    dgx: &Tensor,
    dgh: &Tensor,
    need_dx: bool,
) -> Result<(Tensor, Tensor, Option<Tensor>)> {
    if onednn_rows(dgx) && onednn_rows(x) && float_cpu(h_prev) {
        // The gate gradients are converted once and serve every product.
        let gx = dgx.f_contiguous()?.f_to_mkldnn(None)?;
        let gh = if dgh.data_ptr() == dgx.data_ptr() {
            gx.shallow_clone()
        } else {
            dgh.f_contiguous()?.f_to_mkldnn(None)?
        };
        let dw = |g: &Tensor, input: &Tensor, weight: &Tensor| -> Result<Tensor> {
            let input = input.f_contiguous()?.f_to_mkldnn(None)?;
            Ok(input.f_mkldnn_linear_backward_weights(g, weight, false)?.0)
        };
        let dx = if need_dx {
            let w_t = w_ih.f_tr()?.f_contiguous()?;
            Some(
                gx.f_mkldnn_linear(&w_t, None::<Tensor>)?
                    .f_to_dense(None, false)?,
            )
        } else {
            None
        };
        return Ok((dw(&gx, x, w_ih)?, dw(&gh, h_prev, w_hh)?, dx));
    }
    let dx = if need_dx { Some(dgx.f_mm(w_ih)?) } else { None };
    Ok((dgx.f_tr()?.f_mm(x)?, dgh.f_tr()?.f_mm(h_prev)?, dx))
}
