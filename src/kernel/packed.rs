//! Weights rearranged for the fused kernels: per block of output columns, a
//! panel `[k][4][16]` that streams through memory once per product, input and
//! recurrent matrices side by side (`[x, h]`), biases summed.

use super::lanes::{Lanes, LANES};

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
    pub fn linear(input: Dense, out: usize, k: usize) -> Self {
        let blocks = out.div_ceil(WIDTH);
        PackedLayer::new(blocks, k, 0, input, None, |b, slot, lane| {
            let row = (b * SLOTS + slot) * LANES + lane;
            (row < out).then_some((row, Source::Input))
        })
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
