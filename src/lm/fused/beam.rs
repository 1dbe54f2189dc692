//! Beam search on the fused stack ([`FusedStack`]). The search itself
//! (`lm::beam::search`) runs on team member 0, which serves its requests
//! with the others; between requests they wait at the barrier:
//!
//! * best: the running rows' logits (vocabulary blocks split between the
//!   members), a barrier, each row's log-sum-exp and best `keep` tokens
//!   (rows split), a barrier; member 0 then merges the rows' lists into the
//!   step's best candidates over beams x vocabulary.
//! * advance: member 0 copies the state rows into the order of the kept
//!   beams and writes their tokens' embeddings; then a step of the layers
//!   (hidden-unit blocks split), a barrier after each layer.
//!
//! A row's best `2 num_beams` tokens hold every candidate of it that can be
//! among the step's best `2 num_beams`, so the merge sees all of them. The
//! prompt is fed through the same layers, one row.

// Values from Python reach this module: no index or slice may panic.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use std::cmp::Ordering;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use tch::Tensor;

use super::select::{best_tokens, log_sum_exp};
use super::stack::{rows_buf, FusedStack};
use super::CallerOnly;
use crate::error::{Error, Result};
use crate::kernel::team::{self, split, SharedBuf};
use crate::lm::beam::{search, BeamOptions, BeamRows, Candidate, Hypothesis};
use crate::lm::LmWeights;
use crate::rnn::fused::packing::Floats;
use crate::rnn::RnnConfig;

/// Requests member 0 makes of the team.
const EXIT: usize = 0;
const LAYERS: usize = 1;
const BEST: usize = 2;

/// What the team shares.
struct Shared<'s> {
    stack: &'s FusedStack<'s>,
    /// The request and its arguments, written by member 0 before the barrier
    /// that starts it.
    request: AtomicUsize,
    rows: AtomicUsize,
    parity: AtomicUsize,
    keep: AtomicUsize,
    /// Per row: the log-sum-exp of its logits.
    lse: SharedBuf<f64>,
    /// Per row: its best `(logit, token)`, best first, `[rows, most_keep]`,
    /// and how many.
    best: SharedBuf<(f32, usize)>,
    counts: SharedBuf<usize>,
    most_keep: usize,
}

/// Member `tid`'s share of `request`; `top` is its scratch list.
fn serve(s: &Shared, tid: usize, request: usize, top: &mut Vec<(f32, usize)>) {
    let rows = s.rows.load(Relaxed);
    // SAFETY (all stack and buffer calls): every member serves the same
    // request with the same arguments (written before the barrier that
    // started it), each phase writes only the member's own blocks or rows,
    // and barriers separate the phases.
    match request {
        LAYERS => unsafe { s.stack.layers(tid, s.parity.load(Relaxed), rows) },
        BEST => {
            unsafe { s.stack.head(tid, rows) };
            s.stack.barrier().wait();
            let keep = s.keep.load(Relaxed).min(s.most_keep);
            for r in split(rows, s.stack.threads(), tid) {
                let logits = unsafe { s.stack.logits(r) };
                best_tokens(s.stack.isa(), logits, keep, top);
                let at = r * s.most_keep;
                unsafe {
                    s.lse
                        .get_mut(r..r + 1)
                        .fill(log_sum_exp(s.stack.isa(), logits));
                    s.counts.get_mut(r..r + 1).fill(top.len());
                    s.best.get_mut(at..at + top.len()).copy_from_slice(top);
                }
            }
            s.stack.barrier().wait();
        }
        _ => {}
    }
}

/// Members 1.. : serve requests until member 0 says it is done.
fn member(s: &Shared, tid: usize) {
    let mut top = Vec::new();
    loop {
        s.stack.barrier().wait();
        match s.request.load(Relaxed) {
            EXIT => return,
            request => serve(s, tid, request, &mut top),
        }
    }
}

/// Member 0's side: the rows [`search`] works on. Dropped, it lets the
/// others go.
struct Lead<'a, 's> {
    s: &'a Shared<'s>,
    /// The parity the next step of the layers reads.
    p: usize,
    top: Vec<(f32, usize)>,
    scratch: Vec<f32>,
}

impl Lead<'_, '_> {
    fn request(&mut self, request: usize, rows: usize) {
        self.s.request.store(request, Relaxed);
        self.s.rows.store(rows, Relaxed);
        self.s.parity.store(self.p, Relaxed);
        // Publishes the request: the others read it after this barrier.
        self.s.stack.barrier().wait();
        serve(self.s, 0, request, &mut self.top);
    }

    /// Feeds `tokens[i]` to row `i`, one step of the layers.
    fn feed(&mut self, tokens: &[usize]) -> Result<()> {
        let (rows, embedded) = (self.s.stack.rows(), self.s.stack.embedded());
        if tokens.len() > rows || tokens.iter().any(|&t| t >= embedded) {
            return Err(Error::shape(format!(
                "internal: tokens {tokens:?} fed to {rows} rows of {embedded} embeddings"
            )));
        }
        for (r, &t) in tokens.iter().enumerate() {
            // SAFETY: the others wait at the barrier; the token has an
            // embedding row.
            unsafe { self.s.stack.embed(self.p, r, t) };
        }
        self.request(LAYERS, tokens.len());
        self.p = 1 - self.p;
        Ok(())
    }
}

impl Drop for Lead<'_, '_> {
    fn drop(&mut self) {
        // A panic poisons the barrier instead (`team::run`).
        if !std::thread::panicking() {
            self.s.request.store(EXIT, Relaxed);
            self.s.stack.barrier().wait();
        }
    }
}

