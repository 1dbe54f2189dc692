//! N-gram language models: counting, Kneser-Ney estimation, ARPA files,
//! scoring and generation.
//!
//! * [`words`]: the model's words (`<unk>`, `<s>`, `</s>`, then the
//!   vocabulary's tokens) and how the [`Vocab`](crate::vocab::Vocab)'s
//!   tokenization reaches them; ARPA's escaping of whitespace.
//! * [`table`]: one order's n-grams, each a `(context id, word)` key in one
//!   hash map; the structure both fitting and queries use.
//! * [`count`]: streaming counts (memory: the distinct n-grams).
//! * [`estimate`]: interpolated modified Kneser-Ney (KenLM's lmplz
//!   estimates), Kneser-Ney with one discount, add-k.
//! * [`query`]: states, per-token scores, sentences, KenLM's evaluation
//!   figures, whole next-token distributions.
//! * [`arpa`]: reading and writing ARPA files.
//! * [`generate`]: sampling continuations with rustrnn's sampler.
//!
//! Probabilities are kept as ARPA keeps them, log10 in float64: a model
//! saved and read back scores exactly as before.

pub mod arpa;
pub mod count;
pub mod estimate;
pub mod generate;
pub mod query;
pub mod table;
pub mod words;

#[cfg(test)]
mod tests;

pub use count::Counter;
pub use estimate::Smoothing;
pub use query::{Evaluation, Input, Scored, State};
pub use words::Words;

use crate::error::{Error, Result};
use crate::vocab::Vocab;
use table::Table;

/// The highest order a model may have.
pub const MAX_ORDER: usize = 8;

/// `Value` error unless `1 <= order <= MAX_ORDER`.
pub fn check_order(order: usize) -> Result<()> {
    if (1..=MAX_ORDER).contains(&order) {
        Ok(())
    } else {
        Err(Error::value(format!(
            "order must be between 1 and {MAX_ORDER}, got {order}"
        )))
    }
}

impl Smoothing {
    /// `"modified_kneser_ney"`, `"kneser_ney"` or `"add_k"` (which needs
    /// `k > 0`; the others take no `k`).
    pub fn parse(name: &str, k: Option<f64>) -> Result<Smoothing> {
        let s = match name {
            "modified_kneser_ney" => Smoothing::ModifiedKneserNey,
            "kneser_ney" => Smoothing::KneserNey,
            "add_k" => {
                let k = k.unwrap_or(1.0);
                if !(k > 0.0 && k.is_finite()) {
                    return Err(Error::value(format!(
                        "k must be a positive finite number, got {k}"
                    )));
                }
                return Ok(Smoothing::AddK(k));
            }
            other => {
                return Err(Error::value(format!(
                    "smoothing must be 'modified_kneser_ney', 'kneser_ney' or 'add_k', got {}",
                    crate::vocab::quote(other)
                )))
            }
        };
        if let Some(k) = k {
            return Err(Error::value(format!(
                "k={k} is only used by smoothing='add_k', not {}",
                crate::vocab::quote(name)
            )));
        }
        Ok(s)
    }
}

/// A backoff n-gram model (what an ARPA file holds) with the vocabulary
/// that reads text into its words. Plain data: `Send + Sync`.
pub struct NGramModel {
    words: Words,
    /// `tables[n - 1]`: the n-grams of order n.
    tables: Vec<Table>,
    /// `prob[n - 1][id]`: log10 p; NaN for a blank (an n-gram an ARPA file
    /// lacks but whose extensions it has: only a context).
    prob: Vec<Vec<f64>>,
    /// `backoff[n - 1][id]`, orders 1..N-1: log10 backoff weight (0 when
    /// the n-gram is no context).
    backoff: Vec<Vec<f64>>,
    /// How it was estimated; None when read from an ARPA file.
    smoothing: Option<Smoothing>,
    /// The discounts (D1, D2, D3+) of each order, for Kneser-Ney fits.
    discounts: Vec<[f64; 3]>,
    children: query::ChildrenCell,
}

impl std::fmt::Debug for NGramModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NGramModel")
            .field("order", &self.order())
            .field("words", &self.words.len())
            .field("counts", &self.counts())
            .field("smoothing", &self.smoothing)
            .finish()
    }
}

impl NGramModel {
    /// Estimates a model from counts.
    pub fn from_counts(counts: count::Counts, smoothing: Smoothing) -> Result<NGramModel> {
        if counts.sentences == 0 {
            return Err(Error::value("there is no text to fit the model on"));
        }
        let est = estimate::estimate(&counts, smoothing)?;
        Ok(NGramModel {
            words: counts.words,
            tables: counts.tables,
            prob: est.prob,
            backoff: est.backoff,
            smoothing: Some(smoothing),
            discounts: est.discounts,
            children: Default::default(),
        })
    }

    /// Fits a model of `order` on `text` (its lines are the sentences).
    pub fn fit_text(
        text: &str,
        vocab: Vocab,
        order: usize,
        smoothing: Smoothing,
        interrupted: &mut dyn FnMut() -> bool,
    ) -> Result<NGramModel> {
        let mut counter = Counter::new(Words::new(vocab)?, order)?;
        counter.add_text(text, interrupted)?;
        NGramModel::from_counts(counter.finish()?, smoothing)
    }

    pub fn order(&self) -> usize {
        self.tables.len()
    }

    pub fn words(&self) -> &Words {
        &self.words
    }

    pub fn vocab(&self) -> &Vocab {
        self.words.vocab()
    }

    pub fn smoothing(&self) -> Option<Smoothing> {
        self.smoothing
    }

    pub fn discounts(&self) -> &[[f64; 3]] {
        &self.discounts
    }

    /// The number of n-grams of each order (blanks not included).
    pub fn counts(&self) -> Vec<usize> {
        self.prob
            .iter()
            .map(|p| p.iter().filter(|x| !x.is_nan()).count())
            .collect()
    }
}
