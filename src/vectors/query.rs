//! Queries over word vectors, with the semantics of gensim 4's
//! `KeyedVectors`: cosine similarity, the query's own keys left out of the
//! neighbours it returns, and a row range (`restrict_vocab`) to search.
//!
//! A query is one pass over the rows (`scan`) and a partial sort of the
//! scores, so 100 K x 300 vectors answer in milliseconds.

// Values from Python reach this module: no index or slice may panic.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use std::ops::Range;

use tch::{Kind, Tensor};

use super::{scan, unit, Term, WordVectors};
use crate::error::{Error, Result};

/// What a neighbour query returns: the `topn` best keys with their scores,
/// or (with no `topn`) every row's score over the searched range.
pub enum Neighbours {
    Top(Vec<(String, f32)>),
    All(Vec<f32>),
}

/// gensim's 3CosMul keeps its denominator off zero with this.
const COSMUL_EPSILON: f64 = 1e-6;

impl WordVectors {
    /// The rows a query searches: gensim's `clip_start`/`clip_end`, both
    /// replaced by `0..restrict_vocab` when that is given (and clipped to
    /// the rows there are, as a slice is).
    pub fn search_range(
        &self,
        start: usize,
        end: Option<usize>,
        restrict: Option<usize>,
    ) -> Range<usize> {
        let (start, end) = match restrict {
            Some(r) if r > 0 => (0, r),
            _ => (start, end.filter(|&e| e > 0).unwrap_or(self.len())),
        };
        let end = end.min(self.len());
        start.min(end)..end
    }

    /// 3CosAdd (gensim's `most_similar`): the rows closest in cosine to the
    /// unit-scaled weighted mean of the terms (keys unit-scaled first; the
    /// weights are +1 for positive and -1 for negative terms unless given).
    pub fn most_similar(
        &self,
        terms: &[(Term, f64)],
        topn: Option<usize>,
        range: Range<usize>,
    ) -> Result<Neighbours> {
        if topn == Some(0) {
            return Ok(Neighbours::Top(Vec::new()));
        }
        let mean = Vec::<f32>::try_from(self.mean(terms, true, true, false)?)?;
        let exclude = self.key_rows(terms.iter().map(|(t, _)| t));
        let scores = self.cosines(&[&mean], &range).pop().unwrap_or_default();
        self.neighbours(scores, topn, range.start, &exclude)
    }

    /// 3CosMul (Levy and Goldberg 2014, eq. 4, with cosines shifted to
    /// [0, 1]): the product of the shifted cosines to the positive terms over
    /// that to the negative ones (plus 1e-6). Keys are unit-scaled, vectors
    /// taken as given, as gensim does.
    pub fn most_similar_cosmul(
        &self,
        positive: &[Term],
        negative: &[Term],
        topn: Option<usize>,
        range: Range<usize>,
    ) -> Result<Neighbours> {
        if topn == Some(0) {
            return Ok(Neighbours::Top(Vec::new()));
        }
        if positive.is_empty() {
            return Err(Error::value("cannot compute similarity with no input"));
        }
        let vectors = positive
            .iter()
            .chain(negative)
            .map(|t| Ok(Vec::<f32>::try_from(self.term_vector(t, true)?)?))
            .collect::<Result<Vec<_>>>()?;
        let queries: Vec<&[f32]> = vectors.iter().map(Vec::as_slice).collect();
        // One read of the rows for every term; then per row the product of
        // the shifted cosines, in float32 as gensim's, over the negative
        // terms' product (float64, from gensim's `prod(...) + 1e-6`).
        let cosines = self.cosines(&queries, &range);
        let (pos, neg) = cosines.split_at(positive.len());
        let scores = (0..range.len())
            .map(|r| {
                let shifted = |c: &Vec<f32>| (1.0 + c.get(r).copied().unwrap_or(f32::NAN)) / 2.0;
                let num: f32 = pos.iter().map(shifted).product();
                let den = if neg.is_empty() {
                    1.0
                } else {
                    f64::from(neg.iter().map(shifted).product::<f32>())
                };
                (f64::from(num) / (den + COSMUL_EPSILON)) as f32
            })
            .collect();
        let exclude = self.key_rows(positive.iter().chain(negative));
        self.neighbours(scores, topn, range.start, &exclude)
    }

    /// The key farthest from the others (gensim's `doesnt_match`): the
    /// lowest cosine to the unit mean of their unit vectors, ties to the
    /// smallest key. Keys without a vector are left out.
    pub fn doesnt_match(&self, words: &[String]) -> Result<String> {
        let used: Vec<(usize, &String)> = words
            .iter()
            .filter_map(|w| self.get(w).map(|i| (i, w)))
            .collect();
        if used.is_empty() {
            return Err(Error::value("cannot select a word from an empty list"));
        }
        let rows = used
            .iter()
            .map(|&(i, _)| self.row(i, true))
            .collect::<Result<Vec<_>>>()?;
        let stacked = Tensor::f_stack(&rows, 0)?;
        let mean = unit(&stacked.f_mean_dim(0, false, None::<Kind>)?)?;
        let dists = Vec::<f32>::try_from(stacked.f_mv(&mean)?)?;
        let mut best: Option<(f32, &String)> = None;
        for (&d, &(_, w)) in dists.iter().zip(&used) {
            let lower = match best {
                None => true,
                Some((bd, bw)) => d < bd || (d == bd && w < bw),
            };
            if lower {
                best = Some((d, w));
            }
        }
        best.map(|(_, w)| w.clone())
            .ok_or_else(|| Error::value("cannot select a word from an empty list"))
    }

