//! The two floating-point element types the hand-written CPU loops take
//! (float32 and float64), and a contiguous CPU tensor's elements as a slice.

// Values from Python reach this module: no index or slice may panic.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use std::ops::{Add, Div, Mul, Sub};

use tch::{Device, Kind, Tensor};

/// `f32` or `f64`, with what the loops need of them.
pub trait Float:
    Copy + Send + Add<Output = Self> + Sub<Output = Self> + Mul<Output = Self> + Div<Output = Self>
{
    /// `v` rounded to this type.
    fn of(v: f64) -> Self;
    fn sqrt(self) -> Self;
}

impl Float for f32 {
    fn of(v: f64) -> Self {
        v as f32
    }
    fn sqrt(self) -> Self {
        f32::sqrt(self)
    }
}

impl Float for f64 {
    fn of(v: f64) -> Self {
        v
    }
    fn sqrt(self) -> Self {
        f64::sqrt(self)
    }
}

/// The elements of `t`, written in place.
///
/// # Safety
/// `t` is a contiguous CPU tensor whose elements are `T`s; nothing else reads
/// or writes them while the slice lives, and `t`'s storage outlives it.
#[allow(clippy::mut_from_ref)]
pub unsafe fn slice_mut<'a, T: Float>(t: &Tensor) -> &'a mut [T] {
    let n = t.numel();
    if n == 0 {
        return &mut [];
    }
    std::slice::from_raw_parts_mut(t.data_ptr() as *mut T, n)
}

/// Whether `t` holds float32 on the CPU: the fused kernels' one type, and the
/// one oneDNN's products take here.
pub fn float_cpu(t: &Tensor) -> bool {
    t.device() == Device::Cpu && matches!(t.f_kind(), Ok(Kind::Float))
}
