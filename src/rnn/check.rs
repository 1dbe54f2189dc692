//! Input validation for the stacks, with the exception class and wording that
//! torch.nn uses for each mistake, and the layout bookkeeping (unbatched input,
//! `batch_first`) that turns user tensors into the time-major batched form the
//! recurrences work on and back again.

// Values from Python reach this module: no index or slice may panic.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use tch::{Device, Kind, Tensor};

use super::config::{Mode, RnnConfig};
use super::steps::Steps;
use crate::dtype::{dtype_name, is_param_dtype, kind_of, tensor_device_name, tensor_dtype_name};
use crate::error::{Error, Result};

/// How the user laid out the input; undone on every tensor handed back.
/// Inside, a sequence is flat rows `[N, F]` laid out by [`Steps`].
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    pub batch_first: bool,
    pub unbatched: bool,
    /// A `PackedSequence`'s data: already flat rows.
    pub packed: bool,
}

impl Layout {
    /// Flat rows `[N, F]` -> the user's layout.
    pub fn sequence_out(&self, rows: &Tensor, steps: &Steps) -> Result<Tensor> {
        if self.packed {
            return Ok(rows.shallow_clone());
        }
        let features = rows.size2()?.1;
        let t = rows.f_reshape([steps.len() as i64, steps.batch() as i64, features])?;
        Ok(if self.unbatched {
            t.f_squeeze_dim(1)?
        } else if self.batch_first {
            t.f_transpose(0, 1)?
        } else {
            t
        })
    }

    /// The shape `sequence_out` gives a sequence of `features` columns.
    pub fn sequence_shape(&self, steps: &Steps, features: i64) -> Vec<i64> {
        let (len, batch) = (steps.len() as i64, steps.batch() as i64);
        if self.packed {
            vec![steps.rows() as i64, features]
        } else if self.unbatched {
            vec![len, features]
        } else if self.batch_first {
            vec![batch, len, features]
        } else {
            vec![len, batch, features]
        }
    }

    /// The user's layout -> time-major `[T, B, F]`, not yet flattened.
    fn time_major(&self, t: &Tensor) -> Result<Tensor> {
        Ok(if self.unbatched {
            t.f_unsqueeze(1)?
        } else if self.batch_first {
            t.f_transpose(0, 1)?
        } else {
            t.shallow_clone()
        })
    }

    /// The user's layout -> flat rows `[N, F]` (the inverse of `sequence_out`).
    pub fn sequence_in(&self, t: &Tensor) -> Result<Tensor> {
        if self.packed {
            return Ok(t.shallow_clone());
        }
        let t = self.time_major(t)?;
        let &[steps, batch, features] = t.size().as_slice() else {
            return Err(Error::shape(format!(
                "expected a 3-D sequence, got {}",
                dims(&t)
            )));
        };
        Ok(t.f_reshape([steps * batch, features])?)
    }

    /// `[L*D, B, H]` state -> the user's layout (`batch_first` never applies to states).
    pub fn state_out(&self, t: &Tensor) -> Result<Tensor> {
        Ok(if self.unbatched {
            t.f_squeeze_dim(1)?
        } else {
            t.shallow_clone()
        })
    }

    pub fn state_in(&self, t: &Tensor) -> Result<Tensor> {
        Ok(if self.unbatched {
            t.f_unsqueeze(1)?
        } else {
            t.shallow_clone()
        })
    }
}

/// Inputs made ready for the stack: flat rows, batched, with initial states.
pub struct Prepared {
    /// `[N, I]`.
    pub input: Tensor,
    pub steps: Steps,
    pub h0: Tensor,
    pub c0: Option<Tensor>,
    pub layout: Layout,
}

/// An uninitialized tensor of `shape` with `like`'s dtype and device, on
/// every device: tch reports those it does not know (meta among them) as
/// `Mps`, and creating one on `Mps` would ask for the real MPS backend.
pub fn empty_on(like: &Tensor, shape: &[i64]) -> Result<Tensor> {
    Ok(match like.device() {
        Device::Mps => like.f_empty_like()?.f_resize_(shape)?,
        device => Tensor::f_empty(shape, (like.f_kind()?, device))?,
    })
}