    /// The cosine similarity of two keys.
    pub fn similarity(&self, a: &str, b: &str) -> Result<f64> {
        self.row_similarity(self.index_of(a)?, self.index_of(b)?)
    }

    /// The cosine similarity of rows `i` and `j`, in float32 as gensim's.
    pub fn row_similarity(&self, i: usize, j: usize) -> Result<f64> {
        let (a, b) = (unit(&self.row(i, false)?)?, unit(&self.row(j, false)?)?);
        Ok(a.f_dot(&b)?.f_double_value(&[])?)
    }

    /// The cosine similarity of the means of two sets of keys (their raw
    /// vectors; keys without one are skipped, as gensim's `n_similarity`).
    pub fn n_similarity(&self, a: &[String], b: &[String]) -> Result<f64> {
        let mean = |ws: &[String]| -> Result<Tensor> {
            let terms: Vec<(Term, f64)> = ws.iter().map(|w| (Term::Key(w.clone()), 1.0)).collect();
            unit(&self.mean(&terms, false, false, true)?)
        };
        Ok(mean(a)?.f_dot(&mean(b)?)?.f_double_value(&[])?)
    }

    /// `1 - cosine` from a key's (or a vector's) raw vector to the given
    /// keys, or to every row when none are given (gensim's `distances`).
    pub fn distances(&self, from: &Term, to: &[String]) -> Result<Vec<f32>> {
        let v = Vec::<f32>::try_from(self.term_vector(from, false)?)?;
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        let cos = if to.is_empty() {
            self.cosines(&[&v], &(0..self.len()))
                .pop()
                .unwrap_or_default()
        } else {
            to.iter()
                .map(|w| {
                    let i = self.index_of(w)?;
                    let n = self.norms().get(i).copied().unwrap_or(f32::NAN);
                    Ok(scan::dot(self.values(i)?, &v) / n)
                })
                .collect::<Result<Vec<_>>>()?
        };
        Ok(cos.into_iter().map(|c| 1.0 - c / norm).collect())
    }

    /// The keys closer to `a` than `b` is, `a` itself left out.
    pub fn closer_than(&self, a: &str, b: &str) -> Result<Vec<String>> {
        let (ia, ib) = (self.index_of(a)?, self.index_of(b)?);
        let d = self.distances(&Term::Key(a.to_string()), &[])?;
        let limit = d.get(ib).copied().unwrap_or(f32::NAN);
        Ok(d.iter()
            .zip(&self.keys)
            .enumerate()
            .filter(|&(i, (&di, _))| di < limit && i != ia)
            .map(|(_, (_, k))| k.clone())
            .collect())
    }

    /// How many keys are closer to `a` than `b` is, plus one.
    pub fn rank(&self, a: &str, b: &str) -> Result<usize> {
        Ok(self.closer_than(a, b)?.len() + 1)
    }

    /// Each searched row's dot product with each of `queries` over the row's
    /// norm: a cosine when the query has unit length.
    fn cosines(&self, queries: &[&[f32]], range: &Range<usize>) -> Vec<Vec<f32>> {
        scan::scan(
            self.data(),
            self.norms(),
            self.dim(),
            range.clone(),
            queries,
        )
    }

    /// The rows of the key terms that have one.
    fn key_rows<'a>(&self, terms: impl Iterator<Item = &'a Term>) -> Vec<usize> {
        terms
            .filter_map(|t| match t {
                Term::Key(k) => self.get(k),
                Term::Row(i) => Some(*i),
                Term::Vector(_) => None,
            })
            .collect()
    }

    /// The best `topn` of `scores` (rows `offset..`), the `exclude`d rows
    /// left out, or all the scores when there is no `topn`.
    fn neighbours(
        &self,
        values: Vec<f32>,
        topn: Option<usize>,
        offset: usize,
        exclude: &[usize],
    ) -> Result<Neighbours> {
        let Some(topn) = topn else {
            return Ok(Neighbours::All(values));
        };
        let best = top_k(&values, topn.saturating_add(exclude.len()));
        let mut out = Vec::with_capacity(topn.min(best.len()));
        for i in best {
            let row = i + offset;
            if exclude.contains(&row) {
                continue;
            }
            if let (Some(k), Some(&s)) = (self.keys.get(row), values.get(i)) {
                out.push((k.clone(), s));
            }
            if out.len() == topn {
                break;
            }
        }
        Ok(Neighbours::Top(out))
    }
}

/// The indices of the `k` largest values, largest first; NaN counts as the
/// smallest, and equal values keep their index order.
///
/// One pass keeping the best `k` so far in order: after the first few
/// thousand rows almost every value loses to the `k`-th best at once, so a
/// query's top 10 of 100 K rows costs one comparison per row.
pub fn top_k(values: &[f32], k: usize) -> Vec<usize> {
    let k = k.min(values.len());
    if k == 0 {
        return Vec::new();
    }
    // `a` ranks above `b`: larger, or a number against NaN. An equal value
    // seen later never ranks above, which keeps ties in index order.
    let above = |a: f32, b: f32| a > b || (b.is_nan() && !a.is_nan());
    let mut best: Vec<(f32, usize)> = Vec::with_capacity(k + 1);
    for (i, &v) in values.iter().enumerate() {
        if best.len() == k && !best.last().is_some_and(|&(w, _)| above(v, w)) {
            continue;
        }
        let at = best.partition_point(|&(w, _)| !above(v, w));
        best.insert(at, (v, i));
        best.truncate(k);
    }
    best.into_iter().map(|(_, i)| i).collect()
}
