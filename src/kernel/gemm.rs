//! `C (+)= A B` in float32 on AVX-512, for the fused head's backward
//! products: `d_x = e W` (A the chunk's `e` by rows, B the head's weight) and
//! `d_w += e^T x` (A the same `e` read by columns, B the scaled rows).
//!
//! Why not libtorch's `mm`: on AMD CPUs its MKL runs its generic AVX2 path.
//! Measured on an AMD EPYC Zen 4 (2 threads, best of 8, one process, rows x
//! H x V): `d_x` at 512 x 200 x 10,000 ran at 194-196 GFLOP/s against MKL's
//! 153-159, at 700 x 200 x 2,001 at 189-201 against 147-164, at 512 x 650 x
//! 33,278 at 181-196 against 146-161; `d_w` at 171-173 against 150-169,
//! 161-188 against 139-161 and 168-184 against 108-115. Neither operand is
//! packed: B's rows are contiguous (each `k` step loads a row's lanes), and
//! A's elements are broadcast one at a time, so any strides do.
//!
//! The loops block `k` by [`KC`] so that a block of B (`KC` rows of the
//! output's width) stays in the L2 cache while every row tile of the
//! thread's rows passes over it, and A's lines of a tile stay in L1; the
//! rows are split between the threads, so each writes its own rows of C.

use super::lanes::first_lanes;
use super::team::{self, SharedBuf, SpinBarrier};
use crate::error::Result;

/// Rows of C per register tile: six rows of four vectors are 24
/// accumulators, four B vectors and a broadcast: 29 of the 32 registers.
const MR: usize = 6;
/// Output columns per register tile: four vectors of sixteen lanes.
const NR: usize = 64;
/// `k` per block: 256 rows of a 64-column B panel are 64 KB.
const KC: usize = 256;
/// Rows per block within a thread's rows.
const MC: usize = 16 * MR;

/// An operand: element `(i, j)` at `i * rs + j * cs` from the start.
#[derive(Clone, Copy)]
pub struct Strided<'a> {
    pub buf: &'a SharedBuf,
    pub rs: usize,
    pub cs: usize,
}

/// `C[m, n] = A[m, k] B[k, n]`, or `C += A B` with `accumulate`: A by any
/// strides, B's rows `b.rs` apart with unit column stride, C's rows `c.rs`
/// apart with unit column stride, on `threads` threads.
///
/// # Safety
/// AVX-512F is available; every element the shapes and strides name lies in
/// its buffer (checked in debug builds); no one else reads or writes C
/// during the call.
pub unsafe fn sgemm(
    threads: usize,
    [m, n, k]: [usize; 3],
    a: Strided,
    b: Strided,
    c: Strided,
    accumulate: bool,
) -> Result<()> {
    debug_assert!(b.cs == 1 && c.cs == 1);
    debug_assert!(m == 0 || k == 0 || (m - 1) * a.rs + (k - 1) * a.cs < a.buf.len());
    debug_assert!(k == 0 || n == 0 || (k - 1) * b.rs + n <= b.buf.len());
    debug_assert!(m == 0 || n == 0 || (m - 1) * c.rs + n <= c.buf.len());
    if m == 0 || n == 0 {
        return Ok(());
    }
    let tiles = m.div_ceil(MR);
    let threads = threads.clamp(1, tiles);
    let barrier = SpinBarrier::new(threads);
    team::run(threads, &barrier, |tid| {
        let t = team::split(tiles, threads, tid);
        let rows = t.start * MR..(t.end * MR).min(m);
        // SAFETY: as for `sgemm`; this member writes only its own rows of C.
        unsafe { rows_avx512(rows, n, k, a, b, c, accumulate) }
    })
}

/// [`sgemm`] for rows `rows` of C.
///
/// # Safety
/// As for [`sgemm`], for these rows.
#[target_feature(enable = "avx512f")]
unsafe fn rows_avx512(
    rows: std::ops::Range<usize>,
    n: usize,
    k: usize,
    a: Strided,
    b: Strided,
    c: Strided,
    accumulate: bool,
) {
    let (a0, b0) = (
        a.buf.get(0..a.buf.len()).as_ptr(),
        b.buf.get(0..b.buf.len()).as_ptr(),
    );
    let c0 = c.buf.get_mut(0..c.buf.len()).as_mut_ptr();
    if k == 0 {
        if !accumulate {
            for i in rows {
                std::ptr::write_bytes(c0.add(i * c.rs), 0, n);
            }
        }
        return;
    }
    // A is read in place, its elements broadcast one by one: packing its
    // blocks (BLIS's way) cost more than it saved here, at 3-4 column panels
    // per block (d_x 196 against 160 GFLOP/s unpacked, d_w 171 against 141;
    // blocks of 64 or 128 rows of k for the column-read A were no faster).
    for pc in (0..k).step_by(KC) {
        let kc = KC.min(k - pc);
        let add = accumulate || pc > 0;
        for ic in rows.clone().step_by(MC) {
            let mc = MC.min(rows.end - ic);
            for jc in (0..n).step_by(NR) {
                let nr = NR.min(n - jc);
                let vectors = nr.div_ceil(16);
                let last = first_lanes(nr - 16 * (vectors - 1));
                for ir in (ic..ic + mc).step_by(MR) {
                    let tile = Tile {
                        kc,
                        a: a0.add(ir * a.rs + pc * a.cs),
                        a_rs: a.rs,
                        a_cs: a.cs,
                        b: b0.add(pc * b.rs + jc),
                        ldb: b.rs,
                        c: c0.add(ir * c.rs + jc),
                        ldc: c.rs,
                        last,
                        add,
                    };
                    macro_rules! run {
                        ($($r:literal),*) => {
                            match (MR.min(ic + mc - ir), vectors) {
                                $(
                                    ($r, 1) => tile.run::<$r, 1>(),
                                    ($r, 2) => tile.run::<$r, 2>(),
                                    ($r, 3) => tile.run::<$r, 3>(),
                                    ($r, _) => tile.run::<$r, 4>(),
                                )*
                                _ => unreachable!("a tile has 1 to {MR} rows"),
                            }
                        };
                    }
                    run!(1, 2, 3, 4, 5, 6);
                }
            }
        }
    }
}