/// [`empty_on`], zeroed.
pub fn zeros_on(like: &Tensor, shape: &[i64]) -> Result<Tensor> {
    Ok(match like.device() {
        Device::Mps => empty_on(like, shape)?.f_zero_()?,
        device => Tensor::f_zeros(shape, (like.f_kind()?, device))?,
    })
}

fn dims(t: &Tensor) -> String {
    format!("{:?}", t.size())
}

/// Checks that the flat weight list has torch's names' shapes, one dtype and one device.
pub fn check_weights(cfg: &RnnConfig, weights: &[Tensor]) -> Result<()> {
    let specs = cfg.param_specs();
    if weights.len() != specs.len() {
        return Err(Error::shape(format!(
            "expected {} weight tensors for this {}, got {}",
            specs.len(),
            cfg.mode.class_name(),
            weights.len()
        )));
    }
    let (Some(first), Some(first_spec)) = (weights.first(), specs.first()) else {
        return Ok(()); // no parameters: nothing to agree
    };
    let kind = first.f_kind()?;
    let device = first.device();
    for (w, spec) in weights.iter().zip(&specs) {
        if w.size() != spec.shape {
            return Err(Error::shape(format!(
                "{} must have shape {:?}, got {}",
                spec.name,
                spec.shape,
                dims(w)
            )));
        }
        if kind_of(w)? != Some(kind) {
            return Err(Error::shape(format!(
                "all parameters must have one dtype: {} is {}, {} is {}",
                first_spec.name,
                dtype_name(kind),
                spec.name,
                tensor_dtype_name(w)
            )));
        }
        if w.device() != device {
            return Err(Error::shape(format!(
                "all parameters must be on one device: {} is on {}, {} is on {}",
                first_spec.name,
                tensor_device_name(first),
                spec.name,
                tensor_device_name(w)
            )));
        }
    }
    Ok(())
}

fn check_float(kind: Kind, what: &str) -> Result<()> {
    if is_param_dtype(kind) {
        return Ok(());
    }
    Err(Error::Value(format!(
        "{what} must be a floating-point tensor, got {}",
        dtype_name(kind)
    )))
}

