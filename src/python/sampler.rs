//! Bindings for `crate::sampler`: argument conversion, the `generator=` hook
//! and GIL release; the algorithms are in the core.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

use super::guard::guard;
use pyo3::types::{PyBool, PyDict, PyInt, PyTuple};
use pyo3_tch::PyTensor;
use tch::{Device, Tensor};

use crate::error::{Error, Result};
use crate::sampler::{self, DefaultGenerator, Penalties, SampleOptions, UniformSource};

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(multinomial, m)?)?;
    m.add_function(wrap_pyfunction!(sample, m)?)?;
    m.add_function(wrap_pyfunction!(process_logits, m)?)?;
    Ok(())
}

/// Draws category indices from rows of non-negative weights: torch.multinomial's contract.
///
/// Args:
///     input: `(C,)` or `(R, C)` floating-point weights, finite and >= 0; they need
///         not sum to 1, but every row needs a positive sum.
///     num_samples: samples per row, >= 1 (at most C without replacement).
///     replacement: draw with replacement; otherwise the indices of a row are
///         distinct and in the order they were drawn.
///     generator: a `torch.Generator` on the input's device to draw from;
///         None uses torch's default generator (seeded by `torch.manual_seed`).
///
/// Returns:
///     int64 indices of shape `(num_samples,)` or `(R, num_samples)`, on the
///     input's device.
///
/// Raises:
///     RuntimeError: as torch.multinomial does (input not 1-D/2-D, integer dtype,
///         num_samples <= 0, more samples than categories without replacement,
///         a negative/inf/nan weight, a row summing to zero), and, unlike torch,
///         when a row has fewer non-zero weights than num_samples without
///         replacement: a zero-weight category is never returned.
///     TypeError: input not a tensor, num_samples not an int, generator not a
///         torch.Generator.
#[pyfunction]
#[pyo3(signature = (input, num_samples, replacement=false, *, generator=None))]
fn multinomial(
    py: Python<'_>,
    input: PyTensor,
    num_samples: &Bound<'_, PyAny>,
    replacement: bool,
    generator: Option<Bound<'_, PyAny>>,
) -> PyResult<PyTensor> {
    guard("multinomial", || {
        let num_samples = int_arg("multinomial", "num_samples", num_samples)?;
        let input = input.0;
        let out = with_rng(py, "multinomial", generator, false, move |rng| {
            sampler::multinomial(&input, num_samples, replacement, rng)
        })?;
        Ok(PyTensor(out))
    })
}

/// Next-token ids from logits, with temperature, top-k, top-p (nucleus) or greedy decoding.
///
/// Args:
///     logits: `(V,)` or `(B, V)` floating-point logits; `-inf` masks a token
///         (never drawn); nan and `+inf` are errors.
///     temperature: > 0; divides the logits after subtracting each row's maximum,
///         so tiny temperatures (1e-8) approach greedy without overflow.
///     top_k: keep only the k largest logits (k >= 1) and any tied with the
///         k-th, as transformers' TopKLogitsWarper keeps them; or None.
///     top_p: keep the smallest set of most likely tokens whose probability
///         reaches top_p, in (0, 1] (applied after top_k), or None. At least one
///         token is always kept.
///     greedy: return the argmax (the first on ties) of the penalized logits
///         and ignore the other options.
///     generator: a `torch.Generator` on the logits' device, or None for torch's
///         default generator.
///     min_p: drop tokens less likely than min_p times the most likely one, in
///         [0, 1], or None.
///     typical_p: typical sampling's mass, in (0, 1] (1 or None: off).
///     repetition_penalty: CTRL's rule on the tokens in `previous` (> 0; 1 is off).
///     frequency_penalty, presence_penalty: subtracted from a seen token's logit
///         per occurrence, and once.
///     no_repeat_ngram_size: never complete an n-gram of this size already in
///         `previous` (0 is off).
///     previous: the tokens seen so far (the prompt and what followed), an
///         int64 `(n,)` tensor for every row or `(B, n)` one row each; the
///         penalties look at it.
///
/// The options apply in transformers' order: the penalties (repetition,
/// frequency and presence, no repeated n-grams), then temperature, top-k,
/// top-p, min-p and typical. A removed token is never drawn.
///
/// Returns:
///     int64 token ids: a 0-d tensor for `(V,)` logits, shape `(B,)` for `(B, V)`.
///
/// Raises:
///     ValueError: temperature <= 0 (or not finite), top_k < 1, top_p outside (0, 1].
///     RuntimeError: logits not 1-D/2-D or not floating point, a nan or +inf
///         logit, a row whose logits are all -inf.
#[pyfunction]
#[pyo3(signature = (logits, temperature=1.0, top_k=None, top_p=None, greedy=false, generator=None,
                    *, min_p=None, typical_p=None, repetition_penalty=1.0, frequency_penalty=0.0,
                    presence_penalty=0.0, no_repeat_ngram_size=0, previous=None))]
