//! The multi-layer network: each layer runs its recurrence over the sequence
//! in one or both directions, layers are chained with dropout between them
//! (training only), and a `Tape` keeps what the backward pass needs.

use tch::{Device, Kind, Tensor};

use super::check::{prepare, zeros_on, Layout};
use super::config::RnnConfig;
use super::direction::{DirBackward, DirWeights};
use super::engine::{self, DirTape, Preference};
use super::libtorch;
use super::steps::Steps;
use crate::dtype::{dtype_name, kind_of, tensor_device_name, tensor_dtype_name};
use crate::error::{Error, Result};

struct LayerTape {
    /// The dropout mask applied to this layer's input (already scaled by 1/(1-p)).
    mask: Option<Tensor>,
    dirs: Vec<DirTape>,
}

/// What the engines kept: per layer-direction, or libtorch's tape of the whole stack.
enum Recorded {
    Layers(Vec<LayerTape>),
    Libtorch(libtorch::Saved),
}

/// Everything the backward pass needs from one forward call.
pub struct Tape {
    cfg: RnnConfig,
    weights: Vec<Tensor>,
    recorded: Recorded,
    layout: Layout,
    steps: Steps,
    input_shape: Vec<i64>,
    /// The shapes of the `h_n` and `c_n` the forward returned, and the dtype
    /// and device of everything it returned: what the gradients must match.
    h_shape: Vec<i64>,
    c_shape: Option<Vec<i64>>,
    kind: Kind,
    device: Device,
    device_name: String,
}

/// What a forward call returns, in the caller's layout.
pub struct RnnOutput {
    pub output: Tensor,
    pub h_n: Tensor,
    pub c_n: Option<Tensor>,
    pub tape: Option<Tape>,
}

/// Gradients of the forward's inputs, in the caller's layout and torch's parameter order.
pub struct Grads {
    pub input: Option<Tensor>,
    pub hx: Tensor,
    pub cx: Option<Tensor>,
    pub weights: Vec<Tensor>,
}

/// Runs the stack. `input`, `hx`, `cx` are in the caller's layout (unbatched or
/// batched, `batch_first` as configured), or with `batch_sizes` `input` is a
/// `PackedSequence`'s data `[N, H_in]` and the states are in its sorted
/// order; `weights` in torch's flat order. With `keep_tape`, the returned
/// tape feeds `backward`.
#[allow(clippy::too_many_arguments)]
pub fn forward(
    cfg: &RnnConfig,
    input: &Tensor,
    batch_sizes: Option<&[i64]>,
    hx: Option<&Tensor>,
    cx: Option<&Tensor>,
    weights: &[Tensor],
    train: bool,
    keep_tape: bool,
) -> Result<RnnOutput> {
    let pref = Preference::get();
    forward_with(
        pref,
        cfg,
        input,
        batch_sizes,
        hx,
        cx,
        weights,
        train,
        keep_tape,
    )
}

/// [`forward`] under the engine preference `pref` instead of the process's.
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward_with(
    pref: Preference,
    cfg: &RnnConfig,
    input: &Tensor,
    batch_sizes: Option<&[i64]>,
    hx: Option<&Tensor>,
    cx: Option<&Tensor>,
    weights: &[Tensor],
    train: bool,
    keep_tape: bool,
) -> Result<RnnOutput> {
    let _guard = tch::no_grad_guard();
    let prep = prepare(cfg, input, batch_sizes, hx, cx, weights)?;
    let steps = &prep.steps;
    let dropout = train && cfg.dropout > 0.0 && cfg.num_layers > 1;
    let (out, h_n, c_n, recorded) =
        if engine::whole_stack(pref, &prep.input, steps.batch(), keep_tape || dropout) {
            let o = libtorch::forward(cfg, &prep, weights, train, keep_tape)?;
            (o.out, o.h_n, o.c_n, o.saved.map(Recorded::Libtorch))
        } else {
            let (out, h_n, c_n, layers) = by_layer(cfg, &prep, weights, train, keep_tape)?;
            (out, h_n, c_n, keep_tape.then_some(Recorded::Layers(layers)))
        };
    let layout = prep.layout;
    // The caller attaches autograd history to the returned tensors; the tape keeps
    // the same storage under separate tensor objects (`detach` aliases), or the
    // output -> grad_fn -> tape -> output loop would keep every step alive.
    let output = layout.sequence_out(&out.f_detach()?, steps)?;
    let h_n = layout.state_out(&h_n)?;
    let c_n = c_n.map(|c| layout.state_out(&c)).transpose()?;
    let tape = match recorded {
        Some(recorded) => Some(Tape {
            cfg: cfg.clone(),
            weights: weights.iter().map(|w| w.shallow_clone()).collect(),
            recorded,
            layout,
            steps: prep.steps.clone(),
            input_shape: input.size(),
            h_shape: h_n.size(),
            c_shape: c_n.as_ref().map(Tensor::size),
            kind: output.f_kind()?,
            device: output.device(),
            device_name: tensor_device_name(&output),
        }),
        None => None,
    };
    Ok(RnnOutput {
        output,
        h_n,
        c_n,
        tape,
    })
}

