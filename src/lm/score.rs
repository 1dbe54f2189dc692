//! Scoring many lines at once: log P(w_i | w_<i) of every token of every
//! line, the lines batched together as packed sequences.
//!
//! Why here and not a loop over lines: one line at a time, each forward is a
//! few small products per token plus a call's fixed cost. Sorted by length
//! and packed, many lines share every timestep's product, and a packed step
//! computes only the lines still running (`rnn::steps`), so a batch costs
//! about its real tokens. The head's logits are the large intermediate
//! (`rows x V`), so a batch is cut by rows.

use tch::{Device, Kind, Tensor};

use super::LmWeights;
use crate::error::{Error, Result};
use crate::rnn::check::check_weights;
use crate::rnn::product::Product;
use crate::rnn::{stack, RnnConfig};

/// Logits held at once, in elements: 32 Mi, 256 MiB in float64.
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
    let vocab = w.embedding.size()[0];
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
    let head = Product::new(w.head_weight, w.head_bias.map(Tensor::shallow_clone))?;
    // Longest first, as a PackedSequence wants; empty lines score nothing.
    let mut order: Vec<usize> = (0..lines.len())
        .filter(|&i| !lines[i].context.is_empty())
        .collect();
    order.sort_by_key(|&i| std::cmp::Reverse(lines[i].context.len()));
    let max_rows = (MAX_LOGITS / (vocab.max(1) as usize)).max(1);
    let mut scores: Vec<Vec<f64>> = lines.iter().map(|_| Vec::new()).collect();
    let mut start = 0;
    while start < order.len() {
        if interrupted() {
            return Err(Error::Interrupted);
        }
        // Lines are taken while their tokens fit; a line longer than the cap
        // goes alone (its logits are cut again below).
        let mut end = start;
        let mut rows = 0;
        while end < order.len()
            && (end == start || rows + lines[order[end]].context.len() <= max_rows)
        {
            rows += lines[order[end]].context.len();
            end += 1;
        }
        let batch = &order[start..end];
        let got = score_batch(&cfg, w, &head, lines, batch, max_rows)?;
        for (&i, s) in batch.iter().zip(got) {
            scores[i] = s;
        }
        start = end;
    }
    Ok(scores)
}

/// Scores the lines `batch` (sorted longest first) in one packed forward.
fn score_batch(
    cfg: &RnnConfig,
    w: &LmWeights,
    head: &Product,
    lines: &[Line],
    batch: &[usize],
    max_rows: usize,
) -> Result<Vec<Vec<f64>>> {
    let longest = batch.first().map_or(0, |&i| lines[i].context.len());
    let lens: Vec<usize> = batch.iter().map(|&i| lines[i].context.len()).collect();
    let batch_sizes: Vec<i64> = (0..longest)
        .map(|t| lens.iter().take_while(|&&n| n > t).count() as i64)
        .collect();
    let total: usize = lens.iter().sum();
    let mut context = Vec::with_capacity(total);
    let mut targets = Vec::with_capacity(total);
    for (t, &size) in batch_sizes.iter().enumerate() {
        for &i in &batch[..size as usize] {
            context.push(lines[i].context[t]);
            targets.push(lines[i].targets[t]);
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
        let logits = head
            .apply(&out.output.f_narrow(0, at, n)?)?
            .f_to_kind(Kind::Double)?;
        let picked = logits.f_gather(1, &targets.f_narrow(0, at, n)?.f_unsqueeze(1)?, false)?;
        let logp = picked
            .f_squeeze_dim(1)?
            .f_sub(&logits.f_logsumexp([1i64].as_slice(), false)?)?
            .f_to_device(Device::Cpu)?;
        flat.extend(Vec::<f64>::try_from(logp)?);
        at += n;
    }
    // Back from step order to each line's own tokens.
    let mut per_line: Vec<Vec<f64>> = lens.iter().map(|&n| Vec::with_capacity(n)).collect();
    let mut k = 0;
    for &size in &batch_sizes {
        for line in per_line.iter_mut().take(size as usize) {
            line.push(flat[k]);
            k += 1;
        }
    }
    Ok(per_line)
}
