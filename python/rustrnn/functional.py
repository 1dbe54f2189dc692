"""Functions in the manner of ``torch.nn.functional``, computed by rustrnn's core."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from . import _rustrnn

__all__ = ["dropout", "linear_cross_entropy"]


def _check_probability(p: float) -> None:
    """The Rust rule for ``p`` (torch's ValueError). Dynamo cannot trace a call into the
    extension; marked so, it runs the check while tracing, ``p`` being a constant there."""
    _rustrnn.check_dropout(p)


# What torch.compiler.assume_constant_result does, without calling it: it imports
# torch._dynamo first (sympy and all), which made `import rustrnn` take a second, and a
# Ctrl-C during that import could leave an interpreter that never exits.
_check_probability._dynamo_marked_constant = True  # type: ignore[attr-defined]


def dropout(input: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    """Zeroes each element with probability ``p`` and scales the rest by ``1 / (1 - p)``,
    as :func:`torch.nn.functional.dropout` does, differentiably.

    The mask comes from a vectorized counter-based generator (on the CPU, for float32
    and float64; elsewhere from torch's ``bernoulli_``) whose seed is one draw from
    torch's default generator, so ``torch.manual_seed`` makes it repeat. The masks
    differ from ``torch.nn.functional.dropout``'s; this is the dropout that
    :class:`rustrnn.LanguageModel`, the stacks and :func:`rustrnn.train` use.

    Args:
        input: any floating-point tensor.
        p: probability of an element being zeroed, in [0, 1].
        training: apply dropout only if True.

    Raises:
        ValueError: ``p`` outside [0, 1].
    """
    _check_probability(p)  # also where nothing is dropped, as torch checks it
    if not training or p == 0.0:
        return input
    if torch.compiler.is_compiling():  # dynamo and export trace a custom op, not Rust
        from .nn import _ops

        return _ops.dropout(input, p)
    return input * _rustrnn.dropout_mask(input, p)


def linear_cross_entropy(
    input: Tensor,
    weight: Tensor,
    target: Tensor,
    bias: Tensor | None = None,
    reduction: str = "mean",
    ignore_index: int = -100,
) -> Tensor:
    """``F.cross_entropy(F.linear(input, weight, bias), target)`` computed a chunk of rows
    at a time in Rust, forward and backward, never holding the ``(N, V)`` logits: the
    head of a language model and its loss in ``chunk x V`` memory instead of ``N x V``.

    Differentiable in ``input``, ``weight`` and ``bias`` (once: no double backward). For
    ``"mean"`` and ``"sum"`` the gradients are computed in the forward pass, in the same
    pass over the chunks, whenever one of them requires grad; ``"none"`` runs the chunks
    again in the backward pass (its rows' weights are known only then).

    Args:
        input: ``(N, H)`` floating point (float32 and float64 on the CPU are the tuned
            case; other dtypes and devices run the same libtorch ops).
        weight: ``(V, H)``, as ``nn.Linear(H, V).weight``; input's dtype and device.
        target: ``(N,)`` int64 (or uint8) class ids in ``[0, V)``, or ``ignore_index``.
        bias: ``(V,)`` or None.
        reduction: ``"mean"`` (over the rows not ignored; nan when there are none, as
            torch), ``"sum"`` or ``"none"`` (one loss per row, 0 where ignored).
        ignore_index: a target that contributes neither loss nor gradient.

    Returns:
        The loss: a scalar, or ``(N,)`` for ``"none"``; input's dtype.

    Raises:
        RuntimeError: input or weight not 2-D or not floating point, their dtypes,
            devices or ``H`` differing, bias not ``(V,)``, target not 1-D int64/uint8.
        ValueError: target's length not ``N`` (torch's "Expected input batch_size ...");
            an unknown reduction.
        IndexError: a target outside ``[0, V)`` other than ``ignore_index``
            (torch's "Target 7 is out of bounds.").
    """
    tensors = (input, weight, bias)
    if torch.is_grad_enabled() and any(isinstance(t, Tensor) and t.requires_grad for t in tensors):
        return _LinearCrossEntropy.apply(input, weight, target, bias, reduction, ignore_index)
    return _rustrnn.linear_cross_entropy(input, weight, target, bias, reduction, ignore_index)[0]


class _LinearCrossEntropy(torch.autograd.Function):
    """The fused head as one autograd node; the arithmetic is ``lm::head`` in Rust."""

    @staticmethod
    def forward(ctx, input, weight, target, bias, reduction, ignore_index):
        wants = ctx.needs_input_grad
        needs = (wants[0], wants[1], wants[3] and bias is not None)
        ctx.none = reduction == "none"
        if ctx.none:
            ctx.save_for_backward(input, weight, target, bias)
            ctx.ignore_index, ctx.needs = ignore_index, needs
            return _rustrnn.linear_cross_entropy(
                input, weight, target, bias, reduction, ignore_index
            )[0]
        loss, *grads = _rustrnn.linear_cross_entropy(
            input, weight, target, bias, reduction, ignore_index, needs
        )
        ctx.save_for_backward(*grads)
        return loss

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        if ctx.none:
            input, weight, target, bias = ctx.saved_tensors
            d_x, d_w, d_b = _rustrnn.linear_cross_entropy_backward(
                input, weight, target, bias, grad, ctx.ignore_index, ctx.needs
            )
        else:  # the loss's gradients, computed in the forward, scaled by d(out)/d(loss)
            d_x, d_w, d_b = (None if g is None else g * grad for g in ctx.saved_tensors)
        return d_x, d_w, None, d_b, None, None
