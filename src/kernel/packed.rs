//! Weights rearranged for the fused kernels: per block of output columns, a
//! panel `[k][4][16]` that streams through memory once per product, input and
//! recurrent matrices side by side (`[x, h]`), biases summed.

use super::lanes::{first_lanes, Lanes, LANES};

/// Output columns per block: four vectors of `LANES`.
pub const SLOTS: usize = 4;

/// The floats of one input column in a block's panel.
const WIDTH: usize = SLOTS * LANES;

/// A slot's [`PackedLayer::live`] mask when none of its lanes is padding.
pub const ALL_LIVE: u16 = u16::MAX;
const _: () = assert!(LANES == 16, "a u16 holds one bit per lane");

/// Which product a packed column takes its weights (and bias) from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// `[x, h] [W_ih, W_hh]^T + b_ih + b_hh`.
    Both,
    /// `x W_ih^T + b_ih` only (the GRU's input part of its candidate gate).
    Input,
    /// `h W_hh^T + b_hh` only (the GRU's recurrent part of its candidate gate).
    Recurrent,
}

/// A row-major matrix `[rows, cols]` and its optional bias `[rows]`.
#[derive(Clone, Copy)]
pub struct Dense<'a> {
    pub weight: &'a [f32],
    pub cols: usize,
    pub bias: Option<&'a [f32]>,
}

impl<'a> Dense<'a> {
    fn bias(&self, row: usize) -> f32 {
        self.bias.map_or(0.0, |b| b[row])
    }

    /// Row `row`'s first `width` weights (fewer when the matrix is narrower).
    fn row(&self, row: usize, width: usize) -> &'a [f32] {
        &self.weight[row * self.cols..row * self.cols + self.cols.min(width)]
    }
}

pub struct PackedLayer {
    /// Input width `x_width + h_width`.
    pub k: usize,
    /// Where the recurrent part of the input starts.
    pub x_width: usize,
    pub blocks: usize,
    /// `[blocks][k][SLOTS]`.
    panel: Vec<Lanes>,
    /// `[blocks][SLOTS]`.
    bias: Vec<Lanes>,
    /// `[blocks][SLOTS]`: bit `l` set when lane `l` is a real column, not padding.
    live: Vec<[u16; SLOTS]>,
}

impl PackedLayer {
    /// Packs `blocks` blocks. `column(block, slot, lane)` names the weight row
    /// behind each output column, or `None` for padding (zero weights and bias).
    /// The input is `[x (x_width), h (h_width)]`; columns past a matrix's
    /// `cols` are padding too.
    pub fn new(
        blocks: usize,
        x_width: usize,
        h_width: usize,
        input: Dense,
        recurrent: Option<Dense>,
        column: impl Fn(usize, usize, usize) -> Option<(usize, Source)>,
    ) -> Self {
        let k = x_width + h_width;
        let mut panel = vec![[0.0; LANES]; blocks * k * SLOTS];
        let mut bias = vec![[0.0; LANES]; blocks * SLOTS];
        let mut live = vec![[0u16; SLOTS]; blocks];
        for b in 0..blocks {
            let flat = panel[b * k * SLOTS..(b + 1) * k * SLOTS].as_flattened_mut();
            let block_bias = bias[b * SLOTS..(b + 1) * SLOTS].as_flattened_mut();
            // Each output column's weights: its row of each matrix it reads
            // (empty where it reads none, or for padding).
            let mut from_x: [&[f32]; WIDTH] = [&[]; WIDTH];
            let mut from_h: [&[f32]; WIDTH] = [&[]; WIDTH];
            for (e, total_out) in block_bias.iter_mut().enumerate() {
                let Some((row, source)) = column(b, e / LANES, e % LANES) else {
                    continue;
                };
                live[b][e / LANES] |= 1 << (e % LANES);
                let mut total = 0.0;
                if source != Source::Recurrent {
                    total += input.bias(row);
                    from_x[e] = input.row(row, x_width);
                }
                if let Some(rec) = recurrent.filter(|_| source != Source::Input) {
                    total += rec.bias(row);
                    from_h[e] = rec.row(row, h_width);
                }
                *total_out = total;
            }
            // A block's panel is the transpose of its (up to) 64 weight rows,
            // written one panel row (one input column) at a time: the writes
            // stream, and the 64 rows being read stay in the L1 cache.
            for (kk, out) in flat.chunks_exact_mut(WIDTH).enumerate() {
                let (rows, col) = if kk < x_width {
                    (&from_x, kk)
                } else {
                    (&from_h, kk - x_width)
                };
                for (o, row) in out.iter_mut().zip(rows) {
                    if let Some(&v) = row.get(col) {
                        *o = v;
                    }
                }
            }
        }
        PackedLayer {
            k,
            x_width,
            blocks,
            panel,
            bias,
            live,
        }
    }

