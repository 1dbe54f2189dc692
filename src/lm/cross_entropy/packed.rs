//! The head's forward product `z = x_c W^T + b` on the fused kernels' output
//! tile (`kernel::block`, `Pointwise::Linear`), over the head packed once per
//! pass (a training step's, whose weights change every step) or once for
//! many passes by the caller (scoring, evaluation).
//!
//! Why not libtorch's `addmm`: its MKL runs a generic path on AMD CPUs.
//! Measured on an AMD EPYC Zen 4 (2 threads, best of 20, one process), rows x
//! H x V: 512 x 256 x 4,196 ran at 177 GFLOP/s packed against MKL's 91, 512 x
//! 128 x 4,196 at 173 against 144, 256 x 256 x 10,000 at 184 against 135, 128
//! x 650 x 33,278 at 203 against 92. Packing costs a transpose of `W`,
//! against a product per chunk ([`MIN_ROWS`]). Only the AVX-512 tile is
//! used: the AVX2 tile (three rows at a time, capped on the same machine)
//! ran level with MKL, whose AMD path is AVX2 too, 60-72 against 48-63
//! GFLOP/s on those shapes under load.
//!
//! The backward products (`e W` and `e^T x`) then run on `kernel::gemm`
//! ([`product`]), over the `[k, V]` columns of the stride-wide `e`, for the
//! same reason. In training the head is packed every step; with the
//! transposing packer (`PackedLayer::linear`) that cost 0.1-0.2 ms at 2,001 x
//! 200 and 2.0-2.3 ms at 10,000 x 200 (most of it the page faults of a fresh
//! buffer), and the fused head's forward and backward at 700 rows ran 10-15%
//! faster at 10,000 x 200 and 15-18% at 33,278 x 650 than with `addmm`
//! (AMD Zen 4, 2 threads).

use tch::Tensor;

use crate::error::{Error, Result};
use crate::float::float_cpu;
use crate::kernel::block::{self, Dest, Isa, Job, Pointwise};
use crate::kernel::gemm::{self, Strided};
use crate::kernel::lanes::LANES;
use crate::kernel::packed::{Dense, PackedLayer, SLOTS};
use crate::kernel::team::{self, SharedBuf, SpinBarrier};
use crate::rnn::fused::packing::Floats;

/// Fewest rows for which packing pays. Packing is a transpose of `W`, which
/// took 1.0 ms for 4,196 x 256 and 96 ms for 33,278 x 650 with the column
/// walk that preceded the transposing packer (`PackedLayer::linear`, 2-4x
/// faster); the tile saves about 6.5 and 255 µs a row there, so those shapes
/// broke even near 150 and 380 rows. Fewer rows (one line's `full_scores`,
/// a short text's `log_prob`) stay on `addmm`.
pub const MIN_ROWS: i64 = 512;

/// The head packed for the output tile, and the team that runs it.
pub struct PackedHead {
    layer: PackedLayer,
    /// Columns of a row of logits: `V` rounded up to a block (64).
    pub(super) stride: usize,
    vocab: usize,
    isa: Isa,
    threads: usize,
    barrier: SpinBarrier,
}

impl PackedHead {
    /// `w` `[V, H]` and `b` `[V]`, float32 on the CPU, for products of `n`
    /// rows in all, on this CPU's instruction set and libtorch's threads;
    /// `None` where the tile does not apply (another instruction set,
    /// another dtype or device, fewer than [`MIN_ROWS`] rows).
    pub fn new(w: &Tensor, b: Option<&Tensor>, n: i64) -> Result<Option<Self>> {
        let threads = team::available();
        PackedHead::with(w, b, n, Isa::detect(), threads)
    }

    pub(super) fn with(
        w: &Tensor,
        b: Option<&Tensor>,
        n: i64,
        isa: Isa,
        threads: usize,
    ) -> Result<Option<Self>> {
        if n < MIN_ROWS || isa != Isa::Avx512 || !float_cpu(w) || !b.is_none_or(float_cpu) {
            return Ok(None);
        }
        let (v, h) = w.size2()?;
        let (v, h) = (v as usize, h as usize);
        let weight = Floats::new(w)?;
        let bias = b.map(Floats::new).transpose()?;
        let layer = PackedLayer::linear(
            Dense {
                weight: weight.get(),
                cols: h,
                bias: bias.as_ref().map(Floats::get),
            },
            v,
            h,
        );
        let threads = threads.clamp(1, layer.blocks.max(1));
        Ok(Some(PackedHead {
            stride: layer.blocks * SLOTS * LANES,
            vocab: v,
            layer,
            isa,
            threads,
            barrier: SpinBarrier::new(threads),
        }))
    }

