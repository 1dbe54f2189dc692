//! `x W^T + b` for inference, on whichever CPU matrix-product engine is faster
//! for the shape.
//!
//! libtorch's dense products go to its BLAS (MKL); oneDNN's matmul, reached
//! through `mkldnn_linear`, was measured here (AMD EPYC, 2 threads) at about
//! twice MKL's speed for the batch-64 generation products (`[64, 320] x [320,
//! 1024]`: 134 µs against 269 µs, conversions included), but slower for a
//! single row or a narrow output, where the layout conversions dominate. Both
//! compute the same product in float32; only the rounding order differs.

use tch::{Device, Kind, Tensor};

use crate::error::Result;

/// Fewest rows for which oneDNN's product pays for its layout conversions.
const ONEDNN_MIN_ROWS: i64 = 16;
/// Narrowest output for which it does.
const ONEDNN_MIN_OUT: i64 = 512;

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
            && w.size()[0] >= ONEDNN_MIN_OUT
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
        if self.onednn && x.size()[0] >= ONEDNN_MIN_ROWS {
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
