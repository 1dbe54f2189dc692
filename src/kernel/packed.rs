//! Weights rearranged for the fused kernels: per block of output columns, a
//! panel `[k][4][16]` that streams through memory once per product, input and
//! recurrent matrices side by side (`[x, h]`), biases summed.

use super::lanes::{Lanes, LANES};

/// Output columns per block: four vectors of `LANES`.
pub const SLOTS: usize = 4;

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

impl Dense<'_> {
    fn bias(&self, row: usize) -> f32 {
        self.bias.map_or(0.0, |b| b[row])
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
            // A block's panel is the transpose of its (up to) 64 weight rows:
            // read each row once, write it down a column of the panel.
            let flat = panel[b * k * SLOTS..(b + 1) * k * SLOTS].as_flattened_mut();
            let block_bias = bias[b * SLOTS..(b + 1) * SLOTS].as_flattened_mut();
            for (e, total_out) in block_bias.iter_mut().enumerate() {
                let Some((row, source)) = column(b, e / LANES, e % LANES) else {
                    continue;
                };
                live[b][e / LANES] |= 1 << (e % LANES);
                let mut total = 0.0;
                let parts = [
                    (source != Source::Recurrent).then_some((input, 0, x_width)),
                    recurrent
                        .filter(|_| source != Source::Input)
                        .map(|rec| (rec, x_width, h_width)),
                ];
                for (dense, start, width) in parts.into_iter().flatten() {
                    total += dense.bias(row);
                    let n = dense.cols.min(width);
                    let src = &dense.weight[row * dense.cols..row * dense.cols + n];
                    for (col, &v) in src.iter().enumerate() {
                        flat[(start + col) * SLOTS * LANES + e] = v;
                    }
                }
                *total_out = total;
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
