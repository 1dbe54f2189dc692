//! The time axis of a batch laid out as flat rows, the layout every
//! recurrence works on: timestep `t` holds `sizes[t]` rows starting at
//! `offsets[t]`, and they are the first `sizes[t]` sequences of the batch.
//!
//! A `PackedSequence` is exactly this (its `batch_sizes`, sequences sorted
//! longest first, so the sizes never grow); a padded `[T, B, F]` tensor is
//! the uniform case, `[T * B, F]` with every size `B`. One representation
//! lets every engine compute only the real tokens of a packed batch, and
//! keeps one code path for both kinds of input.

use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Steps {
    sizes: Vec<usize>,
    offsets: Vec<usize>,
    rows: usize,
}

impl Steps {
    /// `len` timesteps of `batch` rows each: a padded batch.
    pub fn uniform(len: usize, batch: usize) -> Steps {
        Steps {
            sizes: vec![batch; len],
            offsets: (0..len).map(|t| t * batch).collect(),
            rows: len * batch,
        }
    }

    /// A `PackedSequence`'s `batch_sizes`, checked as torch checks them:
    /// at least one step, every size positive and none larger than the one
    /// before, and as many rows in all as the data has.
    pub fn packed(batch_sizes: &[i64], data_rows: i64) -> Result<Steps> {
        if batch_sizes.is_empty() {
            return Err(Error::value(
                "batch_sizes must have at least one timestep, got an empty tensor",
            ));
        }
        let mut offsets = Vec::with_capacity(batch_sizes.len());
        let mut rows: i64 = 0;
        let mut previous = i64::MAX;
        for (t, &size) in batch_sizes.iter().enumerate() {
            if size <= 0 || size > previous {
                return Err(Error::value(format!(
                    "batch_sizes must be positive and non-increasing (sequences sorted by \
                     decreasing length), got {size} at step {t} after {}",
                    if t == 0 { 0 } else { previous }
                )));
            }
            offsets.push(rows as usize);
            rows = rows.checked_add(size).ok_or_else(|| {
                Error::value("batch_sizes add up to more rows than a tensor can hold")
            })?;
            previous = size;
        }
        if rows != data_rows {
            return Err(Error::shape(format!(
                "batch_sizes add up to {rows} rows, but the packed data has {data_rows}"
            )));
        }
        Ok(Steps {
            sizes: batch_sizes.iter().map(|&s| s as usize).collect(),
            offsets,
            rows: rows as usize,
        })
    }

    /// Timesteps.
    pub fn len(&self) -> usize {
        self.sizes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sizes.is_empty()
    }

    /// Sequences in the batch (the rows of the first step).
    pub fn batch(&self) -> usize {
        self.sizes.first().copied().unwrap_or(0)
    }

    /// Rows over all timesteps.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Whether every step has the whole batch (padded input).
    pub fn is_uniform(&self) -> bool {
        self.sizes.iter().all(|&s| s == self.batch())
    }

    /// `(first row, rows)` of step `t`.
    pub fn at(&self, t: usize) -> (usize, usize) {
        (self.offsets[t], self.sizes[t])
    }

    /// Timesteps in processing order.
    pub fn order(&self, reverse: bool) -> Box<dyn Iterator<Item = usize>> {
        let len = self.len();
        if reverse {
            Box::new((0..len).rev())
        } else {
            Box::new(0..len)
        }
    }

    /// Step `t`'s rows of a `[rows, F]` tensor.
    pub fn step(&self, x: &Tensor, t: usize) -> Result<Tensor> {
        let (at, n) = self.at(t);
        Ok(x.f_narrow(0, at as i64, n as i64)?)
    }

    /// The step each sequence starts from (`reverse`) or ends at.
    fn edge(&self, b: usize, reverse: bool) -> usize {
        if reverse {
            0
        } else {
            // Sequence b runs while the steps hold more than b rows.
            self.sizes.partition_point(|&s| s > b) - 1
        }
    }

    /// For every row, the row of the state it started from, in
    /// `cat([out, init])`: the same sequence's row in the step before
    /// (in processing order), or its initial state.
    fn previous_index(&self, reverse: bool) -> Vec<i64> {
        let mut index = Vec::with_capacity(self.rows);
        for t in 0..self.len() {
            let (_, n) = self.at(t);
            let before = if reverse { t + 1 } else { t.wrapping_sub(1) };
            let (prev_at, prev_n) = if before < self.len() {
                self.at(before)
            } else {
                (0, 0)
            };
            for b in 0..n {
                index.push(if b < prev_n {
                    (prev_at + b) as i64
                } else {
                    (self.rows + b) as i64
                });
            }
        }
        index
    }