    /// An output layer `x W^T + b` for `W` `[out, cols]` (`input`), as a
    /// packed layer of `ceil(out / 64)` blocks whose input rows are `k` wide
    /// (at least `cols`; columns past `cols` meet zero weights).
    ///
    /// The same panel [`PackedLayer::new`] would make, written as 16 x 16
    /// transposes through a tile on the stack: rows are read whole and panel
    /// rows written whole. Training packs its head every step (the weights
    /// change), where `new`'s column-at-a-time walk took 6.6-7.7 ms for a
    /// 10,000 x 200 head (AMD Zen 4), about what the packed product saves.
    pub fn linear(input: Dense, out: usize, k: usize) -> Self {
        #[cfg(target_arch = "x86_64")]
        let avx512 = crate::cpu::level() == crate::cpu::Level::Avx512;
        let blocks = out.div_ceil(WIDTH);
        let cols = input.cols.min(k);
        let mut panel = vec![[0.0; LANES]; blocks * k * SLOTS];
        let mut bias = vec![[0.0; LANES]; blocks * SLOTS];
        let mut live = vec![[0u16; SLOTS]; blocks];
        for (b, block) in panel.chunks_exact_mut(k * SLOTS).enumerate() {
            for slot in 0..SLOTS {
                let first = (b * SLOTS + slot) * LANES;
                let n = out.saturating_sub(first).min(LANES);
                live[b][slot] = first_lanes(n);
                for (lane, o) in bias[b * SLOTS + slot][..n].iter_mut().enumerate() {
                    *o = input.bias(first + lane);
                }
                if n == 0 {
                    continue;
                }
                let rows = &input.weight[first * input.cols..];
                // SAFETY: AVX-512F was detected; the rows read are the `n`
                // weight rows from `first`, each `input.cols` long, of which
                // the first `cols` are read.
                #[cfg(target_arch = "x86_64")]
                if avx512 {
                    unsafe { transpose_avx512(rows, input.cols, n, cols, block, slot) };
                    continue;
                }
                transpose(rows, input.cols, n, cols, block, slot);
            }
        }
        PackedLayer {
            k,
            x_width: k,
            blocks,
            panel,
            bias,
            live,
        }
    }

    /// Block `b`'s live-lane masks, one per slot (see `live`).
    #[inline(always)]
    pub fn live(&self, b: usize) -> [u16; SLOTS] {
        self.live[b]
    }

    /// Block `b`'s panel `[k * SLOTS]` and bias `[SLOTS]`.
    #[inline(always)]
    pub fn block(&self, b: usize) -> (&[Lanes], &[Lanes]) {
        let per = self.k * SLOTS;
        (
            &self.panel[b * per..(b + 1) * per],
            &self.bias[b * SLOTS..(b + 1) * SLOTS],
        )
    }
}

/// Slot `slot` of a block's panel from `n` weight rows (`rows`, `stride`
/// apart): `block[c * SLOTS + slot][lane] = rows[lane * stride + c]` for the
/// first `cols` columns; lanes past `n` stay as they are (zeros).
fn transpose(rows: &[f32], stride: usize, n: usize, cols: usize, block: &mut [Lanes], slot: usize) {
    for c0 in (0..cols).step_by(LANES) {
        let m = (cols - c0).min(LANES);
        // tile[lane][c]: weight row `lane`, column `c0 + c`.
        let mut tile = [[0.0f32; LANES]; LANES];
        for (lane, t) in tile[..n].iter_mut().enumerate() {
            let at = lane * stride + c0;
            t[..m].copy_from_slice(&rows[at..at + m]);
        }
        for c in 0..m {
            let dst = &mut block[(c0 + c) * SLOTS + slot];
            for (lane, d) in dst.iter_mut().enumerate() {
                *d = tile[lane][c];
            }
        }
    }
}

