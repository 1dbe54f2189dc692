"""Which engine runs rustrnn's recurrent stacks, as ``torch.backends`` flags choose
torch's.

* ``'auto'`` (the default): on CUDA, libtorch's own recurrent ops, which run cuDNN's
  fused kernels as torch.nn does; on the CPU, for each layer the fastest of rustrnn's
  engines (its fused kernels, oneDNN's LSTM kernel, libtorch ops).
* ``'libtorch'``: libtorch's recurrent ops (``at::lstm``, ``at::gru``, ``at::rnn_tanh``,
  ``at::rnn_relu``) on every device, under libtorch's autograd. On the CPU this is the
  CUDA path's glue (weight order, state layout, dropout between layers, gradient
  order) with cuDNN's kernels replaced by torch's CPU ones: what the tests run to check
  that glue without a GPU, and a way to compare with torch.nn on the same kernels.

The preference is the process's, like ``torch.backends.cudnn.enabled``; the stacks
read it at each forward call. Results agree with torch.nn on every engine. Dropout
between layers (training mode) on the libtorch engine is the op's own, so from one
seed it draws torch.nn's masks; rustrnn's other engines draw masks of their own, from
torch's generator too.

Example::

    with rustrnn.backends.rnn_engine("libtorch"):
        out, (h, c) = lstm(x)
"""

import contextlib
from typing import Iterator

from . import _rustrnn

__all__ = ["get_rnn_engine", "set_rnn_engine", "rnn_engine"]

get_rnn_engine = _rustrnn.get_rnn_engine
set_rnn_engine = _rustrnn.set_rnn_engine


@contextlib.contextmanager
def rnn_engine(name: str) -> Iterator[None]:
    """Runs the block with the engine preference ``name`` ('auto' or 'libtorch') and
    restores the previous one after it, even when the block raises.

    Raises:
        ValueError: ``name`` is neither 'auto' nor 'libtorch' (before the block runs).
    """
    previous = set_rnn_engine(name)
    try:
        yield
    finally:
        set_rnn_engine(previous)