/// The stack layer by layer, each layer-direction on the engine chosen for it
/// (`engine::forward`): the output rows `[N, D * H_out]`, the stacked final
/// states, and what each layer kept for the backward (with `keep_tape`).
fn by_layer(
    cfg: &RnnConfig,
    prep: &super::check::Prepared,
    weights: &[Tensor],
    train: bool,
    keep_tape: bool,
) -> Result<(Tensor, Tensor, Option<Tensor>, Vec<LayerTape>)> {
    let steps = &prep.steps;
    let per_dir = cfg.params_per_direction();
    let dirs = cfg.num_directions();
    let mut layer_input = prep.input.f_contiguous()?;
    let mut h_n = Vec::new();
    let mut c_n = Vec::new();
    let mut tapes = Vec::new();
    for layer in 0..cfg.num_layers {
        let mask = if layer > 0 && train && cfg.dropout > 0.0 {
            Some(crate::dropout::mask(&layer_input, cfg.dropout)?)
        } else {
            None
        };
        if let Some(m) = &mask {
            layer_input = layer_input.f_mul(m)?;
        }
        let mut outs = Vec::new();
        let mut saved = Vec::new();
        for dir in 0..dirs {
            let idx = layer * dirs + dir;
            let start = idx as usize * per_dir;
            let w = DirWeights::from_slice(
                &weights[start..start + per_dir],
                cfg.bias,
                cfg.proj_size > 0,
            );
            let h0 = prep.h0.f_select(0, idx)?;
            let c0 = match &prep.c0 {
                Some(c) => Some(c.f_select(0, idx)?),
                None => None,
            };
            let o = engine::forward(
                cfg.mode,
                &w,
                &layer_input,
                steps,
                &h0,
                c0.as_ref(),
                dir == 1,
                keep_tape,
            )?;
            outs.push(o.out);
            h_n.push(o.h_n);
            c_n.extend(o.c_n);
            saved.push(o.saved);
        }
        layer_input = if outs.len() == 1 {
            outs.pop().unwrap_or_default()
        } else {
            Tensor::f_cat(&outs, 1)?
        };
        if keep_tape {
            tapes.push(LayerTape { mask, dirs: saved });
        }
    }
    let h_n = Tensor::f_stack(&h_n, 0)?;
    let c_n = if c_n.is_empty() {
        None
    } else {
        Some(Tensor::f_stack(&c_n, 0)?)
    };
    Ok((layer_input, h_n, c_n, tapes))
}

fn check_grad(name: &str, grad: &Tensor, want: &[i64]) -> Result<()> {
    if grad.size() != want {
        return Err(Error::shape(format!(
            "gradient of {name} must have shape {want:?}, got {:?}",
            grad.size()
        )));
    }
    Ok(())
}

impl Tape {
    /// The input's gradient, from flat rows to the caller's layout.
    fn input_grad(&self, rows: &Tensor) -> Result<Tensor> {
        let d = self.layout.sequence_out(rows, &self.steps)?;
        check_grad("input", &d, &self.input_shape)?;
        Ok(d)
    }