/// Higher total first, then the lower row and token (the flat index).
fn order(a: &Candidate, b: &Candidate) -> Ordering {
    b.total
        .partial_cmp(&a.total)
        .unwrap_or(Ordering::Equal)
        .then((a.row, a.token).cmp(&(b.row, b.token)))
}

impl BeamRows for Lead<'_, '_> {
    fn best(&mut self, sums: &[f64], want: usize) -> Result<Vec<Candidate>> {
        let (rows, vocab) = (sums.len(), self.s.stack.vocab());
        if rows == 0 || rows > self.s.stack.rows() {
            return Err(Error::shape(format!(
                "internal: {rows} beams on a stack of {} rows",
                self.s.stack.rows()
            )));
        }
        let k = want.min(rows.saturating_mul(vocab));
        self.s.keep.store(k.min(vocab), Relaxed);
        self.request(BEST, rows);
        // SAFETY: the request is over (its last barrier passed); the others
        // wait at the barrier and write nothing until the next one.
        let (lse, counts) = unsafe { (self.s.lse.get(0..rows), self.s.counts.get(0..rows)) };
        if let Some(row) = lse.iter().position(|l| l.is_nan()) {
            return Ok(vec![Candidate {
                total: f64::NAN,
                row,
                token: 0,
            }]);
        }
        let listed: usize = counts.iter().sum();
        let mut all = Vec::new();
        all.try_reserve(listed)
            .map_err(|e| team::no_memory::<Candidate>(listed, e))?;
        for (r, ((&sum, &lse), &n)) in sums.iter().zip(lse).zip(counts).enumerate() {
            let at = r * self.s.most_keep;
            let row = unsafe { self.s.best.get(at..at + n) };
            all.extend(row.iter().map(|&(logit, token)| Candidate {
                // As the op path: log-softmax in float64, then the beam's sum.
                total: sum + (logit as f64 - lse),
                row: r,
                token: token as i64,
            }));
        }
        if all.len() > k && k > 0 {
            all.select_nth_unstable_by(k - 1, order);
            all.truncate(k);
        }
        all.sort_unstable_by(order);
        Ok(all)
    }

    fn advance(&mut self, parents: &[usize], tokens: &[i64]) -> Result<()> {
        // SAFETY: the others wait at the barrier.
        unsafe { self.s.stack.gather(self.p, parents, &mut self.scratch)? };
        let tokens: Vec<usize> = tokens
            .iter()
            .map(|&t| usize::try_from(t).unwrap_or(usize::MAX))
            .collect();
        self.feed(&tokens)
    }
}

/// The most rows the search can run: `num_beams`, or fewer when the
/// vocabulary cannot branch into that many within `max_tokens - 1` steps
/// (the last step's beams are not stepped).
fn most_rows(num_beams: usize, vocab: usize, max_tokens: usize) -> usize {
    let mut n = 1usize;
    if vocab > 1 {
        for _ in 1..max_tokens {
            if n >= num_beams {
                break;
            }
            n = n.saturating_mul(vocab);
        }
    }
    n.min(num_beams).max(1)
}

/// [`crate::lm::beam::beam_search`] for a model [`super::supports`] accepts,
/// checked by the caller: `stops` (sorted) end a hypothesis.
pub fn beam_search(
    cfg: &RnnConfig,
    w: &LmWeights,
    prompt: &Tensor,
    opts: &BeamOptions,
    stops: &[i64],
    max_tokens: usize,
    interrupted: impl FnMut() -> bool,
) -> Result<Vec<Hypothesis>> {
    let prompt: Vec<usize> = Vec::<i64>::try_from(prompt)?
        .into_iter()
        .map(|t| usize::try_from(t).unwrap_or(usize::MAX))
        .collect();
    let embedding = Floats::new(w.embedding)?;
    let vocab = usize::try_from(w.linear_head()?.0.size2()?.0).unwrap_or(0);
    let rows = most_rows(opts.num_beams, vocab, max_tokens);
    let stack = FusedStack::new(cfg, w, embedding.get(), rows, "num_beams")?;
    let most_keep = opts.num_beams.saturating_mul(2).min(vocab);
    let shared = Shared {
        stack: &stack,
        request: AtomicUsize::new(EXIT),
        rows: AtomicUsize::new(0),
        parity: AtomicUsize::new(0),
        keep: AtomicUsize::new(0),
        lse: rows_buf(rows, 1, "num_beams")?,
        best: rows_buf(rows, most_keep, "num_beams")?,
        counts: rows_buf(rows, 1, "num_beams")?,
        most_keep,
    };
    let mut out: Option<Result<Vec<Hypothesis>>> = None;
    let lead_only = CallerOnly::new((&mut out, interrupted));
    team::run(stack.threads(), stack.barrier(), |tid| {
        if tid != 0 {
            return member(&shared, tid);
        }
        // Made first, so that the others are let go whatever happens next.
        let mut lead = Lead {
            s: &shared,
            p: 0,
            top: Vec::new(),
            scratch: Vec::new(),
        };
        // SAFETY: member 0 runs once, on this thread (`team::run`'s contract).
        if let Some((out, interrupted)) = unsafe { lead_only.take() } {
            let prompt_fed = prompt.iter().try_for_each(|&t| lead.feed(&[t]));
            *out = Some(
                prompt_fed.and_then(|()| search(&mut lead, opts, stops, max_tokens, interrupted)),
            );
        }
    })?;
    drop(lead_only);
    out.unwrap_or_else(|| Err(Error::shape("internal: the beam search did not run")))
}
