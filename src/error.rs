//! The one error type of the Rust core.
//!
//! Each variant stands for the Python exception class that torch raises for the
//! same mistake; the mapping itself lives in `python/errors.rs`, in one place.

// Values from Python reach this module: no index or slice may panic.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use std::path::PathBuf;

use tch::{Device, Kind, Tensor};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A bad argument value (torch raises `ValueError`): constructor arguments,
    /// wrong input rank, a dtype differing from the parameters.
    #[error("{0}")]
    Value(String),
    /// A shape, size or device mismatch found while computing (torch raises `RuntimeError`).
    #[error("{0}")]
    Shape(String),
    /// An argument of the wrong type (`TypeError`).
    #[error("{0}")]
    Type(String),
    /// An index outside its range (`IndexError`).
    #[error("{0}")]
    Index(String),
    /// A missing key, such as a token outside the vocabulary (`KeyError`).
    #[error("{0}")]
    Key(String),
    /// A file that exists but is not what it should be (`ValueError`, naming the file).
    #[error("{}: {message}", path.display())]
    Format { path: PathBuf, message: String },
    /// A file that could not be read or written (`OSError`, naming the file).
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Training produced a loss that is not a finite number (`FloatingPointError`).
    #[error("{0}")]
    NonFinite(String),
    /// The user asked the work to stop (Ctrl-C; `KeyboardInterrupt`).
    #[error("interrupted")]
    Interrupted,
    /// An error reported by libtorch (`RuntimeError`); a dtype tch does not
    /// know is named as torch names it.
    #[error("{}", torch_message(.0))]
    Torch(#[from] tch::TchError),
}

fn torch_message(err: &tch::TchError) -> String {
    match err {
        tch::TchError::UnknownKind(code) => format!(
            "unsupported dtype {}: rustrnn's libtorch binding has no such type",
            dtype_code_name(*code)
        ),
        other => other.to_string(),
    }
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
        Kind::ComplexHalf => "complex32",
        Kind::ComplexFloat => "complex64",
        Kind::ComplexDouble => "complex128",
        Kind::QInt8 => "qint8",
        Kind::QUInt8 => "quint8",
        Kind::QInt32 => "qint32",
        Kind::Float8e5m2 => "float8_e5m2",
        Kind::Float8e4m3fn => "float8_e4m3fn",
        Kind::Float8e5m2fnuz => "float8_e5m2fnuz",
        Kind::Float8e4m3fnuz => "float8_e4m3fnuz",
    };
    format!("torch.{name}")
}

/// A tensor's dtype, `None` for one tch has no `Kind` for (`torch.uint16`, ...).
pub fn kind_of(t: &Tensor) -> Result<Option<Kind>> {
    match t.f_kind() {
        Ok(kind) => Ok(Some(kind)),
        Err(tch::TchError::UnknownKind(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// torch's spelling of a tensor's dtype, whatever it is.
pub fn tensor_dtype_name(t: &Tensor) -> String {
    match t.f_kind() {
        Ok(kind) => dtype_name(kind),
        Err(tch::TchError::UnknownKind(code)) => dtype_code_name(code),
        Err(_) => "of unknown type".into(),
    }
}

/// torch's spelling of the dtype with c10's `ScalarType` number `code`,
/// for the types tch 0.26 has no `Kind` for (it reports them as
/// `UnknownKind(code)`), in c10's order.
pub fn dtype_code_name(code: i32) -> String {
    let name = match code {
        16 => "quint4x2",
        17 => "quint2x4",
        18 => "bits1x8",
        19 => "bits2x4",
        20 => "bits4x2",
        21 => "bits8",
        22 => "bits16",
        27 => "uint16",
        28 => "uint32",
        29 => "uint64",
        30..=36 => return format!("torch.uint{}", code - 29),
        37..=43 => return format!("torch.int{}", code - 36),
        44 => "float8_e8m0fnu",
        45 => "float4_e2m1fn_x2",
        _ => return format!("of c10 ScalarType {code}"),
    };
    format!("torch.{name}")
}

/// torch's spelling of a device, for messages. tch reports every device it
/// does not know (meta among them) as `Mps`: see [`tensor_device_name`].
pub fn device_name(device: Device) -> String {
    match device {
        Device::Cpu => "cpu".into(),
        Device::Cuda(i) => format!("cuda:{i}"),
        Device::Mps => "mps (or another device: meta, xla, ...)".into(),
        Device::Vulkan => "vulkan".into(),
    }
}

/// [`device_name`] of a tensor's device, telling meta tensors (storage
/// without memory) apart from the others tch calls `Mps`.
pub fn tensor_device_name(t: &Tensor) -> String {
    match t.device() {
        Device::Mps if t.numel() > 0 && t.data_ptr().is_null() => "meta".into(),
        d => device_name(d),
    }
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn value(msg: impl Into<String>) -> Self {
        Error::Value(msg.into())
    }
    pub fn shape(msg: impl Into<String>) -> Self {
        Error::Shape(msg.into())
    }
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
    pub fn format(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Format {
            path: path.into(),
            message: message.into(),
        }
    }
}
