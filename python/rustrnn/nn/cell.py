"""Single-step recurrent cells; one step runs in Rust and torch's autograd records it."""

from __future__ import annotations

import math
import operator
from typing import Optional, Tuple

import torch
from torch import Tensor, nn

from .. import _rustrnn
from .rnn import nonlinearity_mode


def _size_type_errors(input_size, hidden_size) -> None:
    """torch's cells multiply ``hidden_size`` by their gate count and hand both sizes to
    torch.empty: its TypeErrors (a float, a str, None, an int past int64) come from those
    calls, made here on the meta device before Rust reads the sizes as ints. What they
    refuse of a value (a negative size) is the Rust rules', named with the real shape."""
    try:
        torch.empty((1 * hidden_size, input_size), device="meta")
    except RuntimeError:
        pass


class _CellBase(nn.Module):
    """Shared machinery of the cells: torch.nn.RNNCellBase's parameters.

    Like torch's cells these take their sizes and ``bias`` as given (``bias`` is read as a
    truth value, a size of 0 is allowed): a size that torch.empty refuses fails with
    torch's own error class and words. The names and shapes come from Rust
    (``cell_param_specs``), as the stacks' come from their ``RnnSpec``.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool,
        mode: str,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        _size_type_errors(input_size, hidden_size)
        biased = bool(bias)
        specs = _rustrnn.cell_param_specs(
            mode, operator.index(input_size), operator.index(hidden_size), biased
        )
        factory = {"device": device, "dtype": dtype}
        for name, shape in specs:
            setattr(self, name, nn.Parameter(torch.empty(shape, **factory)))
        if not biased:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Draws every parameter from U(-1/sqrt(hidden_size), 1/sqrt(hidden_size)), like torch."""
        stdv = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0
        for weight in self.parameters():
            nn.init.uniform_(weight, -stdv, stdv)

    def _weights(self) -> list:
        if self.bias:
            return [self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh]
        return [self.weight_ih, self.weight_hh]

    def to_torch(self) -> nn.RNNCellBase:
        """The torch.nn cell of this configuration (``nn.RNNCell``, ``nn.LSTMCell`` or
        ``nn.GRUCell``), on this device and dtype, with a copy of the weights."""
        from ..export import cell_to_torch

        return cell_to_torch(self)

    @classmethod
    def from_torch(cls, cell: nn.RNNCellBase) -> "_CellBase":
        """The rustrnn cell of ``cell``'s configuration, device and dtype, with a copy of its
        weights: ``rustrnn.GRUCell.from_torch(torch.nn.GRUCell(...))``.

        Raises:
            TypeError: ``cell`` is not the torch.nn class this class stands for.
        """
        from ..export import cell_from_torch

        return cell_from_torch(cls, cell)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        return s


class RNNCell(_CellBase):
    r"""An Elman cell: :math:`h' = \tanh(W_{ih} x + b_{ih} + W_{hh} h + b_{hh})`.

    Args:
        input_size: features of the input.
        hidden_size: features of the hidden state.
        bias: whether to use ``bias_ih`` and ``bias_hh``. Default: True.
        nonlinearity: ``'tanh'`` or ``'relu'``. Default: ``'tanh'``.

    Inputs: ``input (N, H_in) or (H_in)``, ``hidden (N, H_out) or (H_out)`` (zeros if omitted).
    Output: ``h' (N, H_out) or (H_out)``.
    """

    _torch_class = nn.RNNCell

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        nonlinearity: str = "tanh",
        device=None,
        dtype=None,
    ) -> None:
        # Both nonlinearities have one layout; torch reads the nonlinearity at each step
        # (it may be set after construction), so an unknown one is an error of forward.
        super().__init__(input_size, hidden_size, bias, "RNN_TANH", device, dtype)
        self.nonlinearity = nonlinearity

    def forward(self, input: Tensor, hx: Optional[Tensor] = None) -> Tensor:
        """One step: ``input (N, H_in) or (H_in)``, ``hx (N, H) or (H)`` -> ``h'``."""
        mode = nonlinearity_mode(self.nonlinearity)
        if mode is None:
            raise RuntimeError(f"Unknown nonlinearity: {self.nonlinearity}")
        h, _ = _rustrnn.cell_forward(mode, input, hx, None, self._weights())
        return h

    def extra_repr(self) -> str:
        s = super().extra_repr()
        if self.nonlinearity != "tanh":
            s += f", nonlinearity={self.nonlinearity}"
        return s


class LSTMCell(_CellBase):
    r"""A long short-term memory cell, gates in torch's order i, f, g, o.

    Args:
        input_size, hidden_size, bias: as for :class:`RNNCell`.

    Inputs: ``input (N, H_in) or (H_in)``, ``(h_0, c_0)`` each ``(N, H) or (H)``
    (zeros if omitted).
    Outputs: ``(h_1, c_1)``, each ``(N, H) or (H)``.
    """

    _torch_class = nn.LSTMCell

    def __init__(
        self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None
    ) -> None:
        super().__init__(input_size, hidden_size, bias, "LSTM", device, dtype)

    def forward(
        self, input: Tensor, hx: Optional[Tuple[Tensor, Tensor]] = None
    ) -> Tuple[Tensor, Tensor]:
        """One step: ``input (N, H_in) or (H_in)``, ``(h, c)`` each ``(N, H) or (H)`` ->
        ``(h', c')``."""
        h0, c0 = (None, None) if hx is None else hx
        h, c = _rustrnn.cell_forward("LSTM", input, h0, c0, self._weights())
        return h, c


class GRUCell(_CellBase):
    r"""A gated recurrent unit cell, gates in torch's order r, z, n.

    Args:
        input_size, hidden_size, bias: as for :class:`RNNCell`.

    Inputs: ``input (N, H_in) or (H_in)``, ``hidden (N, H) or (H)`` (zeros if omitted).
    Output: ``h' (N, H) or (H)``.
    """

    _torch_class = nn.GRUCell

    def __init__(
        self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None
    ) -> None:
        super().__init__(input_size, hidden_size, bias, "GRU", device, dtype)

    def forward(self, input: Tensor, hx: Optional[Tensor] = None) -> Tensor:
        """One step: ``input (N, H_in) or (H_in)``, ``hx (N, H) or (H)`` -> ``h'``."""
        h, _ = _rustrnn.cell_forward("GRU", input, hx, None, self._weights())
        return h
