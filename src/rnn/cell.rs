//! One timestep of each cell, written with ordinary (autograd-recorded) tensor
//! ops, so torch's engine differentiates the cells directly. These back
//! `RNNCell`, `LSTMCell` and `GRUCell`; the stacks use the sequence-wide
//! recurrences with their own backward instead.

use tch::Tensor;

use super::check::zeros_on;
use super::config::Mode;
use crate::dtype::{dtype_name, kind_of, tensor_dtype_name};
use crate::error::{Error, Result};

/// A cell's parameters in torch's order.
pub struct CellWeights<'a> {
    pub w_ih: &'a Tensor,
    pub w_hh: &'a Tensor,
    pub b_ih: Option<&'a Tensor>,
    pub b_hh: Option<&'a Tensor>,
}

impl<'a> CellWeights<'a> {
    pub fn from_slice(w: &'a [Tensor]) -> Result<Self> {
        match w {
            [w_ih, w_hh] => Ok(CellWeights {
                w_ih,
                w_hh,
                b_ih: None,
                b_hh: None,
            }),
            [w_ih, w_hh, b_ih, b_hh] => Ok(CellWeights {
                w_ih,
                w_hh,
                b_ih: Some(b_ih),
                b_hh: Some(b_hh),
            }),
            _ => Err(Error::shape(format!(
                "a cell takes 2 or 4 weight tensors, got {}",
                w.len()
            ))),
        }
    }
}

fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    Ok(match b {
        Some(b) => b.f_addmm(x, &w.f_tr()?)?,
        None => x.f_mm(&w.f_tr()?)?,
    })
}

/// `h' = act(W_ih x + b_ih + W_hh h + b_hh)`.
pub fn rnn_cell(x: &Tensor, h: &Tensor, w: &CellWeights, relu: bool) -> Result<Tensor> {
    let pre = linear(x, w.w_ih, w.b_ih)?.f_add(&linear(h, w.w_hh, w.b_hh)?)?;
    Ok(if relu { pre.f_relu()? } else { pre.f_tanh()? })
}

/// LSTM gates in torch's order i, f, g, o; returns `(h', c')`.
pub fn lstm_cell(x: &Tensor, h: &Tensor, c: &Tensor, w: &CellWeights) -> Result<(Tensor, Tensor)> {
    let gates = linear(x, w.w_ih, w.b_ih)?.f_add(&linear(h, w.w_hh, w.b_hh)?)?;
    let g = gates.f_chunk(4, 1)?;
    let i = g[0].f_sigmoid()?;
    let f = g[1].f_sigmoid()?;
    let cand = g[2].f_tanh()?;
    let o = g[3].f_sigmoid()?;
    let c_next = f.f_mul(c)?.f_add(&i.f_mul(&cand)?)?;
    let h_next = o.f_mul(&c_next.f_tanh()?)?;
    Ok((h_next, c_next))
}

/// GRU gates in torch's order r, z, n, with the hidden bias of n inside the
/// product with r; returns `h'`.
pub fn gru_cell(x: &Tensor, h: &Tensor, w: &CellWeights) -> Result<Tensor> {
    let gi = linear(x, w.w_ih, w.b_ih)?.f_chunk(3, 1)?;
    let gh = linear(h, w.w_hh, w.b_hh)?.f_chunk(3, 1)?;
    let r = gi[0].f_add(&gh[0])?.f_sigmoid()?;
    let z = gi[1].f_add(&gh[1])?.f_sigmoid()?;
    let n = gi[2].f_add(&r.f_mul(&gh[2])?)?.f_tanh()?;
    Ok(n.f_add(&z.f_mul(&h.f_sub(&n)?)?)?)
}

/// `t.size(dim)` with c10's `IndexError` (and words) for a dimension the
/// tensor does not have, as torch's cells read their parameters' sizes.
fn size_at(t: &Tensor, dim: usize) -> Result<i64> {
    let size = t.size();
    match size.get(dim) {
        Some(&n) => Ok(n),
        None if size.is_empty() => Err(Error::Index(format!(
            "Dimension specified as {dim} but tensor has no dimensions"
        ))),
        None => Err(Error::Index(format!(
            "Dimension out of range (expected to be in range of [-{}, {}], but got {dim})",
            size.len(),
            size.len() - 1
        ))),
    }
}

