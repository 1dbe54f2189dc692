//! Beam rows on libtorch ops, for every model the fused kernels do not run
//! (float64, CUDA, projections, an adaptive head): the stack stepped by
//! [`TokenStepper`], the head's scores ([`HeadOp`]), a float64 log-softmax
//! and one `topk` over beams x vocabulary per step, and the state rows
//! reordered by `index_select`.

// Values from Python reach this module: no index or slice may panic.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use tch::{Device, Kind, Tensor};

use super::{BeamRows, Candidate};
use crate::error::Result;
use crate::lm::head::HeadOp;
use crate::lm::{prime, LmWeights};
use crate::rnn::token::{TokenState, TokenStepper};
use crate::rnn::RnnConfig;

pub(super) struct OpRows<'a> {
    embedding: &'a Tensor,
    stepper: TokenStepper,
    head: HeadOp<'a>,
    state: TokenState,
    /// The running rows' scores (logits, or the adaptive head's
    /// log-probabilities) `[rows, vocab]`.
    logits: Tensor,
}

impl<'a> OpRows<'a> {
    /// One row: the state after `prompt` (checked by the caller).
    pub fn new(cfg: &RnnConfig, w: &LmWeights<'a>, prompt: &Tensor) -> Result<Self> {
        let prompt = prompt.f_to_device(w.embedding.device())?;
        let (last, h_n, c_n) = prime(cfg, w, &prompt)?;
        let head = HeadOp::new(&w.head)?;
        let logits = head.scores(&last)?;
        Ok(OpRows {
            embedding: w.embedding,
            stepper: TokenStepper::new(cfg, w.stack)?,
            head,
            state: TokenState {
                h: h_n.f_unbind(0)?,
                c: match &c_n {
                    Some(c) => c.f_unbind(0)?,
                    None => Vec::new(),
                },
            },
            logits,
        })
    }
}

impl BeamRows for OpRows<'_> {
    fn best(&mut self, sums: &[f64], want: usize) -> Result<Vec<Candidate>> {
        let logp = self
            .logits
            .f_to_kind(Kind::Double)?
            .f_log_softmax(1, Kind::Double)?
            .f_to_device(Device::Cpu)?;
        let total = logp
            .f_add(&Tensor::from_slice(sums).f_unsqueeze(1)?)?
            .f_reshape([-1])?;
        let vocab = logp.size2()?.1;
        let k = i64::try_from(want)
            .unwrap_or(i64::MAX)
            .min(total.numel() as i64);
        let (values, flat) = total.f_topk(k, 0, true, true)?;
        let values = Vec::<f64>::try_from(values)?;
        let flat = Vec::<i64>::try_from(flat)?;
        Ok(values
            .into_iter()
            .zip(flat)
            .map(|(total, f)| Candidate {
                total,
                row: usize::try_from(f / vocab).unwrap_or(usize::MAX),
                token: f % vocab,
            })
            .collect())
    }

    fn advance(&mut self, parents: &[usize], tokens: &[i64]) -> Result<()> {
        let device = self.embedding.device();
        let parents: Vec<i64> = parents.iter().map(|&p| p as i64).collect();
        let idx = Tensor::from_slice(&parents).f_to_device(device)?;
        for t in self.state.h.iter_mut().chain(self.state.c.iter_mut()) {
            *t = t.f_index_select(0, &idx)?;
        }
        let x = self
            .embedding
            .f_index_select(0, &Tensor::from_slice(tokens).f_to_device(device)?)?;
        let top = self.stepper.step(&x, &mut self.state)?;
        self.logits = self.head.scores(&top)?;
        Ok(())
    }
}
