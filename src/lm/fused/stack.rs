//! The model on the fused kernels, as a team steps it: the packed layers and
//! output layer, the buffers the phases read and write, and each member's
//! share of a phase. Generation and beam search drive it with their own loops.
//!
//! Layer `l` reads `[x, h]` from `input[l][p]` and writes its new `h` both to
//! `input[l][1 - p]` (its own next step) and to the next layer's `x` in
//! `input[l + 1][p]` (or to `top`), so no thread ever writes what another is
//! reading in the same phase; `p` flips every step. Rows are independent:
//! a step may run on the first `n` of them only.

use crate::error::{Error, Result};
use crate::kernel::block::{self, Dest, Isa, Job, Pointwise};
use crate::kernel::lanes::LANES;
use crate::kernel::packed::{Dense, PackedLayer, SLOTS};
use crate::kernel::team::{self, split, SharedBuf, SpinBarrier};
use crate::lm::LmWeights;
use crate::rnn::direction::DirWeights;
use crate::rnn::fused::packing::{pack_layer, padded, pointwise, Floats};
use crate::rnn::{Mode, RnnConfig};

/// Below this many weights per token one thread is faster than a team.
const MIN_WEIGHTS_PER_THREAD: usize = 1 << 15;

/// The output layer as a packed "layer" whose input is the top state.
fn pack_head(w: &LmWeights, hp: usize) -> Result<PackedLayer> {
    let (head_weight, head_bias) = w.linear_head()?;
    let (vocab, hidden) = head_weight.size2()?;
    let weight = Floats::new(head_weight)?;
    let bias = head_bias.map(Floats::new).transpose()?;
    let dense = Dense {
        weight: weight.get(),
        cols: hidden as usize,
        bias: bias.as_ref().map(Floats::get),
    };
    Ok(PackedLayer::linear(dense, vocab as usize, hp))
}

/// A team buffer of `rows x width` values, or an error naming the sizes and
/// `what` set the row count (`num_samples`, `num_beams`).
pub fn rows_buf<T: Copy + Default>(rows: usize, width: usize, what: &str) -> Result<SharedBuf<T>> {
    let len = rows.checked_mul(width).ok_or_else(|| {
        Error::shape(format!(
            "{what} = {rows} is too large: {rows} rows of {width} values overflow"
        ))
    })?;
    SharedBuf::try_new(len).map_err(|e| Error::shape(format!("{what} = {rows}: {e}")))
}

pub struct FusedStack<'e> {
    isa: Isa,
    pw: Pointwise,
    /// Hidden units, padded to whole blocks.
    hp: usize,
    embed: usize,
    vocab: usize,
    rows: usize,
    threads: usize,
    barrier: SpinBarrier,
    layers: Vec<PackedLayer>,
    head: PackedLayer,
    /// `[layer][parity]`, each `[rows, layer.k]`.
    inputs: Vec<[SharedBuf; 2]>,
    /// The LSTM's cell states, `[rows, hp]` per layer.
    cells: Vec<SharedBuf>,
    /// The top layer's output, `[rows, hp]`.
    top: SharedBuf,
    /// `[rows, vocab padded]`.
    logits: SharedBuf,
    /// `[vocabulary, embed]`, the model's embedding read in place.
    embedding: &'e [f32],
}

impl<'e> FusedStack<'e> {
    /// Packs the model (checked by the caller) for `rows` rows at most, all
    /// states zero. `embedding` is `w.embedding`'s data ([`Floats`]); `what`
    /// names the option that set `rows`, for the error when the memory
    /// cannot be had.
    pub fn new(
        cfg: &RnnConfig,
        w: &LmWeights,
        embedding: &'e [f32],
        rows: usize,
        what: &str,
    ) -> Result<Self> {
        let pw = pointwise(cfg.mode);
        let hp = padded(cfg.hidden_size as usize, pw);
        let embed = cfg.input_size as usize;
        let layers = w
            .stack
            .chunks(cfg.params_per_direction())
            .enumerate()
            .map(|(l, chunk)| {
                let w = DirWeights::from_slice(chunk, cfg.bias, false);
                let x_width = if l == 0 { embed } else { hp };
                pack_layer(cfg.mode, cfg.hidden_size as usize, &w, x_width)
            })
            .collect::<Result<Vec<_>>>()?;
        let head = pack_head(w, hp)?;
        let vocab = w.linear_head()?.0.size2()?.0 as usize;
        // Every buffer is sized by `rows`, so each allocation may fail (an
        // error, not an abort).
        let inputs = layers
            .iter()
            .map(|layer| {
                Ok([
                    rows_buf(rows, layer.k, what)?,
                    rows_buf(rows, layer.k, what)?,
                ])
            })
            .collect::<Result<_>>()?;
        let cells = match cfg.mode {
            Mode::Lstm => layers
                .iter()
                .map(|_| rows_buf(rows, hp, what))
                .collect::<Result<_>>()?,
            _ => Vec::new(),
        };
        let top = rows_buf(rows, hp, what)?;
        let logits = rows_buf(rows, head.blocks * SLOTS * LANES, what)?;
        let weights_per_token: usize =
            layers.iter().map(|l| l.blocks * l.k).sum::<usize>() * SLOTS * LANES
                + head.blocks * head.k * SLOTS * LANES;
        let threads = team::size(
            team::available(),
            usize::MAX,
            weights_per_token.saturating_mul(rows),
            MIN_WEIGHTS_PER_THREAD,
        );
        Ok(FusedStack {
            isa: Isa::detect(),
            pw,
            hp,
            embed,
            vocab,
            rows,
            threads,
            barrier: SpinBarrier::new(threads),
            layers,
            head,
            inputs,
            cells,
            top,
            logits,
            embedding,
        })
    }

