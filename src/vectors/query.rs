//! Queries over word vectors, with the semantics of gensim 4's
//! `KeyedVectors`: cosine similarity, the query's own keys left out of the
//! neighbours it returns, and a row range (`restrict_vocab`) to search.
//!
//! A query is one matrix-vector product over the rows and a partial sort of
//! the scores, so 100 K x 300 vectors answer in milliseconds.

// Values from Python reach this module: no index or slice may panic.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use std::cmp::Ordering;
use std::ops::Range;

use tch::{Kind, Tensor};

use super::{to_i64, unit, Term, WordVectors};
use crate::error::{Error, Result};

/// What a neighbour query returns: the `topn` best keys with their scores,
/// or (with no `topn`) every row's score over the searched range.
pub enum Neighbours {
    Top(Vec<(String, f32)>),
    All(Tensor),
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
        let mean = self.mean(terms, true, true, false)?;
        let exclude = self.key_rows(terms.iter().map(|(t, _)| t));
        let scores = self.cosines(&mean, &range)?;
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
        let shifted = |terms: &[Term]| -> Result<Option<Tensor>> {
            let mut prod: Option<Tensor> = None;
            for t in terms {
                let v = self.term_vector(t, true)?;
                let s = self
                    .cosines(&v, &range)?
                    .f_add_scalar(1.0)?
                    .f_div_scalar(2.0)?;
                prod = Some(match prod {
                    Some(p) => p.f_mul(&s)?,
                    None => s,
                });
            }
            Ok(prod)
        };
        let num = shifted(positive)?
            .ok_or_else(|| Error::value("cannot compute similarity with no input"))?;
        let den = match shifted(negative)? {
            Some(d) => d.f_to_kind(Kind::Double)?.f_add_scalar(COSMUL_EPSILON)?,
            None => Tensor::from(1.0 + COSMUL_EPSILON),
        };
        let scores = num
            .f_to_kind(Kind::Double)?
            .f_div(&den)?
            .f_to_kind(Kind::Float)?;
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
        let (a, b) = (
            unit(&self.row(self.index_of(a)?, false)?)?,
            unit(&self.row(self.index_of(b)?, false)?)?,
        );
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
    pub fn distances(&self, from: &Term, to: &[String]) -> Result<Tensor> {
        let v = self.term_vector(from, false)?;
        let (others, norms) = if to.is_empty() {
            (self.vectors.shallow_clone(), self.norms.shallow_clone())
        } else {
            let rows = to
                .iter()
                .map(|w| to_i64(self.index_of(w)?))
                .collect::<Result<Vec<_>>>()?;
            let idx = Tensor::from_slice(&rows);
            (
                self.vectors.f_index_select(0, &idx)?,
                self.norms.f_index_select(0, &idx)?,
            )
        };
        let norm = v.f_norm()?;
        let cos = others.f_mv(&v)?.f_div(&norms.f_mul(&norm)?)?;
        Ok(cos.f_rsub_scalar(1.0)?)
    }

    /// The keys closer to `a` than `b` is, `a` itself left out.
    pub fn closer_than(&self, a: &str, b: &str) -> Result<Vec<String>> {
        let (ia, ib) = (self.index_of(a)?, self.index_of(b)?);
        let d = Vec::<f32>::try_from(self.distances(&Term::Key(a.to_string()), &[])?)?;
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

    /// Every searched row's cosine to `v` `[D]`: the raw rows' products
    /// divided by their norms (so `v` must already be unit for a cosine).
    fn cosines(&self, v: &Tensor, range: &Range<usize>) -> Result<Tensor> {
        let (start, len) = (to_i64(range.start)?, to_i64(range.len())?);
        let rows = self.vectors.f_narrow(0, start, len)?;
        let norms = self.norms.f_narrow(0, start, len)?;
        Ok(rows.f_mv(v)?.f_div(&norms)?)
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
        scores: Tensor,
        topn: Option<usize>,
        offset: usize,
        exclude: &[usize],
    ) -> Result<Neighbours> {
        let Some(topn) = topn else {
            return Ok(Neighbours::All(scores));
        };
        let values = Vec::<f32>::try_from(&scores)?;
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
pub fn top_k(values: &[f32], k: usize) -> Vec<usize> {
    let order = |a: &usize, b: &usize| -> Ordering {
        let (x, y) = (
            values.get(*a).copied().unwrap_or(f32::NAN),
            values.get(*b).copied().unwrap_or(f32::NAN),
        );
        match (x.is_nan(), y.is_nan()) {
            (true, true) => a.cmp(b),
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) => y.partial_cmp(&x).unwrap_or(Ordering::Equal).then(a.cmp(b)),
        }
    };
    let mut idx: Vec<usize> = (0..values.len()).collect();
    let k = k.min(idx.len());
    if k == 0 {
        return Vec::new();
    }
    if k < idx.len() {
        idx.select_nth_unstable_by(k - 1, order);
        idx.truncate(k);
    }
    idx.sort_unstable_by(order);
    idx
}