    /// The state every row started from, `[rows, H]`, from a direction's
    /// outputs `out` `[rows, H]` and its initial state `init` `[batch, H]`.
    pub fn previous(&self, out: &Tensor, init: &Tensor, reverse: bool) -> Result<Tensor> {
        let (len, batch) = (self.len() as i64, self.batch() as i64);
        if self.is_uniform() {
            if len == 1 {
                return Ok(init.shallow_clone());
            }
            let shifted = self.rows as i64 - batch;
            return Ok(if reverse {
                Tensor::f_cat(&[out.f_narrow(0, batch, shifted)?, init.shallow_clone()], 0)?
            } else {
                Tensor::f_cat(&[init.shallow_clone(), out.f_narrow(0, 0, shifted)?], 0)?
            });
        }
        let index = Tensor::f_from_slice(&self.previous_index(reverse))?.f_to(out.device())?;
        Ok(Tensor::f_cat(&[out, init], 0)?.f_index_select(0, &index)?)
    }

    /// Each sequence's last state `[batch, H]` from a direction's outputs:
    /// its row in the last step it took part in.
    pub fn last(&self, out: &Tensor, reverse: bool) -> Result<Tensor> {
        let batch = self.batch();
        if reverse || self.is_uniform() {
            let (at, _) = self.at(if reverse { 0 } else { self.len() - 1 });
            return Ok(out.f_narrow(0, at as i64, batch as i64)?);
        }
        let index: Vec<i64> = (0..batch)
            .map(|b| (self.offsets[self.edge(b, false)] + b) as i64)
            .collect();
        let index = Tensor::f_from_slice(&index)?.f_to(out.device())?;
        Ok(out.f_index_select(0, &index)?)
    }

    /// The batch sizes as an int64 CPU tensor, as a `PackedSequence` holds them.
    pub fn sizes_tensor(&self) -> Result<Tensor> {
        let sizes: Vec<i64> = self.sizes.iter().map(|&s| s as i64).collect();
        Ok(Tensor::f_from_slice(&sizes)?
            .f_to_kind(Kind::Int64)?
            .f_to(Device::Cpu)?)
    }
}

/// The state handed from one timestep to the next. A step's rows are a
/// prefix of the batch, and a row no step touches keeps its value: so when
/// the steps are done every sequence's row holds its own final state, and
/// in a reverse pass a sequence finds its initial state waiting in its row
/// when it starts. In a padded batch every step has every row and the
/// state is simply the last step's output, with no copy.
pub struct Carry {
    state: Tensor,
    uniform: bool,
}

impl Carry {
    pub fn new(init: &Tensor, steps: &Steps) -> Result<Carry> {
        let uniform = steps.is_uniform();
        Ok(Carry {
            state: if uniform {
                init.shallow_clone()
            } else {
                init.f_detach_copy()?
            },
            uniform,
        })
    }

    /// The state of the first `n` rows.
    pub fn rows(&self, n: usize) -> Result<Tensor> {
        Ok(if self.uniform {
            self.state.shallow_clone()
        } else {
            self.state.f_narrow(0, 0, n as i64)?
        })
    }

    /// Sets the first rows (as many as `v` has) to `v`.
    pub fn set(&mut self, v: &Tensor) -> Result<()> {
        if self.uniform {
            self.state = v.shallow_clone();
        } else {
            self.state.f_narrow(0, 0, v.size()[0])?.f_copy_(v)?;
        }
        Ok(())
    }

    pub fn into_state(self) -> Tensor {
        self.state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_sizes_are_checked() {
        assert!(Steps::packed(&[3, 2, 2, 1], 8).is_ok());
        assert!(Steps::packed(&[], 0).is_err());
        assert!(Steps::packed(&[2, 3], 5).is_err());
        assert!(Steps::packed(&[2, 0], 2).is_err());
        assert!(Steps::packed(&[2, 1], 4).is_err());
        assert!(Steps::packed(&[i64::MAX, i64::MAX], 0).is_err());
    }

    /// Sequences of lengths 3, 2, 2, 1 (batch_sizes 4, 3, 1).
    #[test]
    fn previous_rows_and_last_rows_follow_each_sequence() {
        let s = Steps::packed(&[4, 3, 1], 8).unwrap();
        assert!(!s.is_uniform());
        // Forward: step 1's rows continue rows 0..3 of step 0; step 2's row 0
        // continues step 1's row 0 (row 4). Initial states sit at 8 + b.
        assert_eq!(s.previous_index(false), [8, 9, 10, 11, 0, 1, 2, 4]);
        // Reverse: step 0's rows 0..3 continue step 1, row 3 starts fresh.
        assert_eq!(s.previous_index(true), [4, 5, 6, 11, 7, 9, 10, 8]);
        assert_eq!(
            (0..4).map(|b| s.edge(b, false)).collect::<Vec<_>>(),
            [2, 1, 1, 0]
        );
        let out = Tensor::from_slice(&[0.0f64, 1., 2., 3., 4., 5., 6., 7.]).view([8, 1]);
        let last = s.last(&out, false).unwrap();
        assert_eq!(
            Vec::<f64>::try_from(last.view([-1])).unwrap(),
            [7.0, 5.0, 6.0, 3.0]
        );
    }
}
