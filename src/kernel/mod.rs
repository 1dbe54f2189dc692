//! Fused CPU kernels for generation: one token of a float32 stack at small
//! batch sizes, where each library call's fixed cost and a second pass over
//! the gates would cost more than the arithmetic.
//!
//! A token's work is a matrix-vector product per layer whose weights (a few
//! MB) stay in the cores' caches between tokens; the kernels stream them once
//! per token, apply the gate functions to the results while they are still in
//! registers, and split the output columns between a small team of threads
//! that meet at a spin barrier between layers.
//!
//! * `lanes`  – sixteen-lane float vectors and exp, sigmoid, tanh on them.
//! * `packed` – the weights rearranged into column panels.
//! * `block`  – the product of a range of panels and the pointwise step after it.
//! * `team`   – the spin barrier, the buffers the threads share, and running a team.
//! * `omp`    – libtorch's OpenMP threads, borrowed to run a team.

pub mod block;
pub mod lanes;
mod omp;
pub mod packed;
pub mod team;