    /// Checks a gradient against the forward's output it belongs to: its
    /// shape, dtype and device, before any kernel reads it.
    fn check_output_grad(&self, name: &str, grad: &Tensor, want: &[i64]) -> Result<()> {
        check_grad(name, grad, want)?;
        if kind_of(grad)? != Some(self.kind) {
            return Err(Error::shape(format!(
                "gradient of {name} must have the dtype {} of the forward's outputs, got {}",
                dtype_name(self.kind),
                tensor_dtype_name(grad)
            )));
        }
        if grad.device() != self.device {
            return Err(Error::shape(format!(
                "gradient of {name} must be on the forward's device {}, got {}",
                self.device_name,
                tensor_device_name(grad)
            )));
        }
        Ok(())
    }
}

/// Back-propagates through a recorded forward call. The gradients arrive in the
/// caller's layout, shaped like the forward's outputs.
pub fn backward(
    tape: &Tape,
    d_output: &Tensor,
    d_hn: &Tensor,
    d_cn: Option<&Tensor>,
    need_input_grad: bool,
) -> Result<Grads> {
    let _guard = tch::no_grad_guard();
    let cfg = &tape.cfg;
    let layout = tape.layout;
    let want = layout.sequence_shape(&tape.steps, cfg.num_directions() * cfg.real_hidden_size());
    tape.check_output_grad("output", d_output, &want)?;
    tape.check_output_grad("h_n", d_hn, &tape.h_shape)?;
    match (d_cn, &tape.c_shape) {
        (Some(d), Some(want)) => tape.check_output_grad("c_n", d, want)?,
        (None, None) => {}
        (Some(_), None) => {
            return Err(Error::shape(format!(
                "a {} has no c_n, but a gradient of c_n was given",
                cfg.mode.class_name()
            )))
        }
        (None, Some(_)) => return Err(Error::shape("LSTM backward needs the gradient of c_n")),
    }
    if tape.steps.batch() == 0 {
        return empty_batch_grads(tape, need_input_grad);
    }
    let mut d_out = layout.sequence_in(d_output)?.f_contiguous()?;
    let d_hn = layout.state_in(d_hn)?;
    let d_cn = match d_cn {
        Some(c) => Some(layout.state_in(c)?),
        None => None,
    };
    let layers = match &tape.recorded {
        Recorded::Layers(layers) => layers,
        Recorded::Libtorch(saved) => {
            let g = libtorch::backward(saved, &d_out, &d_hn, d_cn.as_ref(), need_input_grad)?;
            return Ok(Grads {
                input: g.input.map(|d| tape.input_grad(&d)).transpose()?,
                hx: layout.state_out(&g.h0)?,
                cx: g.c0.map(|c| layout.state_out(&c)).transpose()?,
                weights: g.weights,
            });
        }
    };
    let dirs = cfg.num_directions();
    let h_out = cfg.real_hidden_size();
    let per_dir = cfg.params_per_direction();
    let mut weight_grads: Vec<Option<Tensor>> = (0..tape.weights.len()).map(|_| None).collect();
    let mut dh0 = Vec::new();
    let mut dc0 = Vec::new();
    let mut d_input = None;
    for layer in (0..cfg.num_layers).rev() {
        let lt = &layers[layer as usize];
        let need_dx = layer > 0 || need_input_grad;
        let mut dx_sum: Option<Tensor> = None;
        for dir in 0..dirs {
            let idx = layer * dirs + dir;
            let start = idx as usize * per_dir;
            let w = DirWeights::from_slice(
                &tape.weights[start..start + per_dir],
                cfg.bias,
                cfg.proj_size > 0,
            );
            let d_dir = if dirs == 1 {
                d_out.shallow_clone()
            } else {
                d_out.f_narrow(1, dir * h_out, h_out)?
            };
            let dh = d_hn.f_select(0, idx)?;
            let dc = match &d_cn {
                Some(c) => Some(c.f_select(0, idx)?),
                None => None,
            };
            let b: DirBackward = engine::backward(
                &w,
                &lt.dirs[dir as usize],
                &d_dir,
                &dh,
                dc.as_ref(),
                need_dx,
            )?;
            dh0.push((idx, b.dh0));
            if let Some(c) = b.dc0 {
                dc0.push((idx, c));
            }
            for (k, g) in b.grads.into_vec().into_iter().enumerate() {
                weight_grads[start + k] = Some(g);
            }
            dx_sum = match (dx_sum, b.dx) {
                (Some(a), Some(b)) => Some(a.f_add(&b)?),
                (a, b) => a.or(b),
            };
        }
        let mut dx = dx_sum;
        if let (Some(m), Some(d)) = (&lt.mask, &dx) {
            dx = Some(d.f_mul(m)?);
        }
        if layer > 0 {
            d_out = dx.ok_or_else(|| Error::shape("missing gradient between layers"))?;
        } else {
            d_input = dx;
        }
    }
    dh0.sort_by_key(|(i, _)| *i);
    dc0.sort_by_key(|(i, _)| *i);
    let stack = |v: Vec<(i64, Tensor)>| -> Result<Tensor> {
        let v: Vec<Tensor> = v.into_iter().map(|(_, t)| t).collect();
        layout.state_out(&Tensor::f_stack(&v, 0)?)
    };
    let input = d_input.map(|d| tape.input_grad(&d)).transpose()?;
    Ok(Grads {
        input,
        hx: stack(dh0)?,
        cx: if dc0.is_empty() {
            None
        } else {
            Some(stack(dc0)?)
        },
        weights: weight_grads
            .into_iter()
            .map(|g| g.unwrap_or_default())
            .collect(),
    })
}