#[allow(clippy::too_many_arguments)]
fn sample(
    py: Python<'_>,
    logits: PyTensor,
    temperature: f64,
    top_k: Option<&Bound<'_, PyAny>>,
    top_p: Option<f64>,
    greedy: bool,
    generator: Option<Bound<'_, PyAny>>,
    min_p: Option<f64>,
    typical_p: Option<f64>,
    repetition_penalty: f64,
    frequency_penalty: f64,
    presence_penalty: f64,
    no_repeat_ngram_size: usize,
    previous: Option<PyTensor>,
) -> PyResult<PyTensor> {
    guard("sample", || {
        let top_k = top_k.map(|k| int_arg("sample", "top_k", k)).transpose()?;
        let opts = with_chain(
            SampleOptions::new(temperature, top_k, top_p, greedy)?,
            min_p,
            typical_p,
            [repetition_penalty, frequency_penalty, presence_penalty],
            no_repeat_ngram_size,
        )?;
        let logits = logits.0;
        let previous = previous.map(|p| p.0);
        let out = with_rng(py, "sample", generator, false, move |rng| {
            sampler::sample_after(&logits, previous.as_ref(), &opts, rng)
        })?;
        Ok(PyTensor(out))
    })
}

/// The logits `sample` draws from: `logits` after the decoding chain (the
/// penalties on `previous`, then temperature, top-k, top-p, min-p and
/// typical, in transformers' order), removed tokens `-inf`, float32. The
/// arguments are `sample`'s.
#[pyfunction]
#[pyo3(signature = (logits, temperature=1.0, top_k=None, top_p=None, *, min_p=None,
                    typical_p=None, repetition_penalty=1.0, frequency_penalty=0.0,
                    presence_penalty=0.0, no_repeat_ngram_size=0, previous=None))]
#[allow(clippy::too_many_arguments)]
pub fn process_logits(
    py: Python<'_>,
    logits: PyTensor,
    temperature: f64,
    top_k: Option<&Bound<'_, PyAny>>,
    top_p: Option<f64>,
    min_p: Option<f64>,
    typical_p: Option<f64>,
    repetition_penalty: f64,
    frequency_penalty: f64,
    presence_penalty: f64,
    no_repeat_ngram_size: usize,
    previous: Option<PyTensor>,
) -> PyResult<PyTensor> {
    guard("process_logits", || {
        let top_k = top_k
            .map(|k| int_arg("process_logits", "top_k", k))
            .transpose()?;
        let opts = with_chain(
            SampleOptions::new(temperature, top_k, top_p, false)?,
            min_p,
            typical_p,
            [repetition_penalty, frequency_penalty, presence_penalty],
            no_repeat_ngram_size,
        )?;
        let (logits, previous) = (logits.0, previous.map(|p| p.0));
        let out =
            py.allow_threads(move || sampler::process_logits(&logits, previous.as_ref(), &opts))?;
        Ok(PyTensor(out))
    })
}

/// `base` with the decoding chain's keyword arguments (`sample`,
/// `process_logits`, `generate`): min-p, typical, and the repetition,
/// frequency and presence penalties and the n-gram ban; validated.
pub(crate) fn with_chain(
    base: SampleOptions,
    min_p: Option<f64>,
    typical_p: Option<f64>,
    [repetition, frequency, presence]: [f64; 3],
    no_repeat_ngram: usize,
) -> crate::error::Result<SampleOptions> {
    let penalties = Penalties {
        repetition,
        frequency,
        presence,
        no_repeat_ngram,
    };
    base.with_chain(min_p, typical_p, penalties)
}

