//! The libtorch engine: the whole stack through libtorch's own recurrent ops
//! (`at::lstm`, `at::gru`, `at::rnn_tanh`, `at::rnn_relu`, and their
//! `PackedSequence` forms), recorded under libtorch's autograd.
//!
//! Why: on CUDA these ops run cuDNN's fused recurrence, which no composition of
//! per-step ops comes near, and it is what torch.nn runs there. cuDNN's backward
//! (`_cudnn_rnn_backward`) is not in tch's API, so the forward is recorded on
//! libtorch's tape and its `CudnnRnnBackward` computes the gradients; the
//! backward here only asks that tape for them. The same ops exist on the CPU,
//! so this engine can be chosen there too ([`super::engine::Preference`]) and
//! all of its glue — the weights' order, the states' layout, dropout between
//! layers, the gradients' order — is tested on every run, with or without a GPU.
//! Dropout between layers is the op's own, as torch.nn's (the other engines
//! draw rustrnn's masks).
//!
//! cuDNN wants the weights in one buffer of its own layout. torch.nn compacts
//! its parameters into one (`flatten_parameters`, on `.to("cuda")`); rustrnn's
//! Python stacks do the same. When the weights handed in are not such a buffer,
//! the forward copies them into one for the call (`flattened`), so cuDNN never
//! needs to compact them itself (which torch would warn about on every call).

use tch::{Device, Kind, Tensor};

use super::check::Prepared;
use super::config::{Mode, RnnConfig};
use crate::error::{Error, Result};

/// What the backward needs: the forward's leaves and outputs on libtorch's tape.
pub struct Saved {
    /// `x` `[N, I]`, `h0`, `c0` (LSTM), then the weights in torch's flat order.
    inputs: Vec<Tensor>,
    /// `out` `[N, D * H_out]`, `h_n`, `c_n` (LSTM).
    outputs: Vec<Tensor>,
}

/// The stack's outputs in the engines' inner layout: flat rows and stacked states.
pub struct Output {
    pub out: Tensor,
    pub h_n: Tensor,
    pub c_n: Option<Tensor>,
    pub saved: Option<Saved>,
}

/// The gradients of the forward's leaves.
pub struct Grads {
    pub input: Option<Tensor>,
    pub h0: Tensor,
    pub c0: Option<Tensor>,
    pub weights: Vec<Tensor>,
}

/// cuDNN's mode numbers (`cudnnRNNMode_t`), as torch's `_cudnn_rnn*` ops take them.
fn cudnn_mode(mode: Mode) -> i64 {
    match mode {
        Mode::RnnRelu => 0,
        Mode::RnnTanh => 1,
        Mode::Lstm => 2,
        Mode::Gru => 3,
    }
}

/// Whether `weights` already lie back to back in one dense buffer, in order:
/// what `flatten_parameters` leaves behind, and what cuDNN reads in place.
fn back_to_back(weights: &[Tensor]) -> bool {
    let Some(first) = weights.first() else {
        return false;
    };
    let Ok(kind) = first.f_kind() else {
        return false;
    };
    let size = kind.elt_size_in_bytes();
    let mut next = first.data_ptr() as usize;
    weights.iter().all(|w| {
        let here = w.data_ptr() as usize;
        let ok = w.is_contiguous() && w.f_kind().is_ok_and(|k| k == kind) && here == next;
        next = here + w.numel() * size;
        ok
    })
}

/// The weights as libtorch's op is to read them. On CUDA, when they are not
/// one cuDNN buffer already, copies of them made views of one, so that cuDNN
/// reads them in place: torch's `_cudnn_rnn_flatten_weight` allocates the
/// buffer, copies the tensors it is given into it and repoints each to a view
/// of it. Everywhere else, and where cuDNN cannot take them, the weights
/// themselves (libtorch's op then runs without cuDNN, or compacts them itself).
fn flattened(cfg: &RnnConfig, weights: &[Tensor], input: &Tensor) -> Vec<Tensor> {
    let as_given = || weights.iter().map(Tensor::shallow_clone).collect();
    let cudnn_kind = matches!(input.f_kind(), Ok(Kind::Float | Kind::Double | Kind::Half));
    if !matches!(input.device(), Device::Cuda(_))
        || !cudnn_kind
        || !tch::Cuda::cudnn_is_available()
        || back_to_back(weights)
    {
        return as_given();
    }
    // Copies, not aliases: repointing an alias bumps the version counter it
    // shares with the caller's parameter, which autograd would then report as
    // modified in place wherever the parameter was saved for a backward.
    let Ok(copies) = weights
        .iter()
        .map(Tensor::f_detach_copy)
        .collect::<std::result::Result<Vec<_>, _>>()
    else {
        return as_given();
    };
    let flat = Tensor::f_internal_cudnn_rnn_flatten_weight(
        &copies,
        cfg.params_per_direction() as i64,
        cfg.input_size,
        cudnn_mode(cfg.mode),
        cfg.hidden_size,
        cfg.proj_size,
        cfg.num_layers,
        false,
        cfg.bidirectional,
    );
    match flat {
        Ok(_buffer) => copies, // each now a view of the buffer, which they keep alive
        Err(_) => as_given(),
    }
}

