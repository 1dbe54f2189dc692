//! Word vectors as gensim's `KeyedVectors` has them: one float32 row per
//! key, looked up by key, queried by cosine similarity.
//!
//! * `query`    – nearest neighbours, analogies (3CosAdd, 3CosMul), the odd
//!   one out, similarities and ranks, with gensim's semantics.
//! * `word2vec` – the word2vec text and binary formats (and GloVe's
//!   header-less text) that word2vec, fastText and gensim read and write.
//! * `evaluate` – word-pair similarity (WordSim-353, SimLex) and analogy
//!   (`questions-words.txt`) benchmarks, as gensim scores them.
//! * `stats`    – Pearson and Spearman correlations with their p-values.
//!
//! The rows are a copy, not a view of a model's embedding: a query answers
//! for the vectors as they were when the `WordVectors` was made, as gensim's
//! copy does, while training goes on.

// Values from Python reach this module: no index or slice may panic.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

pub mod evaluate;
pub mod query;
pub mod scan;
pub mod stats;
#[cfg(test)]
mod tests;
pub mod word2vec;

use std::collections::HashMap;

use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};
use crate::vocab::quote;

/// Keys and their vectors.
pub struct WordVectors {
    keys: Vec<String>,
    index: HashMap<String, usize>,
    /// `V x D` float32, row-major: plain memory, which the scans read on
    /// several threads (a `Tensor` may not be shared between threads).
    data: Vec<f32>,
    dim: usize,
    /// Each row's L2 norm.
    norms: Vec<f32>,
}

/// One term of a query: a key, a row already looked up, or a vector given
/// as is.
#[derive(Debug)]
pub enum Term {
    Key(String),
    Row(usize),
    Vector(Tensor),
}

impl WordVectors {
    /// `vectors` `[len(keys), D]` of any floating dtype (copied to float32 on
    /// the CPU). Keys must be unique.
    pub fn new(keys: Vec<String>, vectors: &Tensor) -> Result<WordVectors> {
        let size = vectors.size();
        let rows = match size.as_slice() {
            [rows, _] => *rows,
            _ => {
                return Err(Error::value(format!(
                    "word vectors must be a 2-D tensor [num_keys, dim], got shape {size:?}"
                )))
            }
        };
        if !vectors.f_is_floating_point()? {
            return Err(Error::Type(format!(
                "word vectors must be floating point, got {:?}",
                vectors.f_kind()?
            )));
        }
        if usize::try_from(rows).ok() != Some(keys.len()) {
            return Err(Error::value(format!(
                "expected one vector per key: {} keys, but {rows} vectors",
                keys.len()
            )));
        }
        let dim = size.get(1).copied().unwrap_or(0);
        let data = Vec::<f32>::try_from(
            vectors
                .f_detach()?
                .f_to_device(Device::Cpu)?
                .f_to_kind(Kind::Float)?
                .f_reshape([-1])?,
        )?;
        WordVectors::from_rows(keys, data, usize::try_from(dim).unwrap_or(0))
    }