    /// An error unless this is a head of `v` classes over `h` features.
    pub(super) fn check(&self, v: i64, h: i64) -> Result<()> {
        if self.vocab as i64 != v || self.layer.k as i64 != h {
            return Err(Error::shape(format!(
                "internal: a packed head of [{}, {}] for a weight of [{v}, {h}]",
                self.vocab, self.layer.k
            )));
        }
        Ok(())
    }

    /// `z = x W^T + b` for `x` `[k, H]` into `z` `[k, stride]` (its columns
    /// past `V` get the padding's zeros), both contiguous float32 CPU.
    pub(super) fn logits(&self, x: &Tensor, z: &mut Tensor) -> Result<()> {
        // Read and written in place below, as dense rows.
        let k = x.size2()?.0 as usize;
        let h = self.layer.k;
        if x.size() != [k as i64, h as i64]
            || z.size() != [k as i64, self.stride as i64]
            || !(float_cpu(x) && float_cpu(z) && x.is_contiguous() && z.is_contiguous())
        {
            return Err(Error::shape(format!(
                "internal: head logits of {:?} for rows {:?} (want [k, {}] and [k, {h}])",
                z.size(),
                x.size(),
                self.stride
            )));
        }
        // SAFETY: `x` and `z` are contiguous float32 CPU tensors of the sizes
        // checked above, alive for this call; the team reads `x` and each
        // member writes only its own blocks' columns of `z`.
        unsafe {
            let input = SharedBuf::borrowed(x.data_ptr() as *mut f32, k * h);
            let out = SharedBuf::borrowed(z.data_ptr() as *mut f32, k * self.stride);
            let job = Job {
                layer: &self.layer,
                pointwise: Pointwise::Linear,
                input: &input,
                rows: k,
                cell: None,
                out: [
                    Some(Dest {
                        buf: &out,
                        stride: self.stride,
                        offset: 0,
                    }),
                    None,
                ],
                gates: None,
            };
            let blocks = self.layer.blocks;
            team::run(self.threads, &self.barrier, |tid| {
                block::run(self.isa, &job, team::split(blocks, self.threads, tid));
            })
        }
    }
}

/// `c = a b`, or `c += a b` with `accumulate`, on the AVX-512 kernel
/// (`kernel::gemm`): the backward products of the head's pass. `a` `[m, k]`
/// by any strides, `b` `[k, n]` and `c` `[m, n]` with unit column strides,
/// all float32 on the CPU; anything else is an error (the caller checks the
/// instruction set).
pub(super) fn product(
    a: &Tensor,
    b: &Tensor,
    c: &mut Tensor,
    accumulate: bool,
    threads: usize,
) -> Result<()> {
    let ((m, k), (k2, n)) = (a.size2()?, b.size2()?);
    let (ok_a, ok_b, ok_c) = (strides(a)?, strides(b)?, strides(c)?);
    let unit = |s: Option<(usize, usize, usize)>| s.filter(|&(_, cs, _)| cs == 1);
    let shapes_fit = k == k2 && c.size() == [m, n] && m >= 0 && n >= 0 && k >= 0;
    let (Some(sa), Some(sb), Some(sc), true) = (ok_a, unit(ok_b), unit(ok_c), shapes_fit) else {
        return Err(Error::shape(format!(
            "internal: a head product of {:?} x {:?} into {:?} (strides {:?}, {:?}, {:?})",
            a.size(),
            b.size(),
            c.size(),
            a.stride(),
            b.stride(),
            c.stride()
        )));
    };
    if [a, b, &*c].iter().any(|t| !float_cpu(t)) || Isa::detect() != Isa::Avx512 {
        return Err(Error::shape(
            "internal: the head's kernel products take float32 on AVX-512",
        ));
    }
    // SAFETY: each buffer spans exactly the elements its sizes and strides
    // name (`strides`), the tensors outlive the call, and `c` is not read or
    // written by anyone else meanwhile (it is borrowed mutably).
    unsafe {
        let view = |t: &Tensor, span: usize| SharedBuf::borrowed(t.data_ptr() as *mut f32, span);
        let (ba, bb, bc) = (view(a, sa.2), view(b, sb.2), view(c, sc.2));
        gemm::sgemm(
            threads,
            [m as usize, n as usize, k as usize],
            Strided {
                buf: &ba,
                rs: sa.0,
                cs: sa.1,
            },
            Strided {
                buf: &bb,
                rs: sb.0,
                cs: 1,
            },
            Strided {
                buf: &bc,
                rs: sc.0,
                cs: 1,
            },
            accumulate,
        )
    }
}

