//! The head's operands checked as torch checks
//! `F.cross_entropy(F.linear(input, weight, bias), target)`: the same
//! exception classes (RuntimeError for shapes, dtypes and devices, ValueError
//! for a batch-size mismatch, IndexError for a target out of range), torch's
//! wording where it has one.

// Values from Python reach this module: no index or slice may panic.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use tch::{Kind, Tensor};

use crate::dtype::{dtype_name, is_param_dtype, tensor_device_name, tensor_dtype_name};
use crate::error::{Error, Result};

use super::packed::PackedHead;
use super::pass::chunk_rows;
use super::LinearCrossEntropy;

/// What the chunked pass reads, validated.
pub(super) struct Operands<'a> {
    /// `[N, H]`.
    pub x: &'a Tensor,
    /// `[V, H]`, contiguous (the products read it as stored and transposed).
    pub w: Tensor,
    /// `[V]`.
    pub b: Option<&'a Tensor>,
    /// `w` and `b` packed by the caller (checked to have their sizes).
    pub packed: Option<&'a PackedHead>,
    /// `[N]` int64, on `x`'s device; ignored rows read class 0 (their weight is 0).
    pub y: Tensor,
    /// `[N]` bool, where the target is `ignore_index`; `None` when no row is.
    pub ignored: Option<Tensor>,
    /// Rows not ignored: what "mean" divides by.
    pub counted: i64,
    /// Rows per chunk, in `[1, max(n, 1)]`.
    pub rows: i64,
    pub n: i64,
    pub h: i64,
    pub v: i64,
}

fn matrix(t: &Tensor, what: &str, dims: &str) -> Result<(i64, i64)> {
    match t.size().as_slice() {
        &[rows, cols] => Ok((rows, cols)),
        size => Err(Error::shape(format!(
            "linear_cross_entropy: expected {what} of shape {dims} (2-D), got size {size:?}"
        ))),
    }
}

fn same_device(t: &Tensor, what: &str, x: &Tensor) -> Result<()> {
    if t.device() == x.device() {
        return Ok(());
    }
    Err(Error::shape(format!(
        "Expected all tensors to be on the same device, but got {what} on {} and input on {}",
        tensor_device_name(t),
        tensor_device_name(x)
    )))
}

impl<'a> Operands<'a> {
    pub fn new(head: &LinearCrossEntropy<'a>) -> Result<Self> {
        let (x, w) = (head.input, head.weight);
        let (n, h) = matrix(x, "input", "[N, H]")?;
        let (v, w_h) = matrix(w, "weight", "[V, H]")?;
        let kind = match x.f_kind() {
            Ok(kind) if is_param_dtype(kind) => kind,
            _ => {
                return Err(Error::shape(format!(
                    "linear_cross_entropy: expected a floating-point input (float16, bfloat16, \
                     float32 or float64), got {}",
                    tensor_dtype_name(x)
                )))
            }
        };
        if w.f_kind().ok() != Some(kind) {
            return Err(Error::shape(format!(
                "input and weight must have the same dtype, but got {} and {}",
                dtype_name(kind),
                tensor_dtype_name(w)
            )));
        }
        same_device(w, "weight", x)?;
        if w_h != h {
            // torch's wording for the product x W^T.
            return Err(Error::shape(format!(
                "input and weight.T shapes cannot be multiplied ({n}x{h} and {w_h}x{v})"
            )));
        }
        if let Some(b) = head.bias {
            if b.size() != [v] {
                return Err(Error::shape(format!(
                    "linear_cross_entropy: expected bias of shape [{v}] (weight's rows), got \
                     size {:?}",
                    b.size()
                )));
            }
            if b.f_kind().ok() != Some(kind) {
                return Err(Error::shape(format!(
                    "bias must have input's dtype {}, but got {}",
                    dtype_name(kind),
                    tensor_dtype_name(b)
                )));
            }
            same_device(b, "bias", x)?;
        }
        let rows = match head.chunk_rows {
            None => chunk_rows(n, v),
            Some(rows) if rows > 0 => rows.min(n).max(1),
            Some(rows) => {
                return Err(Error::value(format!(
                    "chunk_rows must be positive, got {rows}"
                )))
            }
        };
        let y = target(head.target, n, x)?;
        let (y, ignored, counted) = check_ids(y, v, head.ignore_index)?;
        if let Some(p) = head.packed {
            p.check(v, h)?;
        }
        Ok(Operands {
            x,
            w: w.f_contiguous()?,
            b: head.bias,
            packed: head.packed,
            y,
            ignored,
            counted,
            rows,
            n,
            h,
            v,
        })
    }
}

/// The target as int64 `[N]`: torch takes Long or Byte ids, one per row.
fn target(y: &Tensor, n: i64, x: &Tensor) -> Result<Tensor> {
    let kind = y.f_kind().ok();
    if !matches!(kind, Some(Kind::Int64 | Kind::Uint8)) {
        return Err(Error::shape(format!(
            "expected target dtype to be Long or Byte (torch.int64 or torch.uint8), but got {}",
            tensor_dtype_name(y)
        )));
    }
    let rows = match y.size().as_slice() {
        &[rows] => rows,
        size => {
            return Err(Error::shape(format!(
                "linear_cross_entropy: expected a 1-D target [N] (one class per row), got size \
                 {size:?}"
            )))
        }
    };
    if rows != n {
        return Err(Error::value(format!(
            "Expected input batch_size ({n}) to match target batch_size ({rows})."
        )));
    }
    same_device(y, "target", x)?;
    Ok(y.f_to_kind(Kind::Int64)?)
}

/// Each id a class of `v` or `ignore_index` (IndexError, torch's message,
/// for the first that is neither); the ignored rows' mask and ids made safe
/// to gather.
fn check_ids(y: Tensor, v: i64, ignore_index: i64) -> Result<(Tensor, Option<Tensor>, i64)> {
    let n = y.numel() as i64;
    let ignored = y.f_eq(ignore_index)?;
    let skipped = ignored.f_sum(Kind::Int64)?.f_int64_value(&[])?;
    let bad = y
        .f_lt(0)?
        .f_logical_or(&y.f_ge(v)?)?
        .f_logical_and(&ignored.f_logical_not()?)?;
    let first_bad = y.f_masked_select(&bad)?;
    if first_bad.numel() > 0 {
        let id = first_bad.f_int64_value(&[0])?;
        return Err(Error::Index(format!("Target {id} is out of bounds.")));
    }
    if skipped == 0 {
        return Ok((y, None, n));
    }
    let safe = y.f_masked_fill(&ignored, 0)?;
    Ok((safe, Some(ignored), n - skipped))
}
