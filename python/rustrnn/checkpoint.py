"""The checkpoint file: one ``.safetensors`` file per model, no pickle.

The tensors carry exactly the module's ``state_dict`` names, so
``safetensors.torch.load_file(path)`` loads a model file into a plain-torch model
(``nn.Embedding`` + ``nn.LSTM`` + ``nn.Linear``, or ``nn.AdaptiveLogSoftmaxWithLoss`` for
an adaptive head, as attributes ``embedding``, ``rnn``, ``head``). The config and the
vocabulary travel as JSON in the file's metadata. The format itself (and its validation)
lives in Rust, ``src/checkpoint.rs``; this module is its Python face, and knows nothing
of the model classes (``LanguageModel.save`` and ``LanguageModel.load`` build on it).
"""

from __future__ import annotations

import os
from typing import Any, Dict, NamedTuple, Union

import torch
from torch import Tensor

from . import _rustrnn

PathLike = Union[str, "os.PathLike[str]"]


class Saved(NamedTuple):
    """What a checkpoint holds, validated: ``kind`` (``"model"`` or ``"training"``), the
    model's constructor arguments, its :class:`~rustrnn.Vocab`, the dtype its tensors
    were saved in, and the tensors by ``state_dict`` name (on the CPU)."""

    kind: str
    config: Dict[str, Any]
    vocab: _rustrnn.Vocab
    dtype: torch.dtype
    tensors: Dict[str, Tensor]


def save(path: PathLike, model) -> None:
    """Writes a model (its ``config``, ``vocab`` and ``state_dict()``: a
    :class:`~rustrnn.LanguageModel` or anything shaped like one) to ``path`` atomically.

    A temporary file beside the target (``.<name>.tmp``) is written, fsynced and
    renamed over it, so a failed write leaves an existing file untouched; a save
    killed half-way leaves only that file, which the next save or load removes. When
    ``path`` is a symbolic link the file it points to is replaced and the link kept.

    Raises:
        ValueError: the tensors do not fit the config.
        TypeError: ``model`` has no ``config``, ``vocab`` or ``state_dict``.
        OSError: the file cannot be written.
    """
    _rustrnn.save_model(os.fspath(path), model)


def read(path: PathLike) -> Saved:
    """Reads a file written by :func:`save` (or a training checkpoint of
    :func:`rustrnn.train`), validating the whole file before anything is allocated.

    Raises:
        OSError: the file cannot be read.
        ValueError: the file is empty, truncated, not a rustrnn checkpoint, or its
            tensors are missing, extra, misshaped or of the wrong dtype (the message
            names the file).
    """
    kind, config, vocab, dtype, tensors = _rustrnn.load_model(os.fspath(path))
    return Saved(kind, config, vocab, getattr(torch, dtype), dict(tensors))
