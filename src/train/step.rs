//! One training step of the language model, top to bottom, and the evaluation
//! pass.
//!
//! The embedding, the dropouts, the head and the loss are ordinary libtorch ops
//! recorded by autograd; the recurrent stack runs its own hand-written
//! backward in between:
//!
//! ```text
//! ids ─embedding─dropout─▶ x ─(detach)─▶ stack ─▶ out ─(leaf)─dropout─head─▶ loss
//!      └─ autograd ─────┘   └ stack::backward ┘        └──── autograd ─────┘
//! ```
//!
//! 1. `loss` is back-propagated by autograd to the head and to the stack's
//!    output (a fresh leaf);
//! 2. `stack::backward` turns that gradient into the stack weights' gradients
//!    and the gradient `dx` of the stack's input;
//! 3. autograd carries `dx` from `x` back to the embedding (through the
//!    dropout), as the gradient of `sum(x * dx)`.
//!
//! Gradients are returned, never accumulated into `.grad`: the autograd passes
//! run on detached leaves that share the parameters' storage.
//!
//! The embedding's gradient is dense or sparse rows ([`EmbeddingGrad`]); the
//! trainer chooses.

use tch::{Kind, Tensor};

use super::regularize::{self, Regularization};
use super::{recurrent, LmParams};
use crate::error::{Error, Result};
use crate::lm::cross_entropy::{self, LinearCrossEntropy, PackedHead};
use crate::lm::HeadParams;
use crate::rnn::{stack, Mode, RnnConfig};

/// The form of the embedding table's gradient.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmbeddingGrad {
    /// A dense `[V, E]` tensor, as torch's `nn.Embedding` gives.
    Dense,
    /// A coalesced sparse COO tensor of the window's rows only, as
    /// `nn.Embedding(sparse=True)` gives: its norm, clipping and an SGD update
    /// then touch `T * B` rows, not `V` (at word level, zero-filling, norming,
    /// scaling and updating the whole table was about 6 ms of a ~100 ms
    /// step). Not with tied weights (the head's gradient is dense) nor
    /// embedding dropout (its rescaling is recorded on the whole table).
    Sparse,
}

/// The recurrent state carried from one window to the next (detached).
pub struct State {
    pub h: Tensor,
    pub c: Option<Tensor>,
}

impl State {
    pub fn zeros(cfg: &RnnConfig, batch: i64, like: &Tensor) -> Result<State> {
        let layers = cfg.num_layers * cfg.num_directions();
        let opts = (like.f_kind()?, like.device());
        Ok(State {
            h: Tensor::f_zeros([layers, batch, cfg.real_hidden_size()], opts)?,
            c: match cfg.mode {
                Mode::Lstm => Some(Tensor::f_zeros([layers, batch, cfg.hidden_size], opts)?),
                _ => None,
            },
        })
    }

    pub fn shallow_clone(&self) -> State {
        State {
            h: self.h.shallow_clone(),
            c: self.c.as_ref().map(Tensor::shallow_clone),
        }
    }
}

/// What one step computed.
pub struct StepOutput {
    /// Mean cross-entropy over the window's `T * B` targets (without the
    /// activation penalties, which only steer the gradients).
    pub loss: f64,
    /// One per distinct parameter, in [`LmParams::distinct`]'s order (frozen
    /// ones included; the trainer skips them).
    pub grads: Vec<Tensor>,
    /// The final state, to carry into the next window.
    pub state: State,
}

fn leaf(t: &Tensor) -> Result<Tensor> {
    Ok(t.f_detach()?.f_set_requires_grad(true)?)
}

