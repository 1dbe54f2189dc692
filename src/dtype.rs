//! What torch calls dtypes and devices, and which dtypes are floating point:
//! the names every message and file uses, and the float checks, in one place.

// Values from Python reach this module: no index or slice may panic.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use tch::{Device, Kind, Tensor};

use crate::error::Result;

/// torch's spelling of a dtype, for messages: `torch.float32`.
pub fn dtype_name(kind: Kind) -> String {
    format!("torch.{}", bare_dtype_name(kind))
}

/// A dtype's name without `torch.` (`float32`): what checkpoints store and
/// `getattr(torch, name)` reads back.
pub fn bare_dtype_name(kind: Kind) -> &'static str {
    match kind {
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
    }
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

/// The inverse of [`bare_dtype_name`] for the floating dtypes a model's
/// parameters may have (a checkpoint's `dtype`).
pub fn parse_param_dtype(name: &str) -> Option<Kind> {
    PARAM_DTYPES
        .into_iter()
        .find(|&k| bare_dtype_name(k) == name)
}

/// The floating dtypes the stacks, the trainer and checkpoints compute in.
pub const PARAM_DTYPES: [Kind; 4] = [Kind::Half, Kind::BFloat16, Kind::Float, Kind::Double];

/// Whether a model's parameters (or a stack's input) may have this dtype.
pub fn is_param_dtype(kind: Kind) -> bool {
    PARAM_DTYPES.contains(&kind)
}

/// torch's `is_floating_point`: every floating dtype, the float8 ones included.
pub fn is_floating_point(kind: Kind) -> bool {
    is_param_dtype(kind)
        || matches!(
            kind,
            Kind::Float8e5m2 | Kind::Float8e4m3fn | Kind::Float8e5m2fnuz | Kind::Float8e4m3fnuz
        )
}
