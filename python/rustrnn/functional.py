"""Functions in the manner of ``torch.nn.functional``, computed by rustrnn's core."""

from __future__ import annotations

import torch
from torch import Tensor

from . import _rustrnn


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
