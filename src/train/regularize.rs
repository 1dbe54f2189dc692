//! AWD-LSTM's regularisation (Merity, Keskar & Socher 2018, "Regularizing and
//! Optimizing LSTM Language Models"), each method an option that is off by
//! default: DropConnect on the recurrent matrices, locked (variational)
//! dropout, embedding dropout, and activation regularisation.
//!
//! Every mask is drawn from torch's default generator through
//! [`crate::dropout::mask`] (one generator draw per mask), in the order the
//! forward pass meets them, so a run repeats under `torch.manual_seed` and a
//! plain-torch reference that draws `rustrnn.functional.dropout_mask` in the
//! same order gets the same masks:
//!
//! 1. embedding dropout: one `[V, 1]` mask (whole word rows);
//! 2. input dropout: one `[1, B, E]` mask (locked), or the model's plain dropout;
//! 3. weight drop: one mask per `weight_hh_l{k}` matrix, layer by layer;
//! 4. between layers: one `[1, B, H]` mask after each layer but the last
//!    (locked), or the stack's own plain dropout;
//! 5. output dropout: one `[1, B, H]` mask (locked), or the model's plain dropout.

use tch::Tensor;

use crate::dropout;
use crate::error::{Error, Result};
use crate::pyfmt::py_float;

/// The methods and their strengths; `None` for a locked dropout means the
/// model's own (plain) dropout stays in that place.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Regularization {
    /// DropConnect on the hidden-to-hidden matrices, one mask per window.
    pub weight_drop: f64,
    /// Locked dropout on the embeddings' output.
    pub dropout_input: Option<f64>,
    /// Locked dropout between recurrent layers.
    pub dropout_hidden: Option<f64>,
    /// Locked dropout on the last layer's output, before the head.
    pub dropout_output: Option<f64>,
    /// Dropout of whole embedding rows (a dropped word is zero wherever it
    /// occurs in the window), the kept rows rescaled by `1 / (1 - p)`.
    pub dropout_embedding: f64,
    /// Activation regularisation: `alpha * mean(dropped_output²)`.
    pub alpha: f64,
    /// Temporal activation regularisation: `beta * mean((h_t - h_{t-1})²)`
    /// on the last layer's output before dropout.
    pub beta: f64,
}

impl Regularization {
    pub fn validate(&self) -> Result<()> {
        let probabilities = [
            ("weight_drop", Some(self.weight_drop)),
            ("dropout_input", self.dropout_input),
            ("dropout_hidden", self.dropout_hidden),
            ("dropout_output", self.dropout_output),
            ("dropout_embedding", Some(self.dropout_embedding)),
        ];
        for (name, p) in probabilities {
            if let Some(p) = p {
                // p = 1 would drop everything: nothing left to learn from.
                if !(0.0..1.0).contains(&p) {
                    return Err(Error::value(format!(
                        "{name} must be in [0, 1), got {}",
                        py_float(p)
                    )));
                }
            }
        }
        for (name, v) in [("alpha", self.alpha), ("beta", self.beta)] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(Error::value(format!(
                    "{name} must be a finite number >= 0, got {}",
                    py_float(v)
                )));
            }
        }
        Ok(())
    }

    /// Whether the stack runs layer by layer (a locked mask between layers).
    pub fn by_layer(&self) -> bool {
        self.dropout_hidden.is_some()
    }
}

/// One locked-dropout mask for `x [T, B, F]`: `[1, B, F]`, shared by every
/// timestep.
pub fn locked_mask(x: &Tensor, p: f64) -> Result<Tensor> {
    let size = x.size();
    let [_, batch, features] = size.as_slice() else {
        return Err(Error::shape(format!(
            "locked dropout takes [T, B, F] sequences, got shape {size:?}"
        )));
    };
    let like = Tensor::f_empty([1, *batch, *features], (x.f_kind()?, x.device()))?;
    dropout::mask(&like, p)
}

