//! The head as the libtorch-op paths (generation, beam search, scoring) run
//! it, prepared once per call: each row's next-token scores `[N, V]`, whose
//! softmax is the model's distribution. For the linear head they are its
//! logits; for the adaptive head, its log-probabilities, which serve as
//! logits as they are: `softmax(log p) = p`, and `softmax(log p / T)` is the
//! tempered distribution `p^(1/T)` renormalised, as for logits.

use tch::Tensor;

use super::adaptive::AdaptiveHead;
use super::model::HeadWeights;
use crate::error::Result;
use crate::rnn::product::Product;

pub(crate) enum HeadOp<'a> {
    /// The head's product, after the projection's when there is one.
    Linear {
        projection: Option<Product>,
        head: Product,
    },
    Adaptive(&'a AdaptiveHead),
}

impl<'a> HeadOp<'a> {
    pub fn new(head: &HeadWeights<'a>) -> Result<Self> {
        Ok(match *head {
            HeadWeights::Linear {
                weight,
                bias,
                projection,
            } => HeadOp::Linear {
                projection: projection.map(|p| Product::new(p, None)).transpose()?,
                head: Product::new(weight, bias.map(Tensor::shallow_clone))?,
            },
            HeadWeights::Adaptive(a) => HeadOp::Adaptive(a),
        })
    }

    /// The scores `[N, V]` of the top layer's outputs `x` `[N, H]`.
    pub fn scores(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            HeadOp::Linear {
                projection: Some(p),
                head,
            } => head.apply(&p.apply(x)?),
            HeadOp::Linear { head, .. } => head.apply(x),
            HeadOp::Adaptive(a) => a.log_prob(x),
        }
    }
}
