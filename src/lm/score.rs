//! Scoring many lines at once: log P(w_i | w_<i) of every token of every
//! line, the lines batched together as packed sequences.
//!
//! Why here and not a loop over lines: one line at a time, each forward is a
//! few small products per token plus a call's fixed cost. Sorted by length
//! and packed, many lines share every timestep's product, and a packed step
//! computes only the lines still running (`rnn::steps`), so a batch costs
//! about its real tokens. The head computes a chunk of rows at a time
//! (`lm::cross_entropy`), so its logits never exist for a whole batch; a batch is
//! still cut by rows, which bounds the stack's buffers.

// Values from Python reach this module: no index or slice may panic.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use tch::{Device, Kind, Tensor};

use super::cross_entropy::{LinearCrossEntropy, PackedHead};
use super::{HeadWeights, LmWeights};
use crate::error::{Error, Result};
use crate::rnn::check::check_weights;
use crate::rnn::{stack, RnnConfig};

/// A batch's rows times the vocabulary, at most: 32 Mi. The bound the
/// batches were cut by while the head held a batch's logits, kept as the
/// size of a batch (it sets how many lines share a packed step).
const MAX_LOGITS: usize = 1 << 25;

/// One line to score: the ids it is read from and the ids it predicts,
/// equally long (the caller adds the line boundary before and after).
pub struct Line {
    pub context: Vec<i64>,
    pub targets: Vec<i64>,
}

/// The natural-log probability of every target of every line, in the
/// lines' order.
pub fn score(
    cfg: &RnnConfig,
    w: &LmWeights,
    lines: &[Line],
    mut interrupted: impl FnMut() -> bool,
) -> Result<Vec<Vec<f64>>> {
    let _guard = tch::no_grad_guard();
    check_weights(cfg, w.stack)?;
    if cfg.bidirectional {
        return Err(Error::value(
            "a bidirectional stack cannot score text left to right: its reverse pass reads \
             the future",
        ));
    }
    let vocab = w.embedding.size().first().copied().unwrap_or(0);
    for (i, line) in lines.iter().enumerate() {
        if line.context.len() != line.targets.len() {
            return Err(Error::value(format!(
                "line {i}: {} context ids for {} targets",
                line.context.len(),
                line.targets.len()
            )));
        }
        if let Some(&bad) = line
            .context
            .iter()
            .chain(&line.targets)
            .find(|&&id| id < 0 || id >= vocab)
        {
            return Err(Error::Index(format!(
                "line {i}: id {bad} is outside the vocabulary of size {vocab}"
            )));
        }
    }
    // The stack reads packed input time-major, whatever layout it was built for.
    let cfg = RnnConfig {
        batch_first: false,
        ..cfg.clone()
    };
    // Longest first, as a PackedSequence wants; empty lines score nothing.
    let mut order: Vec<(usize, &Line)> = lines
        .iter()
        .enumerate()
        .filter(|(_, line)| !line.context.is_empty())
        .collect();
    order.sort_by_key(|(_, line)| std::cmp::Reverse(line.context.len()));
    let max_rows = (MAX_LOGITS / (vocab.max(1) as usize)).max(1);
    // Packed once for every batch: a batch of a large vocabulary has few rows
    // (1,008 at 33,278 words), which packing per batch would pay again.
    let total: usize = order.iter().map(|(_, line)| line.context.len()).sum();
    let packed = w.head.packed(total.try_into().unwrap_or(i64::MAX))?;
    let mut scores: Vec<Vec<f64>> = lines.iter().map(|_| Vec::new()).collect();
    let mut rest = order.as_slice();
    while !rest.is_empty() {
        if interrupted() {
            return Err(Error::Interrupted);
        }
        // Lines are taken while their tokens fit; a line longer than the cap
        // goes alone.
        let mut rows = 0;
        let take = rest
            .iter()
            .take_while(|(_, line)| {
                let first = rows == 0;
                rows += line.context.len();
                first || rows <= max_rows
            })
            .count();
        let (batch, tail) = rest.split_at(take);
        let got = score_batch(&cfg, w, batch, max_rows, packed.as_ref())?;
        for (&(i, _), s) in batch.iter().zip(got) {
            if let Some(slot) = scores.get_mut(i) {
                *slot = s;
            }
        }
        rest = tail;
    }
    Ok(scores)
}

/// Scores the lines `batch` (sorted longest first) in one packed forward.
fn score_batch(
    cfg: &RnnConfig,
    w: &LmWeights,
    batch: &[(usize, &Line)],
    max_rows: usize,
    packed: Option<&PackedHead>,
) -> Result<Vec<Vec<f64>>> {
    let lens: Vec<usize> = batch.iter().map(|(_, line)| line.context.len()).collect();
    let longest = lens.first().copied().unwrap_or(0);
    let batch_sizes: Vec<i64> = (0..longest)
        .map(|t| lens.iter().take_while(|&&n| n > t).count() as i64)
        .collect();
    let total: usize = lens.iter().sum();
    let mut context = Vec::with_capacity(total);
    let mut targets = Vec::with_capacity(total);
    // Step t holds the first batch_sizes[t] lines: those longer than t.
    let mut cursors: Vec<_> = batch
        .iter()
        .map(|(_, line)| line.context.iter().zip(&line.targets))
        .collect();
    for &size in &batch_sizes {
        for cursor in cursors.iter_mut().take(size as usize) {
            if let Some((&c, &y)) = cursor.next() {
                context.push(c);
                targets.push(y);
            }
        }
    }
    let device = w.embedding.device();
    let ids = Tensor::f_from_slice(&context)?.f_to_device(device)?;
    let x = w.embedding.f_index_select(0, &ids)?;
    let out = stack::forward(
        cfg,
        &x,
        Some(&batch_sizes),
        None,
        None,
        w.stack,
        false,
        false,
    )?;
    let targets = Tensor::f_from_slice(&targets)?.f_to_device(device)?;
    // Row by row through the head, a slice at a time, so the logits stay bounded.
    let mut flat = Vec::with_capacity(total);
    let mut at = 0i64;
    while (at as usize) < total {
        let n = max_rows.min(total - at as usize) as i64;
        let (rows, wanted) = (out.output.f_narrow(0, at, n)?, targets.f_narrow(0, at, n)?);
        let logp = match &w.head {
            // log p = z_y - logsumexp(z) through the head a chunk of rows at a
            // time (lm::cross_entropy), in the logits' own dtype: converting
            // `rows x V` float32 logits to float64 first cost more than the
            // head's product (86 + 117 ms against 127 ms for 6,700 x 5,000
            // here), for a per-token error float32 keeps near 1e-6.
            HeadWeights::Linear { weight, bias, .. } => {
                let rows = w.head.project(&rows)?;
                LinearCrossEntropy {
                    packed,
                    ..LinearCrossEntropy::new(&rows, weight, *bias, &wanted)
                }
                .log_probs()?
            }
            // Only the clusters the targets fall in are computed.
            HeadWeights::Adaptive(a) => a.target_log_prob(&rows, &wanted)?,
        };
        let logp = logp.f_to_kind(Kind::Double)?.f_to_device(Device::Cpu)?;
        flat.extend(Vec::<f64>::try_from(logp)?);
        at += n;
    }
    // Back from step order to each line's own tokens.
    let mut per_line: Vec<Vec<f64>> = lens.iter().map(|&n| Vec::with_capacity(n)).collect();
    let mut flat = flat.into_iter();
    for &size in &batch_sizes {
        for (line, logp) in per_line.iter_mut().take(size as usize).zip(&mut flat) {
            line.push(logp);
        }
    }
    Ok(per_line)
}
