//! The one pass over row chunks that every head computation runs. Per chunk
//! of `k` rows, in one `[k, V]` buffer allocated once:
//!
//! ```text
//! z    = x_c W^T + b,  m = max_j z,  e = exp(z - m),  s = sum_j e
//! log p(y) = z_y - m - ln s
//! ```
//!
//! and, for gradients with row weights `r`, with `q = r / s`:
//!
//! ```text
//! e[y] -= s                  (so e / s = softmax(z) - onehot(y))
//! d_x_c  = q * (e W)          [k, H]
//! d_w   += e^T (q * x_c)      [V, H], accumulated in place
//! d_b   += e^T q              [V]
//! ```
//!
//! The normalisation `1 / s` and the row weights travel on the `[k, H]` sides
//! and into the bias's matrix-vector product, never over `e`: no division
//! pass over `k x V`, and no second `[k, V]` buffer for a log-softmax.

// Values from Python reach this module: no index or slice may panic.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use tch::Tensor;

use super::check::Operands;
use super::packed::{self, PackedHead};
use super::rows;
use super::{Grads, Needs};
use crate::error::Result;
use crate::kernel::block::Isa;
use crate::kernel::team;

/// Rows per chunk: as many as [`CHUNK_ELEMENTS`] allows, between these
/// bounds. Measured here (`bench/bench_head.py --chunks 128,256,512`, 2
/// threads, float32, N x H x V in {700, 2240} x {200, 650} x {10,000,
/// 33,278}): 128 rows ran 0.94-1.23x the unchunked torch ops, 256 rows
/// 0.96-1.22x, 512 rows 1.00-1.27x. The three products are nearly all of the
/// time at H = 650 (they run near the cores' peak), and they lose a little
/// on short chunks (each chunk also reads and writes all of `d_w`); at
/// H = 200 the passes over the chunk, in cache, are what beats torch. oneDNN's
/// products (`rnn::product`) were slower than MKL's for all of these shapes:
/// converting the `[k, V]` output back to a dense tensor costs more than
/// oneDNN saves.
const MIN_ROWS: i64 = 64;
const MAX_ROWS: i64 = 512;
/// Elements of the `[k, V]` buffer: 8 Mi, 32 MiB in float32 (252 rows of a
/// 33,278-word vocabulary, where a window of 700 tokens has 89 MiB of logits
/// and autograd keeps two or three tensors that size). 512 rows there ran
/// 1-2% faster, for twice the memory.
const CHUNK_ELEMENTS: i64 = 1 << 23;

/// The rows of one chunk for `n` rows of `v` classes (at least 1).
pub fn chunk_rows(n: i64, v: i64) -> i64 {
    (CHUNK_ELEMENTS / v.max(1))
        .clamp(MIN_ROWS, MAX_ROWS)
        .min(n)
        .max(1)
}

/// How a chunk's logits become `log p(y)`, `e` and `q`: decided once per pass.
enum Walk<'a> {
    /// Float32 on the CPU: the work between the products in one walk per row
    /// (`rows`).
    Rows {
        /// `[N]`, contiguous.
        y: Tensor,
        /// `[V]`, contiguous; `None` also where the packed head adds it.
        bias: Option<Tensor>,
        /// The forward product on the fused kernels' tile (`packed`), where
        /// it applies (AVX-512); then the backward products run on
        /// `kernel::gemm`.
        packed: Option<Packed<'a>>,
        /// `[rows, 1]`, for `q` with gradients.
        q: Option<Tensor>,
    },
    /// Elsewhere: the same arithmetic as libtorch ops.
    Ops {
        /// `[rows, V]`, the bias broadcast for `addmm`.
        bias: Option<Tensor>,
    },
}

/// The caller's packed head, or this pass's own.
enum Packed<'a> {
    Given(&'a PackedHead),
    Own(PackedHead),
}

impl Packed<'_> {
    fn head(&self) -> &PackedHead {
        match self {
            Packed::Given(p) => p,
            Packed::Own(p) => p,
        }
    }
}

