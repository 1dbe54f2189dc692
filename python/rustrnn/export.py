"""torch.nn equivalents of rustrnn's modules, and back.

``module.to_torch()`` and ``Class.from_torch(module)`` (on the stacks and the cells) and
:meth:`rustrnn.LanguageModel.to_torch` are these functions. The weights are copied, not
shared: each module owns its Parameters afterwards. Configuration, device, dtype and
train/eval mode carry over. A parametrized weight (``torch.nn.utils.parametrize``) is
exported as its current value.
"""

from __future__ import annotations

import copy
import warnings
from typing import List, Optional, Tuple

import torch
from torch import Tensor, nn

_TORCH_STACKS = {"RNN_TANH": nn.RNN, "RNN_RELU": nn.RNN, "LSTM": nn.LSTM, "GRU": nn.GRU}


def _stack_options(module) -> dict:
    """The keyword arguments that rebuild a stack, read from a rustrnn or a torch.nn one
    (both keep torch's attribute names)."""
    mode = module.mode
    options = dict(
        num_layers=module.num_layers,
        bias=module.bias,
        batch_first=module.batch_first,
        dropout=module.dropout,
        bidirectional=module.bidirectional,
    )
    if mode == "LSTM":
        options["proj_size"] = module.proj_size
    elif mode in ("RNN_TANH", "RNN_RELU"):
        options["nonlinearity"] = "tanh" if mode == "RNN_TANH" else "relu"
    return options


def _factory(weight: Tensor) -> dict:
    return {"device": weight.device, "dtype": weight.dtype}


def _copy_weights(target: nn.Module, names: List[str], weights: List[Tensor]) -> None:
    with torch.no_grad():
        for name, weight in zip(names, weights):
            getattr(target, name).copy_(weight)


def _build_quietly(cls, *args, **kwargs):
    # The dropout-with-one-layer warning was given when the source module was built.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="dropout option adds dropout")
        return cls(*args, **kwargs)


def _require(module, expected: type, caller: str) -> None:
    if not isinstance(module, expected):
        raise TypeError(
            f"{caller}.from_torch takes a torch.nn.{expected.__name__}, got {type(module).__name__}"
        )


def stack_to_torch(module) -> nn.RNNBase:
    """The torch.nn.RNN, LSTM or GRU of ``module``'s configuration, device and dtype, with
    a copy of its weights."""
    cls = _TORCH_STACKS[module.mode]
    weights = module._flat_weights
    ref = _build_quietly(
        cls, module.input_size, module.hidden_size, **_stack_options(module), **_factory(weights[0])
    )
    _copy_weights(ref, module._flat_weights_names, weights)
    return ref.train(module.training)


def stack_from_torch(cls, module: nn.RNNBase):
    """The rustrnn stack ``cls`` built from the torch.nn stack ``module`` (config, device,
    dtype, a copy of its weights)."""
    _require(module, cls._torch_class, cls.__name__)
    weights = module._flat_weights
    ours = _build_quietly(
        cls, module.input_size, module.hidden_size, **_stack_options(module), **_factory(weights[0])
    )
    _copy_weights(ours, module._flat_weights_names, weights)
    return ours.train(module.training)


def _cell_options(cell) -> dict:
    options = {"bias": cell.bias}
    if hasattr(cell, "nonlinearity"):
        options["nonlinearity"] = cell.nonlinearity
    return options


def _cell_names(cell) -> List[str]:
    return ["weight_ih", "weight_hh"] + (["bias_ih", "bias_hh"] if cell.bias else [])


def _copy_cell(source, target) -> None:
    names = _cell_names(source)
    _copy_weights(target, names, [getattr(source, n) for n in names])


def cell_to_torch(cell) -> nn.RNNCellBase:
    """The torch.nn RNNCell, LSTMCell or GRUCell of ``cell``'s configuration, device and
    dtype, with a copy of its weights."""
    ref = cell._torch_class(
        cell.input_size, cell.hidden_size, **_cell_options(cell), **_factory(cell.weight_ih)
    )
    _copy_cell(cell, ref)
    return ref.train(cell.training)


def cell_from_torch(cls, cell: nn.RNNCellBase):
    """The rustrnn cell ``cls`` built from the torch.nn cell ``cell``."""
    _require(cell, cls._torch_class, cls.__name__)
    ours = cls(cell.input_size, cell.hidden_size, **_cell_options(cell), **_factory(cell.weight_ih))
    _copy_cell(cell, ours)
    return ours.train(cell.training)


class TorchLanguageModel(nn.Module):
    """:class:`rustrnn.LanguageModel` in plain torch: ``nn.Embedding`` -> ``nn.Dropout`` ->
    ``nn.RNN``/``nn.GRU`` -> ``nn.Dropout`` -> ``nn.Linear`` (or
    ``nn.AdaptiveLogSoftmaxWithLoss``), under the same state_dict names (``embedding``,
    ``rnn``, ``head``). Built by :meth:`LanguageModel.to_torch`.

    ``forward(ids (T, B) or (T), state)`` returns ``(logits (T, B, V) or (T, V), state)``
    (log-probabilities, ``head.log_prob``, for an adaptive head), the same as the rustrnn
    model's in eval mode (dropout masks come from torch here).
    """

    def __init__(
        self,
        embedding: nn.Embedding,
        rnn: nn.RNNBase,
        head: nn.Module,
        dropout: float,
        projection: Optional[nn.Linear] = None,
    ):
        super().__init__()
        self.embedding = embedding
        self.drop = nn.Dropout(dropout)
        self.rnn = rnn
        self.projection = projection
        self.head = head

    def _scores(self, x: Tensor) -> Tensor:
        if self.projection is not None:
            x = self.projection(x)
        if isinstance(self.head, nn.AdaptiveLogSoftmaxWithLoss):
            flat = self.head.log_prob(x.reshape(-1, x.size(-1)))
            return flat.view(*x.shape[:-1], self.head.n_classes)
        return self.head(x)

    def forward(self, ids: Tensor, state: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        out, state = self.rnn(self.drop(self.embedding(ids)), state)
        return self._scores(self.drop(out)), state


class TorchLSTMLanguageModel(TorchLanguageModel):
    """:class:`TorchLanguageModel` on an ``nn.LSTM``: the state is ``(h, c)``."""

    def forward(
        self, ids: Tensor, state: Optional[Tuple[Tensor, Tensor]] = None
    ) -> Tuple[Tensor, Tuple[Tensor, Tensor]]:
        out, state = self.rnn(self.drop(self.embedding(ids)), state)
        return self._scores(self.drop(out)), state


def language_model_to_torch(model) -> TorchLanguageModel:
    """The plain-torch twin of a :class:`rustrnn.LanguageModel`, with copies of its weights
    (tied embedding and head stay tied)."""
    memo: dict = {}
    embedding = copy.deepcopy(model.embedding, memo)
    head = copy.deepcopy(model.head, memo)  # shares the copied embedding matrix when tied
    projection = copy.deepcopy(model.projection, memo)
    rnn = model.rnn.to_torch()
    cls = TorchLSTMLanguageModel if isinstance(rnn, nn.LSTM) else TorchLanguageModel
    twin = cls(embedding, rnn, head, model.config["dropout"], projection)
    return twin.train(model.training)