/// `x [T, B, F]` times one [`locked_mask`], recorded by autograd; `x` itself
/// (and no draw) when `p` is zero.
pub fn locked(x: &Tensor, p: f64) -> Result<Tensor> {
    if p <= 0.0 {
        return Ok(x.shallow_clone());
    }
    Ok(x.f_mul(&locked_mask(x, p)?)?)
}

/// The embedding table with whole rows dropped (rescaled), recorded by
/// autograd; the table itself when `p` is zero.
pub fn embedding_rows(table: &Tensor, p: f64) -> Result<Tensor> {
    if p <= 0.0 {
        return Ok(table.shallow_clone());
    }
    let rows = table.size().first().copied().unwrap_or(0);
    let like = Tensor::f_empty([rows, 1], (table.f_kind()?, table.device()))?;
    Ok(table.f_mul(&dropout::mask(&like, p)?)?)
}

/// The model's plain dropout where no locked one replaces it.
pub fn locked_or_plain(x: &Tensor, locked_p: Option<f64>, plain_p: f64) -> Result<Tensor> {
    match locked_p {
        Some(p) => locked(x, p),
        None => dropout::apply(x, plain_p),
    }
}

/// Activation and temporal activation regularisation of one window:
/// `alpha * mean(dropped²) + beta * mean((h[1:] - h[:-1])²)`, recorded by
/// autograd; `None` when both are off. `h` and `dropped` are `[T, B, H]`.
pub fn activation_penalty(
    reg: &Regularization,
    h: &Tensor,
    dropped: &Tensor,
) -> Result<Option<Tensor>> {
    let mut total: Option<Tensor> = None;
    let mut add = |t: Tensor| -> Result<()> {
        total = Some(match total.take() {
            Some(s) => s.f_add(&t)?,
            None => t,
        });
        Ok(())
    };
    if reg.alpha > 0.0 {
        add(dropped
            .f_pow_tensor_scalar(2)?
            .f_mean(None::<tch::Kind>)?
            .f_mul_scalar(reg.alpha)?)?;
    }
    let steps = h.size().first().copied().unwrap_or(0);
    if reg.beta > 0.0 && steps > 1 {
        let diff = h
            .f_narrow(0, 1, steps - 1)?
            .f_sub(&h.f_narrow(0, 0, steps - 1)?)?;
        add(diff
            .f_pow_tensor_scalar(2)?
            .f_mean(None::<tch::Kind>)?
            .f_mul_scalar(reg.beta)?)?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn a_locked_mask_is_shared_by_every_timestep() {
        tch::manual_seed(3);
        let x = Tensor::ones([7, 4, 50], (Kind::Double, Device::Cpu));
        let y = locked(&x, 0.5).unwrap();
        for t in 1..7 {
            assert!(y.get(t).equal(&y.get(0)));
        }
        let kept = y.get(0).ne(0.0).sum(Kind::Int64).int64_value(&[]);
        assert!(kept > 40 && kept < 160, "{kept} of 200 kept");
        assert!(y.eq(0.0).logical_or(&y.eq(2.0)).all().int64_value(&[]) == 1);
    }

    #[test]
    fn embedding_dropout_drops_whole_rows() {
        tch::manual_seed(4);
        let t = Tensor::ones([100, 6], (Kind::Float, Device::Cpu));
        let d = embedding_rows(&t, 0.3).unwrap();
        for r in 0..100 {
            let row = d.get(r);
            let first = row.double_value(&[0]);
            assert!(first == 0.0 || (first - 1.0 / 0.7).abs() < 1e-6);
            assert!(
                row.eq(first).all().int64_value(&[]) == 1,
                "row {r} is not one value"
            );
        }
    }

    #[test]
    fn probabilities_of_one_and_negative_strengths_are_refused() {
        let r = Regularization {
            weight_drop: 1.0,
            ..Default::default()
        };
        assert!(r
            .validate()
            .unwrap_err()
            .to_string()
            .contains("weight_drop"));
        let r = Regularization {
            beta: -1.0,
            ..Default::default()
        };
        assert!(r.validate().unwrap_err().to_string().contains("beta"));
        assert!(Regularization::default().validate().is_ok());
    }
}