    /// The instruction set the kernels run on.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// The team's size, and the barrier its members meet at.
    pub fn threads(&self) -> usize {
        self.threads
    }

    pub fn barrier(&self) -> &SpinBarrier {
        &self.barrier
    }

    /// The tokens the head scores.
    pub fn vocab(&self) -> usize {
        self.vocab
    }

    /// The tokens with an embedding row (at least `vocab`).
    pub fn embedded(&self) -> usize {
        self.embedding.len() / self.embed.max(1)
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    fn layer_job(&self, l: usize, p: usize, rows: usize) -> Job<'_> {
        let layer = &self.layers[l];
        let next = match (self.inputs.get(l + 1), self.layers.get(l + 1)) {
            (Some(input), Some(next)) => Dest {
                buf: &input[p],
                stride: next.k,
                offset: 0,
            },
            _ => Dest {
                buf: &self.top,
                stride: self.hp,
                offset: 0,
            },
        };
        Job {
            layer,
            pointwise: self.pw,
            input: &self.inputs[l][p],
            rows,
            cell: self.cells.get(l).map(|c| Dest {
                buf: c,
                stride: self.hp,
                offset: 0,
            }),
            out: [
                Some(Dest {
                    buf: &self.inputs[l][1 - p],
                    stride: layer.k,
                    offset: layer.x_width,
                }),
                Some(next),
            ],
            gates: None,
        }
    }

    /// Writes `token`'s embedding as row `r`'s input to the first layer in the
    /// step that reads parity `p`. The caller checked that every token it
    /// feeds has an embedding row.
    ///
    /// # Safety
    /// No other thread touches that row of the first layer's input until the
    /// next barrier.
    pub unsafe fn embed(&self, p: usize, r: usize, token: usize) {
        let k = self.layers[0].k;
        let x = self.inputs[0][p].get_mut(r * k..r * k + self.embed);
        x.copy_from_slice(&self.embedding[token * self.embed..(token + 1) * self.embed]);
    }

    /// Member `tid`'s share of one step of every layer for the first `rows`
    /// rows, reading parity `p`: every member calls it, and they meet at the
    /// barrier after each layer (so the step is complete when it returns).
    ///
    /// # Safety
    /// Every member calls it with the same arguments, and the first layer's
    /// inputs were written before a barrier all of them passed.
    pub unsafe fn layers(&self, tid: usize, p: usize, rows: usize) {
        for l in 0..self.layers.len() {
            let job = self.layer_job(l, p, rows);
            // SAFETY: each member writes only its own blocks of the outputs.
            block::run(self.isa, &job, split(job.layer.blocks, self.threads, tid));
            self.barrier.wait();
        }
    }

    /// Member `tid`'s share of the logits of the first `rows` rows (its blocks
    /// of the vocabulary); they are complete after the next barrier.
    ///
    /// # Safety
    /// Every member calls it with the same `rows`, after a step of the layers,
    /// and no one reads the logits until the next barrier.
    pub unsafe fn head(&self, tid: usize, rows: usize) {
        let vp = self.head.blocks * SLOTS * LANES;
        let job = Job {
            layer: &self.head,
            pointwise: Pointwise::Linear,
            input: &self.top,
            rows,
            cell: None,
            out: [
                Some(Dest {
                    buf: &self.logits,
                    stride: vp,
                    offset: 0,
                }),
                None,
            ],
            gates: None,
        };
        block::run(self.isa, &job, split(self.head.blocks, self.threads, tid));
    }

    /// Row `r`'s logits, `[vocab]`.
    ///
    /// # Safety
    /// The head phase that wrote them is behind a barrier, and no head phase
    /// runs while the slice is used.
    pub unsafe fn logits(&self, r: usize) -> &[f32] {
        let vp = self.head.blocks * SLOTS * LANES;
        self.logits.get(r * vp..r * vp + self.vocab)
    }

    /// Makes row `i` of the state that the step reading parity `p` starts
    /// from a copy of row `from[i]`, for every `i` (the rows a beam search
    /// keeps, in their new order); `scratch` holds the copies meanwhile.
    ///
    /// # Safety
    /// One thread calls it, while every other member waits at a barrier.
    pub unsafe fn gather(&self, p: usize, from: &[usize], scratch: &mut Vec<f32>) -> Result<()> {
        if from.len() > self.rows || from.iter().any(|&r| r >= self.rows) {
            return Err(Error::shape(format!(
                "internal: rows {from:?} gathered from a stack of {} rows",
                self.rows
            )));
        }
        // The recurrent part of each layer's input (`h`), and the cells.
        let states = self
            .layers
            .iter()
            .zip(&self.inputs)
            .map(|(layer, input)| (&input[p], layer.k, layer.x_width))
            .chain(self.cells.iter().map(|c| (c, self.hp, 0)));
        for (buf, stride, offset) in states {
            let width = stride - offset;
            scratch.clear();
            scratch
                .try_reserve(from.len() * width)
                .map_err(|e| team::no_memory::<f32>(from.len() * width, e))?;
            for &r in from {
                let at = r * stride + offset;
                scratch.extend_from_slice(buf.get(at..at + width));
            }
            for (i, row) in scratch.chunks_exact(width.max(1)).enumerate() {
                let at = i * stride + offset;
                buf.get_mut(at..at + width).copy_from_slice(row);
            }
        }
        Ok(())
    }
}