impl<'a> Walk<'a> {
    fn new(op: &Operands<'a>, r: Option<&Tensor>, isa: Isa, threads: usize) -> Result<Walk<'a>> {
        let opts = (op.x.f_kind()?, op.x.device());
        if !rows::applies(op.x) {
            let bias =
                op.b.map(|b| b.f_expand([op.rows, op.v], false))
                    .transpose()?;
            return Ok(Walk::Ops { bias });
        }
        let packed = match op.packed {
            Some(p) => Some(Packed::Given(p)),
            None => PackedHead::with(&op.w, op.b, op.n, isa, threads)?.map(Packed::Own),
        };
        Ok(Walk::Rows {
            y: op.y.f_contiguous()?,
            bias: op
                .b
                .filter(|_| packed.is_none())
                .map(Tensor::f_contiguous)
                .transpose()?,
            q: r.map(|_| Tensor::f_empty([op.rows, 1], opts)).transpose()?,
            packed,
        })
    }

    /// Columns between rows of logits: `V`, or the packed head's block-rounded width.
    fn stride(&self, v: i64) -> i64 {
        match self {
            Walk::Rows {
                packed: Some(p), ..
            } => p.head().stride as i64,
            _ => v,
        }
    }
}

/// Each row's `log p(y)` `[N]` (ignored rows: that of class 0), and, where
/// `grad` gives row weights `[N]` and what is needed, the gradients of
/// `sum_i r_i * -log p_i(y_i)`.
pub(super) fn run(op: &Operands, grad: Option<(&Tensor, Needs)>) -> Result<(Tensor, Grads)> {
    let _no_grad = tch::no_grad_guard();
    let opts = (op.x.f_kind()?, op.x.device());
    let (n, h, v) = (op.n, op.h, op.v);
    let needs = match grad {
        Some((_, needs)) => Needs {
            bias: needs.bias && op.b.is_some(),
            ..needs
        },
        None => Needs::default(),
    };
    let r = grad.filter(|_| needs.any()).map(|(r, _)| r);
    let zeros = |size: &[i64]| Tensor::f_zeros(size, opts);
    let mut grads = Grads {
        // Written whole, chunk by chunk; the others accumulate.
        input: needs
            .input
            .then(|| Tensor::f_empty([n, h], opts))
            .transpose()?,
        weight: needs.weight.then(|| zeros(&[v, h])).transpose()?,
        bias: needs.bias.then(|| zeros(&[v])).transpose()?,
    };
    let logp = Tensor::f_empty([n, 1], opts)?;
    let rows = op.rows;
    let (isa, threads) = (Isa::detect(), team::available());
    let walk = Walk::new(op, r, isa, threads)?;
    let stride = walk.stride(v);
    let e = Tensor::f_empty([rows, stride], opts)?;
    let x_scaled = match needs.weight {
        true => Some(Tensor::f_empty([rows, h], opts)?),
        false => None,
    };
    let w_t = op.w.f_tr()?;
    // The backward products on rustrnn's kernel (`kernel::gemm`) where the
    // forward's runs on the packed tile (float32, AVX-512); `op.w` is
    // contiguous (`Operands`).
    let on_kernel = matches!(
        walk,
        Walk::Rows {
            packed: Some(_),
            ..
        }
    );

    let mut at = 0;
    while at < n {
        let k = rows.min(n - at);
        let x_c = op.x.f_narrow(0, at, k)?;
        let mut e_c = e.f_narrow(0, 0, k)?;
        let mut logp_c = logp.f_narrow(0, at, k)?;
        let r_c = r.map(|r| r.f_narrow(0, at, k)).transpose()?;
        // The `_out` and in-place ops write into their tensors and return them again.
        let q = match &walk {
            Walk::Rows { y, bias, packed, q } => {
                match packed {
                    Some(p) => p.head().logits(&x_c.f_contiguous()?, &mut e_c)?,
                    None => _ = x_c.f_mm_out(&e_c, &w_t)?,
                }
                let mut q = q.as_ref().map(|q| q.f_narrow(0, 0, k)).transpose()?;
                let y_c = y.f_narrow(0, at, k)?;
                // SAFETY: each slice is a distinct tensor's memory, read or
                // written by this call alone.
                unsafe {
                    let grad = match (&r_c, &mut q) {
                        (Some(r), Some(q)) => Some((rows::floats(r)?, rows::floats_mut(q)?)),
                        _ => None,
                    };
                    rows::Chunk {
                        z: rows::floats_mut(&mut e_c)?,
                        stride: stride as usize,
                        v: v as usize,
                        bias: bias.as_ref().map(|b| rows::floats(b)).transpose()?,
                        y: rows::ids(&y_c)?,
                        logp: rows::floats_mut(&mut logp_c)?,
                        grad,
                    }
                    .run(isa, threads)?;
                }
                q
            }
            Walk::Ops { bias } => {
                let y_c = op.y.f_narrow(0, at, k)?.f_unsqueeze(1)?;
                _ = match bias {
                    Some(b) => b.f_narrow(0, 0, k)?.f_addmm_out(&e_c, &x_c, &w_t)?,
                    None => x_c.f_mm_out(&e_c, &w_t)?,
                };
                let z_y = e_c.f_gather(1, &y_c, false)?;
                let m = e_c.f_amax([1i64].as_slice(), true)?;
                _ = e_c.f_sub_(&m)?.f_exp_()?;
                let s = e_c.f_sum_dim_intlist([1i64].as_slice(), true, None)?;
                _ = z_y.f_sub(&m)?.f_sub_out(&logp_c, &s.f_log()?)?;
                match r_c {
                    Some(r) => {
                        _ = e_c.f_scatter_add_(1, &y_c, &s.f_neg()?)?;
                        Some(r.f_unsqueeze(1)?.f_div(&s)?)
                    }
                    None => None,
                }
            }
        };
        if let Some(q) = q {
            // The packed head's rows are `stride` wide; its padding columns
            // are no classes.
            let e_c = e_c.f_narrow(1, 0, v)?;
            let e_t = e_c.f_tr()?;
            if let Some(d_x) = &grads.input {
                let mut d_c = d_x.f_narrow(0, at, k)?;
                match on_kernel {
                    true => packed::product(&e_c, &op.w, &mut d_c, false, threads)?,
                    false => _ = e_c.f_mm_out(&d_c, &op.w)?,
                }
                _ = d_c.f_mul_(&q)?;
            }
            if let (Some(d_w), Some(xs)) = (&mut grads.weight, &x_scaled) {
                let xs = xs.f_narrow(0, 0, k)?;
                _ = x_c.f_mul_out(&xs, &q)?;
                match on_kernel {
                    true => packed::product(&e_t, &xs, d_w, true, threads)?,
                    false => _ = d_w.f_addmm_(&e_t, &xs)?,
                }
            }
            if let Some(d_b) = &mut grads.bias {
                _ = d_b.f_addmv_(&e_t, &q.f_squeeze_dim(1)?)?;
            }
        }
        at += k;
    }
    Ok((logp.f_squeeze_dim(1)?, grads))
}
