//! The token streams as PyTorch's word_language_model reads them: the ids are
//! trimmed to a multiple of the batch size and cut into `B` contiguous streams
//! (`[L, B]`, stream `b` is column `b`); training walks them in windows of
//! `bptt` steps, each target being the next token of the same stream.

use tch::Tensor;

use crate::error::{Error, Result};

/// `B` parallel streams `[L, B]` read in windows of at most `bptt` steps.
pub struct Streams {
    data: Tensor,
    bptt: i64,
}

impl Streams {
    /// Cuts `ids` (1-D) into `batch_size * world` streams and keeps the
    /// `batch_size` of shard `rank` (for data-parallel training; `world = 1`
    /// keeps all). `what` names the data in error messages.
    pub fn new(
        ids: &Tensor,
        batch_size: i64,
        bptt: i64,
        rank: i64,
        world: i64,
        what: &str,
    ) -> Result<Streams> {
        if ids.dim() != 1 {
            return Err(Error::value(format!(
                "the {what} data must be a 1-D tensor of ids, got shape {:?}",
                ids.size()
            )));
        }
        if batch_size < 1 || bptt < 1 {
            return Err(Error::value(format!(
                "batch_size and bptt must be >= 1, got {batch_size} and {bptt}"
            )));
        }
        let Some(streams) = batch_size.checked_mul(world).filter(|s| *s > 0) else {
            return Err(Error::value(format!(
                "batch_size {batch_size} times world size {world} is more streams than can be counted"
            )));
        };
        let len = ids.size()[0] / streams;
        if len < 2 {
            return Err(Error::value(format!(
                "the {what} data has {} tokens, too few for {streams} streams of at least 2 tokens",
                ids.size()[0]
            )));
        }
        let data = ids
            .f_narrow(0, 0, len * streams)?
            .f_view([streams, len])?
            .f_narrow(0, rank * batch_size, batch_size)?
            .f_tr()?
            .f_contiguous()?;
        Ok(Streams { data, bptt })
    }

    /// Windows per pass over the streams.
    pub fn windows(&self) -> i64 {
        let len = self.data.size()[0];
        (len - 1 + self.bptt - 1) / self.bptt
    }

    /// Window `i`: inputs and targets `[T, B]`, `T <= bptt`.
    pub fn window(&self, i: i64) -> Result<(Tensor, Tensor)> {
        let len = self.data.size()[0];
        let start = i * self.bptt;
        if i < 0 || start >= len - 1 {
            return Err(Error::Index(format!(
                "window {i} is past the end of the data"
            )));
        }
        let t = self.bptt.min(len - 1 - start);
        Ok((
            self.data.f_narrow(0, start, t)?,
            self.data.f_narrow(0, start + 1, t)?,
        ))
    }

    /// Steps of the streams that have a next token: the positions an epoch
    /// of variable-length windows walks.
    pub fn positions(&self) -> i64 {
        self.data.size()[0] - 1
    }

    /// The window of `len` steps (fewer at the end) from step `start`.
    pub fn span(&self, start: i64, len: i64) -> Result<(Tensor, Tensor)> {
        if start < 0 || start >= self.positions() || len < 1 {
            return Err(Error::Index(format!(
                "a window of {len} steps from step {start} is outside the data's {} steps",
                self.positions()
            )));
        }
        let t = len.min(self.positions() - start);
        Ok((
            self.data.f_narrow(0, start, t)?,
            self.data.f_narrow(0, start + 1, t)?,
        ))
    }

    pub fn batch_size(&self) -> i64 {
        self.data.size()[1]
    }

    /// Targets per pass (`(L - 1) * B`).
    pub fn targets(&self) -> i64 {
        (self.data.size()[0] - 1) * self.data.size()[1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batchify_like_word_language_model() {
        // 0..26 into 4 streams of 6 (2 trimmed), windows of 4 steps.
        let ids = Tensor::arange(26, (tch::Kind::Int64, tch::Device::Cpu));
        let s = Streams::new(&ids, 4, 4, 0, 1, "training").unwrap();
        assert_eq!(s.windows(), 2);
        let (x, y) = s.window(0).unwrap();
        assert_eq!(x.size(), [4, 4]);
        assert_eq!(Vec::<i64>::try_from(x.select(1, 1)).unwrap(), [6, 7, 8, 9]);
        assert_eq!(Vec::<i64>::try_from(y.select(1, 1)).unwrap(), [7, 8, 9, 10]);
        let (x, y) = s.window(1).unwrap();
        assert_eq!(Vec::<i64>::try_from(x.select(1, 3)).unwrap(), [22]);
        assert_eq!(Vec::<i64>::try_from(y.select(1, 3)).unwrap(), [23]);
        assert!(s.window(2).is_err());
        // Shard 1 of 2 with 2 streams each is streams 2 and 3 of 4.
        let shard = Streams::new(&ids, 2, 4, 1, 2, "training").unwrap();
        assert!(shard
            .window(0)
            .unwrap()
            .0
            .equal(&s.window(0).unwrap().0.narrow(1, 2, 2)));
    }

    #[test]
    fn streams_past_i64_are_refused_not_wrapped() {
        let ids = Tensor::arange(26, (tch::Kind::Int64, tch::Device::Cpu));
        // 4 * 2**62 wraps to 0 in release arithmetic: a division by zero.
        let e = Streams::new(&ids, 4, 4, 0, 1 << 62, "training")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("more streams than can be counted"), "{e}");
    }
}
