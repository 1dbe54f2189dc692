"""Multi-layer recurrent networks with torch.nn's contract, computed in Rust."""

from __future__ import annotations

import math
import numbers
import operator
import warnings
from typing import Optional, Tuple, Union

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from .. import _rustrnn
from . import _ops
from ._function import StackFunction

_State = Union[Tensor, Tuple[Tensor, Tensor]]


# torch.nn.RNNBase's type checks and coercions, with its exception classes and texts:
# what must happen before the values cross into Rust as bool, int and float. The value
# rules (sizes greater than zero, the dropout range, proj_size's bounds) are RnnSpec's.


def _require_bool(name: str, value) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name} should be of type bool, got: {type(value).__name__}")


def _require_int(name: str, value) -> int:
    if not isinstance(value, int):
        raise TypeError(f"{name} should be of type int, got: {type(value).__name__}")
    return int(value)


def _layer_count(num_layers) -> int:
    """torch compares num_layers with 0, then loops over ``range(num_layers)``."""
    if isinstance(num_layers, int):
        return int(num_layers)
    if num_layers <= 0:  # torch's comparison: its TypeError for a str or None
        return math.floor(num_layers)  # RnnSpec rejects it with torch's ValueError
    return operator.index(num_layers)  # range()'s TypeError for a float


def _projection_size(proj_size, hidden_size: int) -> int:
    """torch compares proj_size with 0 and hidden_size, then sizes ``weight_hh`` with it."""
    if isinstance(proj_size, int):
        return int(proj_size)
    if proj_size < 0 or proj_size >= hidden_size:  # its TypeError for a str or None
        return math.floor(proj_size)  # RnnSpec rejects it with torch's ValueError
    if proj_size == 0:
        return 0
    torch.empty((1, proj_size), device="meta")  # torch.empty's TypeError for a float
    return operator.index(proj_size)


def nonlinearity_mode(nonlinearity) -> Optional[str]:
    """The RNNBase ``mode`` of torch.nn.RNN's and RNNCell's ``nonlinearity`` (``'tanh'`` or
    ``'relu'``, exactly), or None for any other value: each caller raises torch's error."""
    if nonlinearity == "tanh":
        return "RNN_TANH"
    if nonlinearity == "relu":
        return "RNN_RELU"
    return None


def _probability(dropout) -> float:
    """torch converts dropout with float(), then requires a real number that is no bool."""
    p = float(dropout)  # float()'s TypeError for None
    if not isinstance(dropout, numbers.Number) or isinstance(dropout, bool):
        return math.nan  # not a probability: RnnSpec's range rule rejects it as torch does
    return p


