//! Where the uniforms come from: the [`UniformSource`] trait, libtorch's
//! default generator behind it ([`DefaultGenerator`]), and `uniforms`, how
//! the samplers ask a source for a draw and check its answer.
//!
//! Every random number is a float64 uniform in `[0, 1)` asked of a
//! [`UniformSource`]. [`DefaultGenerator`] draws them with `torch.rand` from
//! libtorch's default generator of the input's device, so `torch.manual_seed`
//! makes every draw repeat exactly; the Python glue supplies a source that
//! calls `torch.rand(..., generator=g)` to honour an explicit `torch.Generator`.
//! Nothing is drawn before the input has been validated, so a call that fails
//! leaves the generator where it was.

// Values from Python reach this module: no index or slice may panic.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};

/// Where the uniforms come from.
pub trait UniformSource {
    /// A float64 tensor of `shape` on `device`, uniform in `[0, 1)`.
    fn uniform(&mut self, shape: &[i64], device: Device) -> Result<Tensor>;

    /// `[steps, rows]` uniforms for `steps` successive draws of `rows` values
    /// each: the same values as `steps` calls asking for `[rows]`.
    fn uniform_steps(&mut self, steps: i64, rows: i64, device: Device) -> Result<Tensor> {
        self.uniform(&[steps, rows], device)
    }
}

/// libtorch's default generator of each device (what `torch.manual_seed` seeds).
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultGenerator;

impl UniformSource for DefaultGenerator {
    fn uniform(&mut self, shape: &[i64], device: Device) -> Result<Tensor> {
        Ok(Tensor::f_rand(shape, (Kind::Double, device))?)
    }
}

/// Asks `rng` for uniforms and checks that it answered what was asked.
pub(super) fn uniforms<R: UniformSource + ?Sized>(
    rng: &mut R,
    shape: &[i64],
    device: Device,
) -> Result<Tensor> {
    let u = rng.uniform(shape, device)?;
    if u.size() != shape {
        return Err(Error::shape(format!(
            "the uniform source returned a tensor of shape {:?}, expected {shape:?}",
            u.size()
        )));
    }
    if u.f_kind()? == Kind::Double && u.device() == device {
        Ok(u)
    } else {
        Ok(u.f_to_device(device)?.f_to_kind(Kind::Double)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampler::{multinomial, sample_logits, SampleOptions};

    /// Keeps what the default generator gave, to replay it.
    struct Recording(Vec<Tensor>);

    impl UniformSource for Recording {
        fn uniform(&mut self, shape: &[i64], device: Device) -> Result<Tensor> {
            let u = DefaultGenerator.uniform(shape, device)?;
            self.0.push(u.copy());
            Ok(u)
        }
    }

    struct Replay(Vec<Tensor>);

    impl UniformSource for Replay {
        fn uniform(&mut self, _shape: &[i64], _device: Device) -> Result<Tensor> {
            Ok(self.0.remove(0))
        }
    }

    /// The same uniforms give the same draws (whatever the thread count; the
    /// global `manual_seed` is tested from Python, where no other test runs
    /// concurrently on the default generator); fresh ones give others.
    #[test]
    fn draws_depend_only_on_the_uniforms() {
        let w = Tensor::rand([2000, 100], (Kind::Float, Device::Cpu));
        let logits = Tensor::randn([3, 1000], (Kind::Float, Device::Cpu));
        let opts = SampleOptions {
            top_p: Some(0.9),
            ..Default::default()
        };
        for replacement in [true, false] {
            let mut rec = Recording(Vec::new());
            let a = multinomial(&w, 5, replacement, &mut rec).unwrap();
            let s = sample_logits(&logits, &opts, &mut rec).unwrap();
            let mut replay = Replay(rec.0);
            assert!(a.equal(&multinomial(&w, 5, replacement, &mut replay).unwrap()));
            assert!(s.equal(&sample_logits(&logits, &opts, &mut replay).unwrap()));
            let b = multinomial(&w, 5, replacement, &mut DefaultGenerator).unwrap();
            assert!(!a.equal(&b));
        }
    }
}
