"""Builds a rustrnn stack and the torch.nn stack of the same configuration with the same weights."""

import rustrnn
import torch

KINDS = {
    "rnn_tanh": (rustrnn.RNN, torch.nn.RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": (rustrnn.RNN, torch.nn.RNN, {"nonlinearity": "relu"}),
    "lstm": (rustrnn.LSTM, torch.nn.LSTM, {}),
    "gru": (rustrnn.GRU, torch.nn.GRU, {}),
}


def make_pair(kind, input_size, hidden_size, dtype=torch.float64, **kwargs):
    ours_cls, ref_cls, extra = KINDS[kind]
    ours = ours_cls(input_size, hidden_size, **extra, **kwargs).to(dtype)
    ref = ref_cls(input_size, hidden_size, **extra, **kwargs).to(dtype)
    ref.load_state_dict(ours.state_dict(), strict=True)
    return ours, ref


def make_state(kind, module, batch, unbatched, dtype):
    d = 2 if module.bidirectional else 1
    h_out = module.proj_size if getattr(module, "proj_size", 0) else module.hidden_size
    shape_h = (d * module.num_layers, h_out) if unbatched else (d * module.num_layers, batch, h_out)
    shape_c = shape_h[:-1] + (module.hidden_size,)
    h = torch.randn(shape_h, dtype=dtype, requires_grad=True)
    if kind == "lstm":
        return (h, torch.randn(shape_c, dtype=dtype, requires_grad=True))
    return h


def flatten_state(state):
    return list(state) if isinstance(state, tuple) else [state]