class RNNBase(nn.Module):
    """Shared machinery of :class:`RNN`, :class:`LSTM` and :class:`GRU`.

    Args:
        mode: ``'RNN_TANH'``, ``'RNN_RELU'``, ``'LSTM'`` or ``'GRU'``.
        input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
        proj_size: as for :class:`LSTM`.
        device, dtype: where and how the parameters are created.

    Parameters are registered under torch.nn's names (``weight_ih_l0``,
    ``bias_hh_l1_reverse``, ...) and shapes, so ``state_dict()`` loads into the
    torch.nn module of the same configuration and back, strictly.
    """

    def __init__(
        self,
        mode: str,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        p = _probability(dropout)
        _require_bool("bias", bias)
        _require_bool("batch_first", batch_first)
        self._spec = _rustrnn.RnnSpec(
            mode,
            _require_int("input_size", input_size),
            _require_int("hidden_size", hidden_size),
            _layer_count(num_layers),
            bias,
            batch_first,
            p,
            bool(bidirectional),  # torch takes any truthy value here
            _projection_size(proj_size, hidden_size),
        )
        if dropout > 0 and num_layers == 1:
            warnings.warn(
                "dropout option adds dropout after all but last recurrent layer, so non-zero "
                f"dropout expects num_layers greater than 1, but got dropout={dropout} and "
                f"num_layers={num_layers}",
                stacklevel=2,
            )
        self.mode = mode
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self.proj_size = proj_size
        self._flat_weights_names = []
        factory = {"device": device, "dtype": dtype}
        probe = torch.empty(0, **factory)  # the device and dtype the parameters will have
        if probe.device.type == "cpu":  # elsewhere the device's allocator refuses what it can't
            self._spec.check_host_allocation(probe.element_size())
        for name, shape in self._spec.param_specs():
            setattr(self, name, nn.Parameter(torch.empty(shape, **factory)))
            self._flat_weights_names.append(name)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Draws every parameter from U(-1/sqrt(hidden_size), 1/sqrt(hidden_size)), like torch."""
        stdv = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            nn.init.uniform_(weight, -stdv, stdv)

    @property
    def _flat_weights(self) -> list:
        return [getattr(self, name) for name in self._flat_weights_names]

    @property
    def all_weights(self) -> list:
        """The parameters grouped per layer and direction, as torch.nn.RNNBase.all_weights."""
        per = len(self._flat_weights_names) // (self.num_layers * (2 if self.bidirectional else 1))
        flat = self._flat_weights
        return [flat[i : i + per] for i in range(0, len(flat), per)]

    def flatten_parameters(self) -> None:
        """Compacts the parameters into one cuDNN weight buffer on CUDA, as torch.nn does.

        Each Parameter stays the same object and becomes a view of the buffer, so that
        cuDNN reads the weights in place at every call. Called by ``.to()``, ``.cuda()``
        and the other ``_apply`` methods. Elsewhere (the CPU, parameters of mixed dtypes
        or devices, aliased parameters, or a dtype cuDNN does not take) it does nothing,
        as torch.nn's: the stacks read every weight from its own Parameter at each call
        then, and on CUDA copy them into a buffer for the call.
        """
        weights = self._flat_weights
        if len(weights) != len(self._flat_weights_names) or not all(
            isinstance(w, Tensor) for w in weights
        ):
            return None
        first = weights[0]
        if not all(
            w.dtype == first.dtype
            and w.is_cuda
            and w.device == first.device
            and torch.backends.cudnn.is_acceptable(w)
            for w in weights
        ):
            return None
        if len({w.data_ptr() for w in weights}) != len(weights):
            return None  # aliased weights keep the copying path, as torch.nn's
        from torch.backends.cudnn import rnn as cudnn_rnn

        with torch.cuda.device_of(first), torch.no_grad():
            if torch._use_cudnn_rnn_flatten_weight():
                per_direction = (4 if self.bias else 2) + (1 if self.proj_size > 0 else 0)
                torch._cudnn_rnn_flatten_weight(
                    weights,
                    per_direction,
                    self.input_size,
                    cudnn_rnn.get_cudnn_mode(self.mode),
                    self.hidden_size,
                    self.proj_size,
                    self.num_layers,
                    self.batch_first,
                    bool(self.bidirectional),
                )
        return None

    def _apply(self, fn, recurse=True):
        result = super()._apply(fn, recurse)
        self.flatten_parameters()
        return result

    def to_torch(self) -> nn.RNNBase:
        """The torch.nn stack of this configuration (``nn.RNN``, ``nn.LSTM`` or ``nn.GRU``),
        on this device and dtype, in this train/eval mode, with a copy of the weights.

        Returns:
            A new ``torch.nn.RNN``, ``LSTM`` or ``GRU``; it computes what this module does.
        """
        from ..export import stack_to_torch

        return stack_to_torch(self)

    @classmethod
    def from_torch(cls, module: nn.RNNBase) -> "RNNBase":
        """The rustrnn stack of ``module``'s configuration, device, dtype and mode, with a
        copy of its weights: ``rustrnn.LSTM.from_torch(torch.nn.LSTM(...))``.

        Args:
            module: a ``torch.nn.RNN`` for :class:`RNN`, ``torch.nn.LSTM`` for
                :class:`LSTM`, ``torch.nn.GRU`` for :class:`GRU`.

        Raises:
            TypeError: ``module`` is not the torch.nn class this class stands for.
        """
        from ..export import stack_from_torch

        return stack_from_torch(cls, module)

    def extra_repr(self) -> str:
        return self._spec.extra_repr()

    def _split_state(self, hx) -> Tuple[Optional[Tensor], Optional[Tensor]]:
        return hx, None

    def _pack_state(self, h_n: Tensor, c_n: Optional[Tensor]) -> _State:
        return h_n

    def forward(self, input: Union[Tensor, PackedSequence], hx: Optional[_State] = None):
        """Runs the stack over a sequence (forward and backward passes in Rust).

        Args:
            input: ``(L, H_in)`` unbatched, ``(L, N, H_in)``, or ``(N, L, H_in)`` with
                batch_first; or a :class:`~torch.nn.utils.rnn.PackedSequence` (from
                ``pack_padded_sequence`` or ``pack_sequence``), whose timesteps compute
                only the sequences still running.
            hx: initial state, zeros if None: ``h_0`` of shape ``(D * num_layers, N, H_out)``
                (``(D * num_layers, H_out)`` unbatched), or for LSTM the tuple
                ``(h_0, c_0)`` with ``c_0`` of shape ``(D * num_layers, N, hidden_size)``.
                For packed input, in the caller's batch order (as torch.nn).

        Returns:
            ``(output, h_n)``, or ``(output, (h_n, c_n))`` for LSTM; output is
            ``(L, N, D * H_out)`` laid out like the input, or a PackedSequence with the
            input's ``batch_sizes`` and indices. ``h_n`` holds each sequence's state at
            its own last step, in the caller's batch order.
        """
        h0, c0 = self._split_state(hx)
        for name, value in (("h_0", h0), ("c_0", c0)):
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
        if isinstance(input, PackedSequence):
            return self._forward_packed(input, h0, c0)
        if not isinstance(input, Tensor):
            raise TypeError(f"input must be a torch.Tensor, got {type(input).__name__}")
        if torch.compiler.is_compiling():  # dynamo and export trace custom ops, not Rust
            return _ops.stack_forward(self, input, h0, c0)
        output, h_n, c_n = self._run(input, None, h0, c0)
        return output, self._pack_state(h_n, c_n)

    def _forward_packed(self, input: PackedSequence, h0, c0):
        sorted_indices, unsorted_indices = input.sorted_indices, input.unsorted_indices
        # Initial states come in the caller's order; the packed rows are sorted
        # longest first (torch.nn.RNNBase.permute_hidden).
        if sorted_indices is not None:
            h0 = None if h0 is None else h0.index_select(1, sorted_indices)
            c0 = None if c0 is None else c0.index_select(1, sorted_indices)
        batch_sizes = input.batch_sizes.tolist()
        data, h_n, c_n = self._run(input.data, batch_sizes, h0, c0)
        if unsorted_indices is not None:
            h_n = h_n.index_select(1, unsorted_indices)
            c_n = None if c_n is None else c_n.index_select(1, unsorted_indices)
        output = PackedSequence(data, input.batch_sizes, sorted_indices, unsorted_indices)
        return output, self._pack_state(h_n, c_n)

    def _run(self, input: Tensor, batch_sizes, h0, c0):
        """The Rust stack over padded input, or packed data with its batch sizes."""
        weights = self._flat_weights
        tensors = [input, h0, c0, *weights]
        needs_grad = torch.is_grad_enabled() and any(
            t is not None and t.requires_grad for t in tensors
        )
        if needs_grad:
            out = StackFunction.apply(
                self._spec, self.training, batch_sizes, input, h0, c0, *weights
            )
            return out if len(out) == 3 else (*out, None)
        output, h_n, c_n, _ = self._spec.forward(
            input, h0, c0, weights, self.training, False, batch_sizes
        )
        return output, h_n, c_n

    def step(self, input: Tensor, hx: Optional[_State] = None):
        """Advances the network by one timestep.

        Args:
            input: ``(N, H_in)`` (``(H_in)`` unbatched): one timestep of input.
            hx: the state returned by the previous call, or None for zeros.

        Returns:
            ``(output, state)`` with output ``(N, D * H_out)`` (``(D * H_out)`` unbatched),
            and the new state shaped as :meth:`forward` returns it.
        """
        time_dim = 1 if self.batch_first and input.dim() == 2 else 0
        output, state = self.forward(input.unsqueeze(time_dim), hx)
        return output.squeeze(time_dim), state


class RNN(RNNBase):
    r"""Elman RNN: :math:`h_t = \tanh(W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh})`.

    Args:
        input_size: number of features of the input ``H_in``.
        hidden_size: number of features of the hidden state ``H_out``.
        num_layers: number of stacked layers. Default: 1.
        nonlinearity: ``'tanh'`` or ``'relu'``. Default: ``'tanh'``.
        bias: whether the layers have ``b_ih`` and ``b_hh``. Default: True.
        batch_first: input and output as ``(N, L, H)`` instead of ``(L, N, H)``.
        dropout: dropout probability on the outputs of every layer but the last,
            in training mode. Default: 0.
        bidirectional: run a reverse pass too. Default: False.

    Inputs: ``input, h_0``
        - **input**: ``(L, H_in)``, ``(L, N, H_in)`` or, with batch_first, ``(N, L, H_in)``.
        - **h_0**: ``(D * num_layers, H_out)`` or ``(D * num_layers, N, H_out)``; zeros if omitted.

    Outputs: ``output, h_n``
        - **output**: ``(L, D * H_out)``, ``(L, N, D * H_out)`` or ``(N, L, D * H_out)``.
        - **h_n**: ``(D * num_layers, N, H_out)``.
    """

    _torch_class = nn.RNN

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device=None,
        dtype=None,
        **kwargs,
    ) -> None:
        if "proj_size" in kwargs:
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        mode = nonlinearity_mode(nonlinearity)
        if mode is None:
            raise ValueError(
                f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'."
            )
        self.nonlinearity = nonlinearity
        super().__init__(
            mode,
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            device=device,
            dtype=dtype,
            **kwargs,  # RNNBase's TypeError names any unexpected one, as torch's does
        )

    def extra_repr(self) -> str:
        s = super().extra_repr()
        if self.nonlinearity != "tanh":
            s += f", nonlinearity={self.nonlinearity}"
        return s


class LSTM(RNNBase):
    r"""Long short-term memory network, gates in torch's order i, f, g, o.

    Args:
        input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional:
            as for :class:`RNN`.
        proj_size: if > 0, ``h_t`` is projected to this size by ``weight_hr``. Default: 0.

    Inputs: ``input, (h_0, c_0)``
        - **input**: ``(L, H_in)``, ``(L, N, H_in)`` or, with batch_first, ``(N, L, H_in)``.
        - **h_0**: ``(D * num_layers, N, H_out)``; **c_0**: ``(D * num_layers, N, H_cell)``.
          Both zero if omitted. ``H_out`` is proj_size when projecting, else hidden_size.

    Outputs: ``output, (h_n, c_n)``
        - **output**: ``(L, N, D * H_out)`` (batch_first and unbatched as for the input).
        - **h_n**: ``(D * num_layers, N, H_out)``; **c_n**: ``(D * num_layers, N, H_cell)``.
    """

    _torch_class = nn.LSTM

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        device=None,
        dtype=None,
        **kwargs,
    ) -> None:
        super().__init__(
            "LSTM",
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            proj_size,
            device,
            dtype,
            **kwargs,  # RNNBase's TypeError names any unexpected one, as torch's does
        )

    def _split_state(self, hx):
        if hx is None:
            return None, None
        if not isinstance(hx, (tuple, list)) or len(hx) != 2:
            raise TypeError(
                f"LSTM expects hx as a tuple (h_0, c_0) of two tensors, got {type(hx).__name__}"
            )
        return hx[0], hx[1]

    def _pack_state(self, h_n, c_n):
        return h_n, c_n


class GRU(RNNBase):
    r"""Gated recurrent unit network, gates in torch's order r, z, n with
    :math:`n_t = \tanh(W_{in} x_t + b_{in} + r_t \odot (W_{hn} h_{t-1} + b_{hn}))`.

    Args, inputs and outputs as for :class:`RNN` (no ``nonlinearity``).
    """

    _torch_class = nn.GRU

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device=None,
        dtype=None,
        **kwargs,
    ) -> None:
        if "proj_size" in kwargs:
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        super().__init__(
            "GRU",
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            device=device,
            dtype=dtype,
            **kwargs,  # RNNBase's TypeError names any unexpected one, as torch's does
        )