/// One register tile: `R` rows of C by `S` vectors, over `kc` steps of k.
struct Tile {
    kc: usize,
    a: *const f32,
    a_rs: usize,
    a_cs: usize,
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
    /// The live lanes of the tile's last vector.
    last: u16,
    /// Add to C rather than overwrite it.
    add: bool,
}

impl Tile {
    /// # Safety
    /// As for [`sgemm`], for this tile's elements.
    // Indexed loops over the register tile, as `kernel::block`'s tiles.
    #[allow(clippy::needless_range_loop)]
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn run<const R: usize, const S: usize>(&self) {
        use std::arch::x86_64::*;
        let mut masks = [!0u16; S];
        masks[S - 1] = self.last;
        let mut acc = [[_mm512_setzero_ps(); S]; R];
        for p in 0..self.kc {
            let bp = self.b.add(p * self.ldb);
            let mut bv = [_mm512_setzero_ps(); S];
            for s in 0..S {
                bv[s] = _mm512_maskz_loadu_ps(masks[s], bp.add(16 * s));
            }
            let ap = self.a.add(p * self.a_cs);
            for r in 0..R {
                let x = _mm512_set1_ps(*ap.add(r * self.a_rs));
                for s in 0..S {
                    acc[r][s] = _mm512_fmadd_ps(bv[s], x, acc[r][s]);
                }
            }
        }
        for r in 0..R {
            for s in 0..S {
                let cp = self.c.add(r * self.ldc + 16 * s);
                let v = if self.add {
                    _mm512_add_ps(_mm512_maskz_loadu_ps(masks[s], cp), acc[r][s])
                } else {
                    acc[r][s]
                };
                _mm512_mask_storeu_ps(cp, masks[s], v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind, Tensor};

    /// Both of the head's uses (A by rows and by columns) against a float64
    /// product, with rows ending mid-tile, columns mid-vector and mid-panel,
    /// k mid-block and past one, strides wider than the operands, 1-3
    /// threads, overwriting and accumulating; C's padding is left alone.
    #[test]
    fn products_equal_float64() {
        if crate::cpu::level() != crate::cpu::Level::Avx512 {
            eprintln!("skipped: the kernel runs on AVX-512 only");
            return;
        }
        tch::manual_seed(0);
        let opts = (Kind::Float, Device::Cpu);
        for (m, n, k) in [
            (1, 1, 1),
            (7, 200, 300),
            (13, 70, 5),
            (6, 64, 256),
            (20, 17, 0),
        ] {
            for transposed in [false, true] {
                for accumulate in [false, true] {
                    for threads in [1, 2, 3] {
                        // A as rows of a wider buffer, or as the columns of one.
                        let (a_full, a_t) = match transposed {
                            false => {
                                let full = Tensor::randn([m, k + 3], opts);
                                let a = full.narrow(1, 0, k);
                                (full, a)
                            }
                            true => {
                                let full = Tensor::randn([k.max(1), m + 5], opts);
                                let a = full.narrow(1, 0, m).narrow(0, 0, k).tr();
                                (full, a)
                            }
                        };
                        let b_full = Tensor::randn([k.max(1), n + 2], opts);
                        let b_t = b_full.narrow(0, 0, k).narrow(1, 0, n);
                        let c_full = Tensor::randn([m, n + 4], opts);
                        let c0 = c_full.copy();
                        let (a_rs, a_cs) = match transposed {
                            false => (k as usize + 3, 1),
                            true => (1, m as usize + 5),
                        };
                        let d = |t: &Tensor| t.to_kind(Kind::Double);
                        let mut want = d(&a_t).mm(&d(&b_t));
                        if accumulate {
                            want += d(&c0.narrow(1, 0, n));
                        }
                        let view = |t: &Tensor| unsafe {
                            SharedBuf::borrowed(t.data_ptr() as *mut f32, t.numel())
                        };
                        let (a_buf, b_buf, c_buf) = (view(&a_full), view(&b_full), view(&c_full));
                        unsafe {
                            sgemm(
                                threads,
                                [m as usize, n as usize, k as usize],
                                Strided {
                                    buf: &a_buf,
                                    rs: a_rs,
                                    cs: a_cs,
                                },
                                Strided {
                                    buf: &b_buf,
                                    rs: n as usize + 2,
                                    cs: 1,
                                },
                                Strided {
                                    buf: &c_buf,
                                    rs: n as usize + 4,
                                    cs: 1,
                                },
                                accumulate,
                            )
                            .unwrap();
                        }
                        let case = format!(
                            "{m}x{n}x{k} t={transposed} acc={accumulate} threads={threads}"
                        );
                        let err = (d(&c_full.narrow(1, 0, n)) - &want)
                            .abs()
                            .max()
                            .double_value(&[]);
                        assert!(err < 1e-3, "{case}: {err}");
                        let pad = c_full.narrow(1, n, 4) - c0.narrow(1, n, 4);
                        assert_eq!(pad.abs().max().double_value(&[]), 0.0, "{case}: padding");
                    }
                }
            }
        }
    }
}