/// Whether libtorch's autograd records ops here. It does not inside a custom
/// op's implementation (torch.compile's path: the autograd dispatch keys are
/// excluded there) or in inference mode, where grad mode alone cannot turn it
/// back on; a one-element probe tells.
pub fn autograd_records() -> bool {
    let probe = || -> Result<bool> {
        let leaf = Tensor::f_zeros([1], (Kind::Float, Device::Cpu))?.f_set_requires_grad(true)?;
        Ok(tch::with_grad(|| leaf.f_mul_scalar(2.0))?.requires_grad())
    };
    probe().unwrap_or(false)
}

/// A fresh leaf sharing `t`'s storage, recorded by autograd when `grad`.
fn leaf(t: &Tensor, grad: bool) -> Result<Tensor> {
    let t = t.f_detach()?;
    Ok(if grad {
        t.f_set_requires_grad(true)?
    } else {
        t
    })
}

/// The whole stack as one call of libtorch's op: `x` `[N, I]` laid out by
/// `prep.steps`, states `[L * D, B, H]`; the output rows `[N, D * H_out]`.
fn run(
    cfg: &RnnConfig,
    prep: &Prepared,
    x: &Tensor,
    h0: &Tensor,
    c0: Option<&Tensor>,
    weights: &[Tensor],
    train: bool,
) -> Result<(Tensor, Tensor, Option<Tensor>)> {
    let (bias, layers, p, bidi) = (cfg.bias, cfg.num_layers, cfg.dropout, cfg.bidirectional);
    let steps = &prep.steps;
    let sizes = if prep.layout.packed || !steps.is_uniform() {
        Some(steps.sizes_tensor()?)
    } else {
        None
    };
    let shape3 = [steps.len() as i64, steps.batch() as i64, -1];
    let (out, h_n, c_n) = match (cfg.mode, &sizes) {
        (Mode::Lstm, _) => {
            let c0 = c0.ok_or_else(|| Error::shape("LSTM needs an initial cell state"))?;
            let hx = [h0.shallow_clone(), c0.shallow_clone()];
            let (o, h, c) = match &sizes {
                Some(s) => Tensor::f_lstm_data(x, s, &hx, weights, bias, layers, p, train, bidi)?,
                None => x
                    .f_view(shape3)?
                    .f_lstm(&hx, weights, bias, layers, p, train, bidi, false)?,
            };
            (o, h, Some(c))
        }
        (mode, Some(s)) => {
            let (o, h) = match mode {
                Mode::Gru => Tensor::f_gru_data(x, s, h0, weights, bias, layers, p, train, bidi)?,
                Mode::RnnTanh => {
                    Tensor::f_rnn_tanh_data(x, s, h0, weights, bias, layers, p, train, bidi)?
                }
                _ => Tensor::f_rnn_relu_data(x, s, h0, weights, bias, layers, p, train, bidi)?,
            };
            (o, h, None)
        }
        (mode, None) => {
            let x3 = x.f_view(shape3)?;
            let (o, h) = match mode {
                Mode::Gru => x3.f_gru(h0, weights, bias, layers, p, train, bidi, false)?,
                Mode::RnnTanh => x3.f_rnn_tanh(h0, weights, bias, layers, p, train, bidi, false)?,
                _ => x3.f_rnn_relu(h0, weights, bias, layers, p, train, bidi, false)?,
            };
            (o, h, None)
        }
    };
    let features = out.size().last().copied().unwrap_or(0);
    Ok((out.f_reshape([-1, features])?, h_n, c_n))
}

