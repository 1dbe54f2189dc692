"""The autograd bridge of the stacks: forward and backward both run in Rust.

The Rust forward keeps its activations on a ``Tape``; the Rust backward turns
the output gradients into input, state and weight gradients with one large
matrix product per weight instead of one small product per timestep.
"""

import torch
from torch.autograd.function import once_differentiable


class StackFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, spec, train, batch_sizes, input, h0, c0, *weights):
        output, h_n, c_n, tape = spec.forward(
            input, h0, c0, list(weights), train, True, batch_sizes
        )
        ctx.tape = tape
        ctx.has_cell = c_n is not None
        # Saved only so torch's version counters catch a weight or input
        # modified in place between forward and backward.
        ctx.save_for_backward(input, *weights)
        if c_n is None:
            return output, h_n
        return output, h_n, c_n

    @staticmethod
    @once_differentiable
    def backward(ctx, d_output, d_hn, d_cn=None):
        ctx.saved_tensors  # noqa: B018 - raises if a saved tensor was modified in place
        need = ctx.needs_input_grad
        d_input, d_hx, d_cx, d_weights = ctx.tape.backward(d_output, d_hn, d_cn, need[3])
        grads = [None, None, None, d_input, d_hx, d_cx, *d_weights]
        return tuple(g if n else None for g, n in zip(grads, need))
