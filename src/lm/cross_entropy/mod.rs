//! The language model's output layer and its loss, fused: `x W^T + b`,
//! log-softmax and cross-entropy, forward and backward, computed a chunk of
//! rows at a time so the `[N, V]` logits never exist (the head holds
//! `chunk x V`, not `tokens x V`).
//!
//! Why: at word-level vocabularies (10K+ classes) the logits of a window are
//! the largest tensor of a training step (700 x 33,278 float32 is 89 MiB, and
//! autograd keeps two or three such: 364 MiB measured against 68 MiB here),
//! and every pass over them streams from memory, where a chunk's passes run
//! in cache between its products.
//!
//! * `check` – the operands, validated as torch validates the unfused ops.
//! * `pass`  – the chunk loop, the one place the arithmetic lives.
//! * `rows`  – float32 on the CPU: the work between a chunk's products in one
//!   walk per row, where libtorch's ops would pass over the whole chunk once
//!   each.
//! * `packed` – float32 on AVX-512 CPUs: the forward product on the fused
//!   kernels' tile, over the head packed once per pass (or by the caller),
//!   and the backward products on `kernel::gemm`.
//!
//! Elsewhere the products are libtorch's (MKL's on the CPU); on other devices
//! and dtypes the rest is libtorch ops too, so every device and floating
//! dtype runs the same arithmetic. For training,
//! `LinearCrossEntropy::loss_and_grads` takes the dropped-out stack output
//! rows `[T * B, H]` and returns the loss and `d_x`, `d_w`, `d_b`.

mod check;
mod packed;
mod pass;
mod rows;
#[cfg(test)]
mod tests;

use tch::{Kind, Tensor};

use self::check::Operands;
pub use self::packed::PackedHead;
pub use self::pass::chunk_rows;
use crate::error::{Error, Result};

/// torch's default `ignore_index` for cross-entropy.
pub const IGNORE_INDEX: i64 = -100;

/// How the rows' losses are combined, as torch's `reduction` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reduction {
    /// One loss per row.
    None,
    /// The mean over the rows not ignored (nan when there are none, as torch).
    Mean,
    Sum,
}

impl Reduction {
    /// torch's spellings; ValueError with torch's message otherwise.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "none" => Ok(Reduction::None),
            "mean" => Ok(Reduction::Mean),
            "sum" => Ok(Reduction::Sum),
            other => Err(Error::value(format!(
                "{other} is not a valid value for reduction"
            ))),
        }
    }
}

/// Which gradients to compute.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Needs {
    pub input: bool,
    pub weight: bool,
    pub bias: bool,
}

impl Needs {
    pub const ALL: Needs = Needs {
        input: true,
        weight: true,
        bias: true,
    };

    fn any(self) -> bool {
        self.input || self.weight || self.bias
    }
}

/// `d_x [N, H]`, `d_w [V, H]`, `d_b [V]`, each where it was asked for
/// (`d_b` only with a bias).
#[derive(Default)]
pub struct Grads {
    pub input: Option<Tensor>,
    pub weight: Option<Tensor>,
    pub bias: Option<Tensor>,
}

/// The head applied to rows `input` with classes `target`: torch's
/// `F.cross_entropy(F.linear(input, weight, bias), target, ignore_index=...)`.
pub struct LinearCrossEntropy<'a> {
    /// `[N, H]`: one row per token (a training step's are the dropped-out
    /// stack outputs, `[T * B, H]`).
    pub input: &'a Tensor,
    /// `[V, H]`, as torch stores a Linear's weight.
    pub weight: &'a Tensor,
    /// `[V]`.
    pub bias: Option<&'a Tensor>,
    /// `[N]` int64 (or uint8) class ids.
    pub target: &'a Tensor,
    /// Rows whose target is this count for nothing.
    pub ignore_index: i64,
    /// Rows per chunk; `None`: [`chunk_rows`], chosen by measurement.
    pub chunk_rows: Option<i64>,
    /// `weight` and `bias` packed for the fused kernels, made once by a
    /// caller that runs many passes over the same head ([`PackedHead::new`]);
    /// `None`: each pass without gradients packs its own where that pays.
    pub packed: Option<&'a PackedHead>,
}