/// Runs one step of a cell on user tensors (batched `[B, F]` or unbatched
/// `[F]`), validating them the way torch.nn's cells do. Returns `(h', c')`
/// in the input's layout; `c'` only for the LSTM.
pub fn cell_forward(
    mode: Mode,
    input: &Tensor,
    hx: Option<&Tensor>,
    cx: Option<&Tensor>,
    weights: &[Tensor],
) -> Result<(Tensor, Option<Tensor>)> {
    let w = CellWeights::from_slice(weights)?;
    let name = mode.cell_class_name();
    if input.dim() != 1 && input.dim() != 2 {
        return Err(Error::Value(format!(
            "{name}: Expected input to be 1D or 2D, got {}D instead",
            input.dim()
        )));
    }
    let states: Vec<(&str, &Tensor)> = match (mode, hx, cx) {
        (Mode::Lstm, Some(h), Some(c)) => vec![("hx[0]", h), ("hx[1]", c)],
        (Mode::Lstm, None, None) => vec![],
        (Mode::Lstm, _, _) => {
            return Err(Error::Type(
                "LSTMCell expects hx as a tuple (h_0, c_0) of two tensors".into(),
            ))
        }
        (_, Some(h), None) => vec![("hidden", h)],
        (_, None, None) => vec![],
        (_, _, Some(_)) => {
            return Err(Error::Type(format!(
                "{name} takes a single hidden state tensor"
            )))
        }
    };
    for (what, t) in &states {
        if t.dim() != 1 && t.dim() != 2 {
            return Err(Error::Value(format!(
                "{name}: Expected {what} to be 1D or 2D, got {}D instead",
                t.dim()
            )));
        }
    }
    // The parameters' sizes as torch 2.13's cells read and check them, in
    // its order (which differs between the cells), with its messages.
    let gates = mode.gates();
    let first_dims = || -> Result<()> {
        let hidden = size_at(w.w_hh, 1)?;
        let want = gates
            .checked_mul(hidden)
            .ok_or_else(|| Error::shape(format!("{gates} * hidden_size {hidden} overflows")))?;
        for (which, t) in [("weight_ih", w.w_ih), ("weight_hh", w.w_hh)] {
            let got = size_at(t, 0)?;
            if got != want {
                return Err(Error::shape(format!(
                    "{which} first dim must be {gates} * hidden_size = {want}, but got {got}"
                )));
            }
        }
        Ok(())
    };
    let rnn = matches!(mode, Mode::RnnTanh | Mode::RnnRelu);
    if rnn {
        first_dims()?;
    }
    let input_size = size_at(w.w_ih, 1)?;
    let hidden = size_at(w.w_hh, 1)?;
    let unbatched = input.dim() == 1;
    let x = if unbatched {
        input.f_unsqueeze(0)?
    } else {
        input.shallow_clone()
    };
    let kind = w.w_ih.f_kind()?;
    if kind_of(&x)? != Some(kind) {
        return Err(Error::Shape(format!(
            "{name}: input must have the type {}, got type {}",
            dtype_name(kind),
            tensor_dtype_name(&x)
        )));
    }
    if x.device() != w.w_ih.device() {
        return Err(Error::Shape(format!(
            "{name}: input and parameters must be on the same device"
        )));
    }
    if x.size()[1] != input_size {
        return Err(Error::Shape(format!(
            "input has inconsistent input_size: got {} expected {input_size}",
            x.size()[1]
        )));
    }
    if mode == Mode::Lstm {
        first_dims()?;
    }
    let batch = x.size()[0];
    let mut prepared = Vec::new();
    for (k, (_, t)) in states.iter().enumerate() {
        let t = if unbatched {
            t.f_unsqueeze(0)?
        } else {
            t.shallow_clone()
        };
        if t.dim() != 2 || t.size()[0] != batch {
            return Err(Error::Shape(format!(
                "Input batch size {batch} doesn't match hidden{k} batch size {}",
                if t.dim() == 2 { t.size()[0] } else { 1 }
            )));
        }
        if t.size()[1] != hidden {
            return Err(Error::Shape(format!(
                "hidden{k} has inconsistent hidden_size: got {}, expected {hidden}",
                t.size()[1]
            )));
        }
        if kind_of(&t)? != Some(kind) || t.device() != x.device() {
            return Err(Error::Shape(format!(
                "{name}: hidden{k} must have the type {} on the input's device, got {}",
                dtype_name(kind),
                tensor_dtype_name(&t)
            )));
        }
        prepared.push(t);
    }
    if mode == Mode::Gru {
        first_dims()?;
    }
    if prepared.is_empty() {
        let zeros = zeros_on(&x, &[batch, hidden])?;
        prepared.push(zeros.shallow_clone());
        if mode == Mode::Lstm {
            prepared.push(zeros);
        }
    }
    let (h, c) = match mode {
        Mode::Lstm => {
            let (h, c) = lstm_cell(&x, &prepared[0], &prepared[1], &w)?;
            (h, Some(c))
        }
        Mode::Gru => (gru_cell(&x, &prepared[0], &w)?, None),
        Mode::RnnTanh | Mode::RnnRelu => {
            (rnn_cell(&x, &prepared[0], &w, mode == Mode::RnnRelu)?, None)
        }
    };
    let out = |t: Tensor| -> Result<Tensor> { Ok(if unbatched { t.f_squeeze_dim(0)? } else { t }) };
    Ok((out(h)?, c.map(out).transpose()?))
}
