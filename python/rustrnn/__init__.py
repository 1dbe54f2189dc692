"""rustrnn: recurrent-network language models whose core is Rust on libtorch.

The modules are ``torch.nn.Module`` subclasses with ordinary torch Parameters;
their forward (and, for the stacks, backward) passes run in Rust.
"""

# libtorch must be loaded before the extension, which links against it
# (otherwise: "libtorch_python.so: cannot open shared object file").
import torch as _torch

_BUILT_FOR_TORCH = "2.13.0"
_installed = _torch.__version__.split("+")[0]
if _installed != _BUILT_FOR_TORCH:
    raise ImportError(
        f"rustrnn was built against torch {_BUILT_FOR_TORCH} but torch {_installed} is "
        f"installed; install torch=={_BUILT_FOR_TORCH} (pip install torch=={_BUILT_FOR_TORCH}) "
        "or rebuild rustrnn from source against the installed torch"
    )

from . import _rustrnn  # noqa: E402

if _rustrnn.TORCH_VERSION != _BUILT_FOR_TORCH:  # pragma: no cover - a broken build
    raise ImportError(
        f"rustrnn's extension was compiled for torch {_rustrnn.TORCH_VERSION}, "
        f"its Python package for torch {_BUILT_FOR_TORCH}; reinstall rustrnn"
    )

# The import-time CPU check (as polars' `_cpu_check`): the extension is compiled for
# baseline x86-64 and picks its kernels' AVX2/AVX-512 variants at run time; a bad
# RUSTRNN_CPU raises ValueError (or, naming instructions this CPU lacks, warns) here.
_rustrnn.cpu_features()

from . import backends, functional  # noqa: E402
from ._rustrnn import (  # noqa: E402
    Vocab,  # noqa: E402
    cpu_features,
    multinomial,
    sample,
)
from .lm import LanguageModel  # noqa: E402
from .ngram import NGramLM  # noqa: E402
from .nn import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell  # noqa: E402
from .training import History, evaluate, train  # noqa: E402
from .vectors import WordVectors  # noqa: E402

__version__ = _rustrnn.__version__

__all__ = [
    "RNN",
    "LSTM",
    "GRU",
    "RNNCell",
    "LSTMCell",
    "GRUCell",
    "Vocab",
    "LanguageModel",
    "NGramLM",
    "WordVectors",
    "train",
    "evaluate",
    "History",
    "multinomial",
    "sample",
    "cpu_features",
    "functional",
    "backends",
]
