//! Input validation for the stacks, with the exception class and wording that
//! torch.nn uses for each mistake, and the layout bookkeeping (unbatched input,
//! `batch_first`) that turns user tensors into the time-major batched form the
//! recurrences work on and back again.

use tch::{Device, Kind, Tensor};

use super::config::{Mode, RnnConfig};
use super::steps::Steps;
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
        let t = rows.f_reshape([steps.len() as i64, steps.batch() as i64, -1])?;
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
        let s = t.size();
        Ok(t.f_reshape([s[0] * s[1], s[2]])?)
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

/// torch's spelling of a dtype, for messages.
pub fn dtype_name(kind: Kind) -> String {
    let name = match kind {
        Kind::Float => "float32",
        Kind::Double => "float64",
        Kind::Half => "float16",
        Kind::BFloat16 => "bfloat16",
        Kind::Int64 => "int64",
        Kind::Int => "int32",
        Kind::Int16 => "int16",
        Kind::Int8 => "int8",
        Kind::Uint8 => "uint8",
        Kind::Bool => "bool",
        other => return format!("{other:?}"),
    };
    format!("torch.{name}")
}

pub fn device_name(device: Device) -> String {
    match device {
        Device::Cpu => "cpu".into(),
        Device::Cuda(i) => format!("cuda:{i}"),
        Device::Mps => "a non-CPU, non-CUDA device".into(),
        Device::Vulkan => "vulkan".into(),
    }
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
    let kind = weights[0].f_kind()?;
    let device = weights[0].device();
    for (w, spec) in weights.iter().zip(&specs) {
        if w.size() != spec.shape {
            return Err(Error::shape(format!(
                "{} must have shape {:?}, got {}",
                spec.name,
                spec.shape,
                dims(w)
            )));
        }
        if w.f_kind()? != kind {
            return Err(Error::shape(format!(
                "all parameters must have one dtype: {} is {}, {} is {}",
                specs[0].name,
                dtype_name(kind),
                spec.name,
                dtype_name(w.f_kind()?)
            )));
        }
        if w.device() != device {
            return Err(Error::shape(format!(
                "all parameters must be on one device: {} is on {}, {} is on {}",
                specs[0].name,
                device_name(device),
                spec.name,
                device_name(w.device())
            )));
        }
    }
    Ok(())
}

fn check_float(kind: Kind, what: &str) -> Result<()> {
    match kind {
        Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16 => Ok(()),
        other => Err(Error::Value(format!(
            "{what} must be a floating-point tensor, got {}",
            dtype_name(other)
        ))),
    }
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

    let param_kind = weights[0].f_kind()?;
    let input_kind = input.f_kind()?;
    if input_kind != param_kind {
        let (input_name, param_name) = (dtype_name(input_kind), dtype_name(param_kind));
        return Err(Error::Value(format!(
            "RNN input dtype ({input_name}) does not match weight dtype ({param_name}). \
             Convert input: input.to({param_name}), or convert model: model.to({input_name})"
        )));
    }
    check_float(input_kind, "input")?;
    let features = input.size()[rank - 1];
    if features != cfg.input_size {
        return Err(Error::Shape(format!(
            "input.size(-1) must be equal to input_size. Expected {}, got {features}",
            cfg.input_size,
        )));
    }
    let device = weights[0].device();
    if input.device() != device {
        return Err(Error::Shape(format!(
            "Input and parameter tensors are not at the same device, found input tensor at {} \
             and parameter tensor at {}",
            device_name(input.device()),
            device_name(device)
        )));
    }
    let steps = match batch_sizes {
        Some(sizes) => Steps::packed(sizes, input.size()[0])?,
        None => {
            let s = layout.time_major(input)?.size();
            if s[0] == 0 {
                return Err(Error::Shape(
                    "Expected sequence length to be larger than 0 in RNN, got 0".into(),
                ));
            }
            Steps::uniform(s[0] as usize, s[1] as usize)
        }
    };
    let batch = steps.batch() as i64;
    let layers = cfg.num_layers * cfg.num_directions();
    let h_shape = [layers, batch, cfg.real_hidden_size()];
    let c_shape = [layers, batch, cfg.hidden_size];
    let opts = (param_kind, device);
    let state = |given: Option<&Tensor>, shape: [i64; 3], which: &str| -> Result<Tensor> {
        let Some(t) = given else {
            return Ok(Tensor::f_zeros(shape, opts)?);
        };
        let t = layout.state_in(t)?;
        if t.size() != shape {
            return Err(Error::Shape(format!(
                "Expected {which} size ({}, {}, {}), got {:?}",
                shape[0],
                shape[1],
                shape[2],
                t.size()
            )));
        }
        let kind = t.f_kind()?;
        if kind != param_kind {
            return Err(Error::Shape(format!(
                "{} must have the type {}, got type {}",
                which.replace("hidden", "hx").replace(" ", ""),
                dtype_name(param_kind),
                dtype_name(kind)
            )));
        }
        if t.device() != device {
            return Err(Error::Shape(format!(
                "Input and hidden tensors are not at the same device, found input tensor at {} \
                 and hidden tensor at {}",
                device_name(device),
                device_name(t.device())
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
