//! Fused float32 CPU kernels for the recurrence: one timestep of a layer (the
//! product with the recurrent weights and the gates after it), used by
//! generation and beam search (one token of the whole stack at small batch
//! sizes, `lm::fused`) and by the
//! stacks' fused forward and backward passes for training and inference
//! (`rnn::fused`, forward and backward), wherever each library call's fixed
//! cost and a second pass over the gates would cost more than the arithmetic.
//!
//! A step's work is a product per layer whose weights (a few MB) stay in the
//! cores' caches between steps; the kernels stream them once per step, apply
//! the gate functions to the results while they are still in registers, and
//! split the output columns between a small team of threads that meet at a
//! spin barrier between phases.
//!
//! * `lanes`  – sixteen-lane float vectors and exp, sigmoid, tanh on them.
//! * `packed` – the weights rearranged into column panels.
//! * `block`  – the product of a range of panels and the pointwise step after it.
//! * `team`   – the spin barrier, the buffers the threads share, and running a team.
//! * `omp`    – libtorch's OpenMP threads, borrowed to run a team.
//! * `gemm`   – `C (+)= A B` on AVX-512 for the fused head's backward products.

pub mod block;
pub mod gemm;
pub mod lanes;
mod omp;
pub mod packed;
pub mod team;