/// [`transpose`] sixteen columns at a time in registers: three rounds of
/// shuffles (32-bit pairs, 64-bit pairs, 128-bit quarters twice) turn
/// sixteen row vectors into sixteen column vectors.
///
/// # Safety
/// AVX-512F is available; `rows` holds `n <= LANES` rows `stride` apart of
/// at least `cols` values each; `block` holds `cols * SLOTS` vectors.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn transpose_avx512(
    rows: &[f32],
    stride: usize,
    n: usize,
    cols: usize,
    block: &mut [Lanes],
    slot: usize,
) {
    use std::arch::x86_64::*;
    debug_assert!(n <= LANES && (n == 0 || rows.len() >= (n - 1) * stride + cols));
    debug_assert!(block.len() >= cols * SLOTS);
    let src = rows.as_ptr();
    let dst = block.as_mut_ptr() as *mut f32;
    for c0 in (0..cols).step_by(LANES) {
        let m = (cols - c0).min(LANES);
        let mask: __mmask16 = first_lanes(m);
        let r: [__m512; LANES] = std::array::from_fn(|lane| {
            if lane < n {
                _mm512_maskz_loadu_ps(mask, src.add(lane * stride + c0))
            } else {
                _mm512_setzero_ps()
            }
        });
        // Pairs of rows interleaved by 32-bit element, then by 64-bit pair:
        // q[4g + j] holds column j (+4, +8, +12 in its other quarters) of rows
        // 4g..4g+4.
        let p: [__m512; LANES] = std::array::from_fn(|i| {
            let (a, b) = (r[i / 2 * 2], r[i / 2 * 2 + 1]);
            if i % 2 == 0 {
                _mm512_unpacklo_ps(a, b)
            } else {
                _mm512_unpackhi_ps(a, b)
            }
        });
        let q: [__m512; LANES] = std::array::from_fn(|i| {
            let (g, j) = (i / 4, i % 4);
            let (a, b) = (
                _mm512_castps_pd(p[4 * g + j / 2]),
                _mm512_castps_pd(p[4 * g + j / 2 + 2]),
            );
            _mm512_castpd_ps(if j % 2 == 0 {
                _mm512_unpacklo_pd(a, b)
            } else {
                _mm512_unpackhi_pd(a, b)
            })
        });
        // Quarters: t[j] (t[j + 4]) holds columns j and j + 8 (j + 4 and
        // j + 12) of rows 0..8, t[j + 8] (t[j + 12]) those of rows 8..16.
        let t: [__m512; LANES] = std::array::from_fn(|i| {
            let (half, hi, j) = (i / 8, i % 8 >= 4, i % 4);
            let (a, b) = (q[8 * half + j], q[8 * half + 4 + j]);
            if hi {
                _mm512_shuffle_f32x4::<0xdd>(a, b)
            } else {
                _mm512_shuffle_f32x4::<0x88>(a, b)
            }
        });
        for c in 0..m {
            // Column c: c = j (+4 when t's upper pairs) (+8 for the odd quarters).
            let (j, upper) = (c % 8, c >= 8);
            let (a, b) = (t[j], t[j + 8]);
            let col = if upper {
                _mm512_shuffle_f32x4::<0xdd>(a, b)
            } else {
                _mm512_shuffle_f32x4::<0x88>(a, b)
            };
            _mm512_storeu_ps(dst.add(((c0 + c) * SLOTS + slot) * LANES), col);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The transposing `linear` makes the panel, biases and masks of the
    /// general column walk, with outputs and inputs that end mid-block and
    /// mid-tile, and input rows wider than the matrix.
    #[test]
    fn linear_equals_the_column_walk() {
        for (out, cols, k, with_bias) in [
            (70usize, 13usize, 13usize, true),
            (64, 16, 16, false),
            (130, 5, 9, true),
            (1, 40, 47, true),
            (200, 33, 33, false),
        ] {
            let weight: Vec<f32> = (0..out * cols).map(|i| i as f32 * 0.5 - 7.0).collect();
            let b: Vec<f32> = (0..out).map(|i| 100.0 + i as f32).collect();
            let dense = Dense {
                weight: &weight,
                cols,
                bias: with_bias.then_some(b.as_slice()),
            };
            let fast = PackedLayer::linear(dense, out, k);
            let walk = PackedLayer::new(out.div_ceil(WIDTH), k, 0, dense, None, |b, s, l| {
                let row = (b * SLOTS + s) * LANES + l;
                (row < out).then_some((row, Source::Input))
            });
            let case = format!("out={out} cols={cols} k={k}");
            assert_eq!(
                (fast.k, fast.x_width, fast.blocks),
                (walk.k, walk.x_width, walk.blocks)
            );
            assert_eq!(fast.panel, walk.panel, "{case}");
            assert_eq!(fast.bias, walk.bias, "{case}");
            assert_eq!(fast.live, walk.live, "{case}");
        }
    }
}