/// Validates `input` and the optional states against the stack and returns
/// them as flat rows, batched, with zero states where none were given.
/// With `batch_sizes`, `input` is a `PackedSequence`'s data `[N, H_in]`
/// and the states are in its sorted order.
pub fn prepare(
    cfg: &RnnConfig,
    input: &Tensor,
    batch_sizes: Option<&[i64]>,
    hx: Option<&Tensor>,
    cx: Option<&Tensor>,
    weights: &[Tensor],
) -> Result<Prepared> {
    check_weights(cfg, weights)?;
    let name = cfg.mode.class_name();
    let rank = input.dim();
    let packed = batch_sizes.is_some();
    if packed && rank != 2 {
        return Err(Error::Value(format!(
            "{name}: Expected packed input data to be 2D (rows, features), got {rank}D instead"
        )));
    }
    if rank != 2 && rank != 3 {
        return Err(Error::Value(format!(
            "{name}: Expected input to be 2D or 3D, got {rank}D instead"
        )));
    }
    let unbatched = rank == 2 && !packed;
    let is_lstm = cfg.mode == Mode::Lstm;
    if cx.is_some() && !is_lstm {
        return Err(Error::Type(format!(
            "{name} takes a single hidden state tensor, not (h_0, c_0)"
        )));
    }
    if is_lstm && hx.is_some() != cx.is_some() {
        return Err(Error::Type(
            "LSTM expects hx as a tuple (h_0, c_0) of two tensors".into(),
        ));
    }
    if let Some(h) = hx {
        let want = if unbatched { 2 } else { 3 };
        let (kind, batched) = if unbatched {
            ("unbatched 2-D", "2-D")
        } else {
            ("batched 3-D", "3-D")
        };
        let bad = h.dim() != want || cx.is_some_and(|c| c.dim() != want);
        if bad {
            return Err(Error::Shape(match cx {
                Some(c) => format!(
                    "For {kind} input, hx and cx should also be {batched} but got ({}-D, {}-D) tensors",
                    h.dim(),
                    c.dim()
                ),
                None => format!(
                    "For {kind} input, hx should also be {batched} but got {}-D tensor",
                    h.dim()
                ),
            }));
        }
    }
    let layout = Layout {
        batch_first: cfg.batch_first,
        unbatched,
        packed,
    };

    let first = weights
        .first()
        .ok_or_else(|| Error::shape(format!("{name} has no parameters")))?;
    let param_kind = first.f_kind()?;
    let Some(input_kind) = kind_of(input)?.filter(|&k| k == param_kind) else {
        let (input_name, param_name) = (tensor_dtype_name(input), dtype_name(param_kind));
        return Err(Error::Value(format!(
            "RNN input dtype ({input_name}) does not match weight dtype ({param_name}). \
             Convert input: input.to({param_name}), or convert model: model.to({input_name})"
        )));
    };
    check_float(input_kind, "input")?;
    let features = input.size().last().copied().unwrap_or(0);
    if features != cfg.input_size {
        return Err(Error::Shape(format!(
            "input.size(-1) must be equal to input_size. Expected {}, got {features}",
            cfg.input_size,
        )));
    }
    let device = first.device();
    if input.device() != device {
        return Err(Error::Shape(format!(
            "Input and parameter tensors are not at the same device, found input tensor at {} \
             and parameter tensor at {}",
            tensor_device_name(input),
            tensor_device_name(first)
        )));
    }
    let steps = match batch_sizes {
        Some(sizes) => Steps::packed(sizes, input.size().first().copied().unwrap_or(0))?,
        None => {
            let &[steps, batch, _] = layout.time_major(input)?.size().as_slice() else {
                return Err(Error::shape(format!(
                    "expected a 3-D input, got {}",
                    dims(input)
                )));
            };
            if steps == 0 {
                return Err(Error::Shape(
                    "Expected sequence length to be larger than 0 in RNN, got 0".into(),
                ));
            }
            Steps::uniform(steps as usize, batch as usize)
        }
    };
    let batch = steps.batch() as i64;
    let layers = cfg.num_layers * cfg.num_directions();
    let h_shape = [layers, batch, cfg.real_hidden_size()];
    let c_shape = [layers, batch, cfg.hidden_size];
    let state = |given: Option<&Tensor>, shape: [i64; 3], which: &str| -> Result<Tensor> {
        let Some(t) = given else {
            return zeros_on(first, &shape);
        };
        let t = layout.state_in(t)?;
        if t.size() != shape {
            let [layers, batch, hidden] = shape;
            return Err(Error::Shape(format!(
                "Expected {which} size ({layers}, {batch}, {hidden}), got {:?}",
                t.size()
            )));
        }
        if kind_of(&t)? != Some(param_kind) {
            return Err(Error::Shape(format!(
                "{} must have the type {}, got type {}",
                which.replace("hidden", "hx").replace(" ", ""),
                dtype_name(param_kind),
                tensor_dtype_name(&t)
            )));
        }
        if t.device() != device {
            return Err(Error::Shape(format!(
                "Input and hidden tensors are not at the same device, found input tensor at {} \
                 and hidden tensor at {}",
                tensor_device_name(first),
                tensor_device_name(&t)
            )));
        }
        Ok(t)
    };
    let (h0, c0) = if is_lstm {
        (
            state(hx, h_shape, "hidden[0]")?,
            Some(state(cx, c_shape, "hidden[1]")?),
        )
    } else {
        (state(hx, h_shape, "hidden")?, None)
    };
    Ok(Prepared {
        input: layout.sequence_in(input)?,
        steps,
        h0,
        c0,
        layout,
    })
}
