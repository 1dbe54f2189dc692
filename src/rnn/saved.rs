//! What a cell's forward keeps for its backward, the same whether the
//! composed or the fused engine computed it: each engine's forward fills
//! these, and the backward of the engine that ran reads them (the tape says
//! which, `engine::DirTape`). oneDNN keeps its own (`onednn::Saved`).

use tch::Tensor;

use super::steps::Steps;

/// One layer-direction's activations, by cell.
pub enum Activations {
    Lstm(Lstm),
    Gru(Gru),
    Simple(Simple),
}

pub struct Lstm {
    /// The direction's input `[N, I]`.
    pub x: Tensor,
    /// Activated gates `[N, 4H]`, in torch's order i, f, g, o.
    pub gates: Tensor,
    /// Cell states after each step `[N, H]`.
    pub c: Tensor,
    /// `tanh(c)` `[N, H]`.
    pub tc: Tensor,
    /// Unprojected hidden states `[N, H]` when projecting.
    pub hf: Option<Tensor>,
    /// The direction's output `[N, H_out]`.
    pub out: Tensor,
    pub h0: Tensor,
    pub c0: Tensor,
    pub steps: Steps,
    pub reverse: bool,
}

pub struct Gru {
    pub x: Tensor,
    /// Activated r, z, n `[N, 3H]`.
    pub gates: Tensor,
    /// `W_hn h + b_hn` of each step `[N, H]`.
    pub hn: Tensor,
    pub out: Tensor,
    pub h0: Tensor,
    pub steps: Steps,
    pub reverse: bool,
}

/// The Elman RNN's activation's derivative depends only on its output, so
/// the input, the outputs and where they began are all its backward needs.
pub struct Simple {
    pub x: Tensor,
    pub out: Tensor,
    pub h0: Tensor,
    pub steps: Steps,
    pub reverse: bool,
    pub relu: bool,
}

impl Activations {
    pub fn shallow_clone(&self) -> Activations {
        match self {
            Activations::Lstm(s) => Activations::Lstm(Lstm {
                x: s.x.shallow_clone(),
                gates: s.gates.shallow_clone(),
                c: s.c.shallow_clone(),
                tc: s.tc.shallow_clone(),
                hf: s.hf.as_ref().map(Tensor::shallow_clone),
                out: s.out.shallow_clone(),
                h0: s.h0.shallow_clone(),
                c0: s.c0.shallow_clone(),
                steps: s.steps.clone(),
                reverse: s.reverse,
            }),
            Activations::Gru(s) => Activations::Gru(Gru {
                x: s.x.shallow_clone(),
                gates: s.gates.shallow_clone(),
                hn: s.hn.shallow_clone(),
                out: s.out.shallow_clone(),
                h0: s.h0.shallow_clone(),
                steps: s.steps.clone(),
                reverse: s.reverse,
            }),
            Activations::Simple(s) => Activations::Simple(Simple {
                x: s.x.shallow_clone(),
                out: s.out.shallow_clone(),
                h0: s.h0.shallow_clone(),
                steps: s.steps.clone(),
                reverse: s.reverse,
                relu: s.relu,
            }),
        }
    }
}