/// The gradients of a forward over an empty batch, as torch.nn gives them:
/// empty for the input and the initial states, zeros for the weights (a sum
/// over no tokens).
fn empty_batch_grads(tape: &Tape, need_input_grad: bool) -> Result<Grads> {
    let like = &tape.weights[0];
    Ok(Grads {
        input: if need_input_grad {
            Some(zeros_on(like, &tape.input_shape)?)
        } else {
            None
        },
        hx: zeros_on(like, &tape.h_shape)?,
        cx: match &tape.c_shape {
            Some(shape) => Some(zeros_on(like, shape)?),
            None => None,
        },
        weights: tape
            .weights
            .iter()
            .map(|w| Ok(w.f_zeros_like()?))
            .collect::<Result<_>>()?,
    })
}

impl Tape {
    /// The engine each layer-direction ran on, layer by layer (`None` where
    /// nothing was kept).
    #[cfg(test)]
    pub(super) fn engines(&self) -> Vec<Vec<Option<engine::Engine>>> {
        match &self.recorded {
            Recorded::Layers(layers) => layers
                .iter()
                .map(|l| l.dirs.iter().map(DirTape::engine).collect())
                .collect(),
            Recorded::Libtorch(_) => Vec::new(),
        }
    }

    /// Whether libtorch's ops ran the whole stack.
    #[cfg(test)]
    pub(super) fn ran_libtorch(&self) -> bool {
        matches!(self.recorded, Recorded::Libtorch(_))
    }

    /// A copy sharing every tensor, so the backward can run on its own thread
    /// while the original stays usable for a second backward pass.
    pub fn shallow_clone(&self) -> Tape {
        Tape {
            cfg: self.cfg.clone(),
            weights: self.weights.iter().map(|w| w.shallow_clone()).collect(),
            recorded: match &self.recorded {
                Recorded::Layers(layers) => Recorded::Layers(
                    layers
                        .iter()
                        .map(|l| LayerTape {
                            mask: l.mask.as_ref().map(|m| m.shallow_clone()),
                            dirs: l.dirs.iter().map(DirTape::shallow_clone).collect(),
                        })
                        .collect(),
                ),
                Recorded::Libtorch(saved) => Recorded::Libtorch(saved.shallow_clone()),
            },
            layout: self.layout,
            steps: self.steps.clone(),
            input_shape: self.input_shape.clone(),
            h_shape: self.h_shape.clone(),
            c_shape: self.c_shape.clone(),
            kind: self.kind,
            device: self.device,
            device_name: self.device_name.clone(),
        }
    }
}