/// A 2-d tensor's `(row stride, column stride, elements spanned)`; `None`
/// for negative strides.
fn strides(t: &Tensor) -> Result<Option<(usize, usize, usize)>> {
    let (rows, cols) = t.size2()?;
    let st = t.stride();
    let (Some(&rs), Some(&cs)) = (st.first(), st.get(1)) else {
        return Ok(None);
    };
    if rs < 0 || cs < 0 {
        return Ok(None);
    }
    let span = match rows * cols {
        0 => 0,
        _ => (rows - 1) * rs + (cols - 1) * cs + 1,
    };
    Ok(Some((rs as usize, cs as usize, span as usize)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    /// The packed product equals libtorch's `addmm` (float64 reference), with a
    /// vocabulary that ends mid-block, rows that end mid-tile, and 1-3
    /// threads; the padding columns are zeros.
    #[test]
    fn logits_equal_addmm() {
        let isa = Isa::detect();
        if isa != Isa::Avx512 {
            eprintln!("skipped: the packed head runs on AVX-512 only, this CPU has {isa:?}");
            return;
        }
        tch::manual_seed(0);
        let opts = (Kind::Float, Device::Cpu);
        for (k, h, v, with_bias) in [
            (7i64, 13i64, 70i64, true),
            (1, 64, 64, false),
            (33, 5, 130, true),
        ] {
            let x = Tensor::randn([k, h], opts);
            let w = Tensor::randn([v, h], opts);
            let b = Tensor::randn([v], opts);
            let b = with_bias.then_some(&b);
            let want = x.to_kind(Kind::Double).mm(&w.to_kind(Kind::Double).tr());
            let want = match b {
                Some(b) => want + b.to_kind(Kind::Double),
                None => want,
            };
            for threads in [1, 2, 3] {
                let head = PackedHead::with(&w, b, MIN_ROWS, isa, threads)
                    .unwrap()
                    .unwrap();
                assert_eq!(head.stride as i64, (v + 63) / 64 * 64);
                let mut z = Tensor::full([k, head.stride as i64], f64::NAN, opts);
                head.logits(&x, &mut z).unwrap();
                let got = z.narrow(1, 0, v).to_kind(Kind::Double);
                let err = (got - &want).abs().max().double_value(&[]);
                assert!(err < 1e-4, "k={k} h={h} v={v} threads={threads}: {err}");
                let pad = z.narrow(1, v, head.stride as i64 - v);
                assert!(pad.numel() == 0 || pad.abs().max().double_value(&[]) == 0.0);
            }
        }
    }

    #[test]
    fn other_dtypes_and_wrong_sizes_are_refused() {
        let opts = (Kind::Double, Device::Cpu);
        let w = Tensor::zeros([10, 4], opts);
        assert!(PackedHead::with(&w, None, MIN_ROWS, Isa::Avx512, 2)
            .unwrap()
            .is_none());
        let w = w.to_kind(Kind::Float);
        assert!(PackedHead::with(&w, None, MIN_ROWS - 1, Isa::Avx512, 2)
            .unwrap()
            .is_none());
        let head = PackedHead::with(&w, None, MIN_ROWS, Isa::Avx512, 2)
            .unwrap()
            .unwrap();
        let x = Tensor::zeros([3, 5], (Kind::Float, Device::Cpu));
        let mut z = Tensor::zeros([3, 64], (Kind::Float, Device::Cpu));
        assert!(head.logits(&x, &mut z).is_err());
    }
}
