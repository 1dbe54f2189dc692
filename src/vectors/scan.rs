//! The one pass over the rows that every neighbour query makes: each row's
//! dot product with each query vector, divided by the row's norm.
//!
//! Why not a libtorch matrix-vector product: a query reads the whole matrix
//! (120 MB at 100 K x 300) for a few flops per value, so its speed is the
//! memory's. `mv` and then a division by the norms read memory twice, and a
//! 3CosMul query with three terms six times; here every term is answered in
//! one read, split between threads by rows.

// Values from Python reach this module: no index or slice may panic.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use std::ops::Range;

use crate::kernel::team;

/// Rows per thread below which one thread does the whole scan.
const MIN_ROWS_PER_THREAD: usize = 4096;

/// `out[q][r - range.start] = dot(row r, queries[q]) / norms[r]` for the rows
/// in `range` of the row-major `data` (`dim` values per row).
pub fn scan(
    data: &[f32],
    norms: &[f32],
    dim: usize,
    range: Range<usize>,
    queries: &[&[f32]],
) -> Vec<Vec<f32>> {
    let n = range.len();
    let mut out: Vec<Vec<f32>> = queries.iter().map(|_| vec![0.0; n]).collect();
    if n == 0 || dim == 0 {
        return out;
    }
    let threads = team::available().min(n / MIN_ROWS_PER_THREAD).max(1);
    let per = n.div_ceil(threads);
    // Each thread writes its own rows of every output.
    let mut parts: Vec<Vec<&mut [f32]>> = (0..threads).map(|_| Vec::new()).collect();
    for o in out.iter_mut() {
        for (t, chunk) in o.chunks_mut(per).enumerate() {
            if let Some(p) = parts.get_mut(t) {
                p.push(chunk);
            }
        }
    }
    std::thread::scope(|s| {
        for (t, mut outs) in parts.into_iter().enumerate() {
            let first = range.start + t * per;
            s.spawn(move || {
                let rows = outs.first().map_or(0, |o| o.len());
                for i in 0..rows {
                    let r = first + i;
                    let (Some(row), Some(&norm)) = (data.get(r * dim..(r + 1) * dim), norms.get(r))
                    else {
                        continue;
                    };
                    for (q, o) in queries.iter().zip(outs.iter_mut()) {
                        if let Some(slot) = o.get_mut(i) {
                            *slot = dot(row, q) / norm;
                        }
                    }
                }
            });
        }
    });
    out
}

/// `a · b` (equal lengths), on the widest vectors this CPU has.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            return unsafe { dot_avx2(a, b) };
        }
    }
    dot_lanes(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    dot_lanes(a, b)
}

/// Sixteen independent sums, so the compiler keeps them in vector registers
/// (two AVX2 or four SSE vectors) instead of one serial chain of additions.
#[inline(always)]
fn dot_lanes(a: &[f32], b: &[f32]) -> f32 {
    const L: usize = 16;
    let mut acc = [0.0f32; L];
    let (ca, cb) = (a.chunks_exact(L), b.chunks_exact(L));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for ((s, xi), yi) in acc.iter_mut().zip(x).zip(y) {
            *s += xi * yi;
        }
    }
    let mut tail = 0.0;
    for (x, y) in ra.iter().zip(rb) {
        tail += x * y;
    }
    acc.iter().sum::<f32>() + tail
}