    /// `data` holds `keys.len()` rows of `dim` values, row-major.
    pub fn from_rows(keys: Vec<String>, data: Vec<f32>, dim: usize) -> Result<WordVectors> {
        if keys.len().checked_mul(dim) != Some(data.len()) {
            return Err(Error::value(format!(
                "expected {} x {dim} values for {} keys, got {}",
                keys.len(),
                keys.len(),
                data.len()
            )));
        }
        let mut index = HashMap::with_capacity(keys.len());
        for (i, key) in keys.iter().enumerate() {
            if index.insert(key.clone(), i).is_some() {
                return Err(Error::value(format!(
                    "key {} appears twice; word vectors need unique keys",
                    quote(key)
                )));
            }
        }
        let norms = data
            .chunks_exact(dim.max(1))
            .map(|r| {
                r.iter()
                    .map(|&x| f64::from(x) * f64::from(x))
                    .sum::<f64>()
                    .sqrt() as f32
            })
            .collect();
        Ok(WordVectors {
            keys,
            index,
            data,
            dim,
            norms,
        })
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The width of each vector.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The keys in row order (gensim's `index_to_key`).
    pub fn keys(&self) -> &[String] {
        &self.keys
    }

    /// The rows, row-major.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// Each row's L2 norm.
    pub fn norms(&self) -> &[f32] {
        &self.norms
    }

    /// A copy of the vectors as a `[V, D]` float32 tensor.
    pub fn to_tensor(&self) -> Result<Tensor> {
        Ok(Tensor::from_slice(&self.data).f_view([to_i64(self.len())?, to_i64(self.dim)?])?)
    }

    /// Row `i`'s values.
    pub fn values(&self, i: usize) -> Result<&[f32]> {
        self.data
            .get(i * self.dim..(i + 1) * self.dim)
            .ok_or_else(|| {
                Error::Index(format!(
                    "row {i} is out of range for {} vectors",
                    self.len()
                ))
            })
    }

    pub fn get(&self, key: &str) -> Option<usize> {
        self.index.get(key).copied()
    }

    /// The row of `key`, or a `KeyError` naming it.
    pub fn index_of(&self, key: &str) -> Result<usize> {
        self.get(key)
            .ok_or_else(|| Error::Key(format!("Key {} not present", quote(key))))
    }

    /// The vector of row `i`, as stored or scaled to unit length.
    pub fn row(&self, i: usize, unit: bool) -> Result<Tensor> {
        let v = Tensor::from_slice(self.values(i)?);
        Ok(match (unit, self.norms.get(i)) {
            (true, Some(&n)) => v.f_div_scalar(f64::from(n))?,
            _ => v,
        })
    }

    /// The vector a term stands for (a key's row, unit-scaled when `unit`;
    /// a given vector as is, after checking its width).
    pub fn term_vector(&self, term: &Term, unit: bool) -> Result<Tensor> {
        match term {
            Term::Key(k) => self.row(self.index_of(k)?, unit),
            Term::Row(i) => self.row(*i, unit),
            Term::Vector(v) => self.check_vector(v),
        }
    }

    /// A query vector as float32 `[D]`, or a ValueError naming both widths.
    pub fn check_vector(&self, v: &Tensor) -> Result<Tensor> {
        let size = v.size();
        if size.as_slice() != [to_i64(self.dim)?] {
            return Err(Error::value(format!(
                "expected a vector of shape [{}], got shape {size:?}",
                self.dim()
            )));
        }
        if !v.f_is_floating_point()? {
            return Err(Error::Type(format!(
                "a query vector must be floating point, got {:?}",
                v.f_kind()?
            )));
        }
        Ok(v.f_detach()?
            .f_to_device(Device::Cpu)?
            .f_to_kind(Kind::Float)?)
    }

    /// gensim's `get_mean_vector`: the weighted mean of the terms' vectors
    /// (keys unit-scaled first when `pre_normalize`), divided by the sum of
    /// the weights' magnitudes, optionally scaled to unit length. A missing
    /// key is a KeyError, or skipped when `ignore_missing`.
    pub fn mean(
        &self,
        terms: &[(Term, f64)],
        pre_normalize: bool,
        post_normalize: bool,
        ignore_missing: bool,
    ) -> Result<Tensor> {
        if terms.is_empty() {
            return Err(Error::value("cannot compute mean with no input"));
        }
        let mut mean = Tensor::f_zeros([to_i64(self.dim)?], (Kind::Float, Device::Cpu))?;
        let mut total = 0.0;
        for (term, weight) in terms {
            let v = match term {
                Term::Key(k) if ignore_missing && self.get(k).is_none() => continue,
                t => self.term_vector(t, pre_normalize)?,
            };
            // gensim adds `weight * v` in float64 into a float32 sum.
            let scaled = v.f_to_kind(Kind::Double)?.f_mul_scalar(*weight)?;
            mean = mean.f_add(&scaled)?.f_to_kind(Kind::Float)?;
            total += weight.abs();
        }
        if total > 0.0 {
            mean = mean.f_div_scalar(total)?;
        }
        if post_normalize {
            mean = unit(&mean)?;
        }
        Ok(mean)
    }
}

/// `v` scaled to unit L2 length; a zero vector stays zero (gensim's `unitvec`).
pub fn unit(v: &Tensor) -> Result<Tensor> {
    let norm = v.f_norm()?;
    if norm.f_double_value(&[])? > 0.0 {
        Ok(v.f_div(&norm)?)
    } else {
        Ok(v.shallow_clone())
    }
}

pub(crate) fn to_i64(i: usize) -> Result<i64> {
    i64::try_from(i).map_err(|_| Error::value(format!("index {i} is out of range")))
}