impl<'a> LinearCrossEntropy<'a> {
    pub fn new(
        input: &'a Tensor,
        weight: &'a Tensor,
        bias: Option<&'a Tensor>,
        target: &'a Tensor,
    ) -> Self {
        LinearCrossEntropy {
            input,
            weight,
            bias,
            target,
            ignore_index: IGNORE_INDEX,
            chunk_rows: None,
            packed: None,
        }
    }

    /// Each row's `log p(target) = z_y - logsumexp(z)` `[N]`, in the input's
    /// dtype (ignored rows: 0). No gradients.
    pub fn log_probs(&self) -> Result<Tensor> {
        let op = Operands::new(self)?;
        let (logp, _) = pass::run(&op, None)?;
        masked(logp, &op)
    }

    /// The loss alone (no gradients): `[N]` for [`Reduction::None`] (ignored
    /// rows 0), else a scalar.
    pub fn loss(&self, reduction: Reduction) -> Result<Tensor> {
        let op = Operands::new(self)?;
        let (logp, _) = pass::run(&op, None)?;
        match reduction {
            Reduction::None => masked(logp.f_neg()?, &op),
            _ => reduce(&masked(logp, &op)?, &op, reduction),
        }
    }

    /// The mean or summed loss and, in the same pass, the gradients in
    /// `needs`: the training step's head. [`Reduction::None`] has no
    /// gradient of its own (see [`LinearCrossEntropy::backward`]).
    pub fn loss_and_grads(&self, reduction: Reduction, needs: Needs) -> Result<(Tensor, Grads)> {
        let op = Operands::new(self)?;
        let scale = match reduction {
            Reduction::Mean if op.counted > 0 => 1.0 / op.counted as f64,
            Reduction::Mean => 0.0,
            Reduction::Sum => 1.0,
            Reduction::None => {
                return Err(Error::value(
                    "linear_cross_entropy: reduction 'none' gives one loss per row; its \
                     gradients need the rows' output gradients (LinearCrossEntropy::backward)",
                ))
            }
        };
        let r = row_weights(&Tensor::f_full([op.n], scale, opts(&op)?)?, &op)?;
        let (logp, grads) = pass::run(&op, Some((&r, needs)))?;
        Ok((reduce(&masked(logp, &op)?, &op, reduction)?, grads))
    }

    /// The gradients of `sum_i grad_output_i * loss_i` (the per-row losses
    /// of [`Reduction::None`]), `grad_output` `[N]`: the backward of
    /// `reduction="none"`, one more pass over the chunks.
    pub fn backward(&self, grad_output: &Tensor, needs: Needs) -> Result<Grads> {
        let op = Operands::new(self)?;
        if grad_output.size() != [op.n] {
            return Err(Error::shape(format!(
                "linear_cross_entropy backward: expected a gradient of size [{}], got {:?}",
                op.n,
                grad_output.size()
            )));
        }
        let g = grad_output
            .f_to_device(op.x.device())?
            .f_to_kind(op.x.f_kind()?)?;
        let r = row_weights(&g, &op)?;
        Ok(pass::run(&op, Some((&r, needs)))?.1)
    }
}

fn opts(op: &Operands) -> Result<(Kind, tch::Device)> {
    Ok((op.x.f_kind()?, op.x.device()))
}

/// `r` with the ignored rows' weights 0 (contiguous: the pass narrows it).
fn row_weights(r: &Tensor, op: &Operands) -> Result<Tensor> {
    Ok(match &op.ignored {
        Some(ignored) => r.f_masked_fill(ignored, 0.0)?,
        None => r.f_contiguous()?,
    })
}

/// `logp` (or a loss) with the ignored rows' values 0.
fn masked(logp: Tensor, op: &Operands) -> Result<Tensor> {
    Ok(match &op.ignored {
        Some(ignored) => logp.f_masked_fill(ignored, 0.0)?,
        None => logp,
    })
}

/// The mean or sum of `-logp`, summed in float64, in the input's dtype.
fn reduce(logp: &Tensor, op: &Operands, reduction: Reduction) -> Result<Tensor> {
    let total = logp.f_sum(Kind::Double)?.f_neg()?;
    let loss = match reduction {
        // 0 / 0 = nan for no rows, as torch.
        Reduction::Mean => total.f_div_scalar(op.counted as f64)?,
        _ => total,
    };
    Ok(loss.f_to_kind(op.x.f_kind()?)?)
}