/// Forward and backward over one window: `x`, `y` are `[T, B]` ids (targets
/// are the next tokens), `state` the state carried in, `reg` the
/// regularisation (see `regularize` for the order its masks are drawn in),
/// `embedding_grad` the form of the embedding's gradient.
pub fn train_step(
    model: &LmParams,
    x: &Tensor,
    y: &Tensor,
    state: &State,
    reg: &Regularization,
    embedding_grad: EmbeddingGrad,
) -> Result<StepOutput> {
    let sparse = embedding_grad == EmbeddingGrad::Sparse;
    if sparse && (model.config.tie_weights || reg.dropout_embedding > 0.0) {
        return Err(Error::Value(
            "a sparse embedding gradient needs untied weights and no embedding dropout".into(),
        ));
    }
    let p = model.config.dropout;
    let emb_w = leaf(model.embedding())?;
    // The head's tensors as leaves, in `state_dict` order; a tied weight is the embedding's.
    let head = model
        .head()
        .leaves(leaf, model.config.tie_weights.then_some(&emb_w))?;

    // Embedding (whole rows dropped) and its dropout, recorded by autograd;
    // a tied head reads the table undropped, as AWD-LSTM's decoder does.
    let table = regularize::embedding_rows(&emb_w, reg.dropout_embedding)?;
    let emb = Tensor::f_embedding(&table, x, -1, false, sparse)?;
    let emb = regularize::locked_or_plain(&emb, reg.dropout_input, p)?;

    // The recurrent stack, with its own tape.
    let run = recurrent::forward(&model.rnn, model.stack(), &emb.f_detach()?, state, reg)?;

    // Dropout and penalties recorded by autograd from a fresh leaf; the head
    // and its loss fused (linear) or recorded too (adaptive).
    let out_leaf = leaf(&run.output)?;
    let dropped = regularize::locked_or_plain(&out_leaf, reg.dropout_output, p)?;
    let penalty = regularize::activation_penalty(reg, &out_leaf, &dropped)?;
    // 1. the head's loss and gradients with nothing recorded (`head_grads`),
    // then autograd from the head's rows back through the projection (if
    // any), the dropout and the penalties to the stack's output.
    let rows = head.weights().rows(&dropped)?;
    let (loss, d_rows, g_own) = head_grads(&head, &rows.f_detach()?, &y.f_reshape([-1])?)?;
    let mut back = rows.f_mul(&d_rows)?.f_sum(None::<Kind>)?;
    if let Some(penalty) = penalty {
        back = back.f_add(&penalty)?;
    }
    let projection = match &head {
        HeadParams::Linear { projection, .. } => projection.as_ref(),
        HeadParams::Adaptive(_) => None,
    };
    let inputs: Vec<&Tensor> = std::iter::once(&out_leaf).chain(projection).collect();
    let mut g_back = Tensor::f_run_backward(&[&back], &inputs, false, false)?.into_iter();
    let d_out = g_back
        .next()
        .ok_or_else(|| Error::shape("autograd returned no gradient for the stack's output"))?;
    // In `state_dict` order: the projection's, then the head's own.
    let mut g_head: Vec<Tensor> = g_back.chain(g_own).collect();
    let loss_value = loss.f_double_value(&[])?;

    // 2. the stack's hand-written backward; nothing flows back into the carried state.
    let (h_n, c_n) = (
        run.h_n.shallow_clone(),
        run.c_n.as_ref().map(Tensor::shallow_clone),
    );
    let (dx, stack_grads) = run.backward(&d_out)?;

    // 3. autograd again: from the embedding output back to the embedding matrix.
    let mut g_emb = Tensor::f_run_backward(
        &[&emb.f_mul(&dx)?.f_sum(None::<Kind>)?],
        &[&emb_w],
        false,
        false,
    )?
    .pop()
    .unwrap_or_default();
    if sparse {
        // Repeated ids summed, so a norm of the values is the gradient's.
        g_emb = g_emb.f_coalesce()?;
    }

    if model.config.tie_weights {
        // The tied head weight's gradient (the head's first after any
        // projection) is the embedding's too.
        let at = usize::from(model.config.projected());
        if at < g_head.len() {
            g_emb = g_emb.f_add(&g_head.remove(at))?;
        }
    }
    let mut grads = Vec::with_capacity(1 + stack_grads.len() + g_head.len());
    grads.push(g_emb);
    grads.extend(stack_grads);
    grads.extend(g_head);
    Ok(StepOutput {
        loss: loss_value,
        grads,
        state: State { h: h_n, c: c_n },
    })
}

/// The mean cross-entropy of the head over `rows` `[N, W]` (the head's
/// input, after any projection) against `y` `[N]`, and its gradients: that
/// of `rows` and the head's own tensors' (`state_dict` order, the projection
/// left out), computed by the fused heads without autograd.
fn head_grads(
    head: &HeadParams,
    rows: &Tensor,
    y: &Tensor,
) -> Result<(Tensor, Tensor, Vec<Tensor>)> {
    match head {
        HeadParams::Linear { weight, bias, .. } => {
            let (loss, g) = LinearCrossEntropy::new(rows, weight, Some(bias), y)
                .loss_and_grads(cross_entropy::Reduction::Mean, cross_entropy::Needs::ALL)?;
            let missing = || Error::shape("the fused head returned no gradient");
            let d_rows = g.input.ok_or_else(missing)?;
            let own = vec![g.weight.ok_or_else(missing)?, g.bias.ok_or_else(missing)?];
            Ok((loss, d_rows, own))
        }
        HeadParams::Adaptive(a) => a.loss_and_grads(rows, y),
    }
}

/// The summed cross-entropy of one window in eval mode (no dropout, no
/// gradients), and the final state; `packed` is the head's
/// [`HeadWeights::packed`](crate::lm::HeadWeights::packed) for the whole
/// evaluation.
pub fn eval_step(
    model: &LmParams,
    x: &Tensor,
    y: &Tensor,
    state: &State,
    packed: Option<&PackedHead>,
) -> Result<(f64, State)> {
    let _guard = tch::no_grad_guard();
    let emb = Tensor::f_embedding(model.embedding(), x, -1, false, false)?;
    let out = stack::forward(
        &model.rnn,
        &emb,
        None,
        Some(&state.h),
        state.c.as_ref(),
        model.stack(),
        false,
        false,
    )?;
    let rows = model.head().weights().rows(&out.output)?;
    let targets = y.f_reshape([-1])?;
    let loss = match model.head() {
        // The head a chunk of rows at a time (lm::cross_entropy): no `[T * B, V]` logits.
        HeadParams::Linear { weight, bias, .. } => LinearCrossEntropy {
            packed,
            ..LinearCrossEntropy::new(&rows, weight, Some(bias), &targets)
        }
        .loss(cross_entropy::Reduction::Sum)?
        .f_double_value(&[])?,
        HeadParams::Adaptive(a) => a.loss(&rows, &targets)?.f_double_value(&[])? * y.numel() as f64,
    };
    Ok((
        loss,
        State {
            h: out.h_n,
            c: out.c_n,
        },
    ))
}