/// An int argument, refusing bool as torch does; an int outside int64 is
/// torch's ValueError ("Overflow when unpacking long long").
pub(crate) fn int_arg(func: &str, name: &str, value: &Bound<'_, PyAny>) -> PyResult<i64> {
    if value.is_instance_of::<PyBool>() {
        return Err(PyTypeError::new_err(format!(
            "{func}(): argument '{name}' must be int, not bool"
        )));
    }
    if value.is_instance_of::<PyInt>() {
        return value.extract::<i64>().map_err(|_| {
            PyValueError::new_err(format!(
                "{func}(): argument '{name}' = {value} does not fit in int64: \
                 Overflow when unpacking long long"
            ))
        });
    }
    value.extract::<i64>().map_err(|_| {
        let type_name = value
            .get_type()
            .name()
            .map_or_else(|_| "object".to_string(), |n| n.to_string());
        PyTypeError::new_err(format!(
            "{func}(): argument '{name}' must be int, not {type_name}"
        ))
    })
}

/// Runs `work` without the GIL, drawing its uniforms from `generator` (a
/// `torch.Generator`) when given, else from torch's default generator.
/// With `on_cpu` a CPU generator's uniforms are drawn on the CPU and moved to
/// the device asked for; a generator on that device draws there.
pub(crate) fn with_rng<T, F>(
    py: Python<'_>,
    func: &str,
    generator: Option<Bound<'_, PyAny>>,
    on_cpu: bool,
    work: F,
) -> PyResult<T>
where
    T: Send,
    F: FnOnce(&mut dyn UniformSource) -> Result<T> + Send,
{
    let Some(generator) = generator else {
        return Ok(py.allow_threads(move || work(&mut DefaultGenerator))?);
    };
    let generator_type = py.import("torch")?.getattr("Generator")?;
    if !generator.is_instance(&generator_type)? {
        let type_name = generator.get_type().name()?.to_string();
        return Err(PyTypeError::new_err(format!(
            "{func}(): argument 'generator' must be torch.Generator, not {type_name}"
        )));
    }
    // A generator on another device (the model's CUDA device) draws there.
    let on_cpu = on_cpu
        && generator
            .getattr("device")?
            .getattr("type")?
            .extract::<String>()?
            == "cpu";
    let mut source = TorchGenerator {
        generator: generator.unbind(),
        on_cpu,
        error: None,
    };
    let result = py.allow_threads(|| work(&mut source));
    // An exception raised by torch.rand (a generator on the wrong device, say)
    // comes back as it was raised.
    result.map_err(|e| source.error.take().unwrap_or_else(|| e.into()))
}

/// Uniforms from `torch.rand(shape, generator=g, dtype=torch.float64, device=...)`,
/// taken with the GIL re-acquired.
struct TorchGenerator {
    generator: Py<PyAny>,
    on_cpu: bool,
    error: Option<PyErr>,
}

impl UniformSource for TorchGenerator {
    fn uniform(&mut self, shape: &[i64], device: Device) -> Result<Tensor> {
        let on = if self.on_cpu { Device::Cpu } else { device };
        let drawn = Python::with_gil(|py| -> PyResult<Tensor> {
            let torch = py.import("torch")?;
            let kwargs = PyDict::new(py);
            kwargs.set_item("generator", self.generator.bind(py))?;
            kwargs.set_item("dtype", torch.getattr("float64")?)?;
            kwargs.set_item("device", device_string(on))?;
            let size = PyTuple::new(py, shape)?;
            Ok(torch
                .getattr("rand")?
                .call((size,), Some(&kwargs))?
                .extract::<PyTensor>()?
                .0)
        });
        let drawn = drawn.map_err(|e| {
            let msg = e.to_string();
            self.error = Some(e);
            Error::Shape(msg)
        })?;
        Ok(if on == device {
            drawn
        } else {
            drawn.f_to_device(device)?
        })
    }
}

/// The device as torch spells it in `device=`.
fn device_string(device: Device) -> String {
    match device {
        Device::Cpu => "cpu".into(),
        Device::Cuda(i) => format!("cuda:{i}"),
        Device::Mps => "mps".into(),
        Device::Vulkan => "vulkan".into(),
    }
}