/// Runs the stack on libtorch's ops, the whole stack in one call (cuDNN
/// pipelines its layers). Dropout between layers is the op's own, as torch.nn's:
/// torch's generator on the CPU, cuDNN's dropout state on CUDA, which libtorch
/// seeds anew from the CUDA generator after `torch.manual_seed` — so a seeded
/// call repeats its masks, which `torch.compile`'s recomputing backward needs.
pub fn forward(
    cfg: &RnnConfig,
    prep: &Prepared,
    weights: &[Tensor],
    train: bool,
    keep_tape: bool,
) -> Result<Output> {
    let leaves = flattened(cfg, weights, &prep.input)
        .iter()
        .map(|w| leaf(w, keep_tape))
        .collect::<Result<Vec<_>>>()?;
    let x = leaf(&prep.input, keep_tape)?;
    let h0 = leaf(&prep.h0, keep_tape)?;
    let c0 = prep.c0.as_ref().map(|c| leaf(c, keep_tape)).transpose()?;
    let call = || run(cfg, prep, &x, &h0, c0.as_ref(), &leaves, train);
    let (out, h_n, c_n) = if keep_tape {
        tch::with_grad(call)?
    } else {
        call()?
    };
    let saved = keep_tape.then(|| {
        let mut inputs = vec![x, h0];
        inputs.extend(c0);
        inputs.extend(leaves);
        let mut outputs = vec![out.shallow_clone(), h_n.shallow_clone()];
        outputs.extend(c_n.as_ref().map(Tensor::shallow_clone));
        Saved { inputs, outputs }
    });
    // The caller gets the values without libtorch's history; the tape keeps it.
    let plain = |t: &Tensor| t.f_detach();
    Ok(Output {
        out: plain(&out)?,
        h_n: plain(&h_n)?,
        c_n: c_n.as_ref().map(plain).transpose()?,
        saved,
    })
}

/// The gradients of the forward's leaves, given those of its outputs in the
/// same inner layout (`d_out` `[N, D * H_out]`, stacked states). The tape is
/// kept, so a second backward through the same forward works.
pub fn backward(
    saved: &Saved,
    d_out: &Tensor,
    d_hn: &Tensor,
    d_cn: Option<&Tensor>,
    need_input_grad: bool,
) -> Result<Grads> {
    let lstm = saved.outputs.len() == 3;
    let mut grads = vec![d_out, d_hn];
    grads.extend(d_cn);
    if grads.len() != saved.outputs.len() {
        return Err(Error::shape(format!(
            "the forward returned {} tensors, {} gradients were given",
            saved.outputs.len(),
            grads.len()
        )));
    }
    // libtorch's entry point seeds each root with ones, so the root is the
    // scalar whose gradient with respect to each output is that output's
    // gradient.
    let root = tch::with_grad(|| -> Result<Tensor> {
        let mut root: Option<Tensor> = None;
        for (o, g) in saved.outputs.iter().zip(&grads) {
            let term = o.f_mul(&g.f_detach()?)?.f_sum(o.f_kind()?)?;
            root = Some(match root {
                Some(r) => r.f_add(&term)?,
                None => term,
            });
        }
        root.ok_or_else(|| Error::shape("the forward returned nothing"))
    })?;
    if !root.requires_grad() {
        // libtorch's engine would be handed an edge to nothing.
        return Err(Error::shape(
            "the forward ran where libtorch's autograd records nothing (a custom op's \
             implementation or inference mode); run the backward from a forward outside it",
        ));
    }
    let skip = usize::from(!need_input_grad);
    let wanted = saved.inputs.get(skip..).unwrap_or_default();
    let mut got = Tensor::f_run_backward(&[root], wanted, true, false)?.into_iter();
    let mut next = || {
        got.next()
            .ok_or_else(|| Error::shape("autograd returned too few gradients"))
    };
    let input = if need_input_grad { Some(next()?) } else { None };
    let h0 = next()?;
    let c0 = if lstm { Some(next()?) } else { None };
    let weights = got.collect();
    Ok(Grads {
        input,
        h0,
        c0,
        weights,
    })
}

impl Saved {
    pub fn shallow_clone(&self) -> Saved {
        let all = |v: &[Tensor]| v.iter().map(Tensor::shallow_clone).collect();
        Saved {
            inputs: all(&self.inputs),
            outputs: all(&self.outputs),
        }
    }
}
