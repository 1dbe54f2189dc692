"""torch.nn-compatible recurrent modules computed in Rust."""

from .cell import GRUCell, LSTMCell, RNNCell
from .dropout import Dropout
from .rnn import GRU, LSTM, RNN, RNNBase

__all__ = ["RNNBase", "RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell", "Dropout"]
