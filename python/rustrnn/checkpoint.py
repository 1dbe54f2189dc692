"""Saving and loading language models: one ``.safetensors`` file, no pickle.

The tensors carry exactly the module's ``state_dict`` names, so
``safetensors.torch.load_file(path)`` loads a model file into a plain-torch model
(``nn.Embedding`` + ``nn.LSTM`` + ``nn.Linear`` as attributes ``embedding``, ``rnn``,
``head``). The config and the vocabulary travel as JSON in the file's metadata.
The format itself (and its validation) lives in Rust, ``src/checkpoint.rs``.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Union

import torch

from . import _rustrnn

if TYPE_CHECKING:  # pragma: no cover
    from .lm import LanguageModel

PathLike = Union[str, "os.PathLike[str]"]


def _vocab_to_json(vocab) -> str:
    """The vocabulary's own versioned JSON document."""
    return vocab.to_json()


def _vocab_from_json(text: str):
    return _rustrnn.Vocab.from_json(text)


def _config_json(model) -> str:
    return json.dumps(model.config, sort_keys=True)


def save(model: LanguageModel, path: PathLike) -> None:
    """Writes ``model`` (weights, config, vocabulary) to ``path`` atomically.

    A temporary file beside the target (``.<name>.tmp``) is written, fsynced and
    renamed over it, so a failed write leaves an existing file untouched; a save
    killed half-way leaves only that file, which the next save or load removes. When
    ``path`` is a symbolic link the file it points to is replaced and the link kept.

    Raises:
        OSError: the file cannot be written.
    """
    tensors = [(name, t.detach()) for name, t in model.state_dict().items()]
    _rustrnn.save_model(os.fspath(path), _config_json(model), _vocab_to_json(model.vocab), tensors)


def load(
    path: PathLike,
    cls: type[LanguageModel] | None = None,
    map_location: str | torch.device | None = None,
) -> LanguageModel:
    """Reads a model written by :func:`save` (or a training checkpoint of
    :func:`rustrnn.train`), validating the whole file first.

    Args:
        path: the ``.safetensors`` file.
        cls: the class to build (default :class:`rustrnn.LanguageModel`).
        map_location: device for the parameters (default: CPU).

    Returns:
        The model in eval mode, with the dtype it was saved in. Torch's global RNG
        is left as it was (building the module draws initial weights).

    Raises:
        OSError: the file cannot be read.
        ValueError: the file is empty, truncated, not a rustrnn checkpoint, or its
            tensors are missing, extra, misshaped or of the wrong dtype (the message
            names the file).
    """
    from .lm import LanguageModel

    build = LanguageModel if cls is None else cls
    _kind, config, vocab, dtype, tensors = _rustrnn.load_model(os.fspath(path))
    with torch.random.fork_rng(devices=[]):
        model = build(_vocab_from_json(vocab), **json.loads(config))
    model.to(dtype=getattr(torch, dtype))
    model.load_state_dict(dict(tensors), strict=True)
    if map_location is not None:
        model.to(map_location)
    return model.eval()
