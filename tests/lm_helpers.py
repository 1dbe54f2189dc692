"""Tiny language models for the training and checkpoint tests, and the plain-torch
model of the same shape (nn.Embedding + nn.LSTM/GRU/RNN + nn.Linear) with its weights."""

import torch
from rustrnn import _rustrnn
from rustrnn.lm import LanguageModel
from torch import nn

TEXT = (
    "the quick brown fox jumps over the lazy dog. pack my box with five dozen liquor jugs.\n"
    "how vexingly quick daft zebras jump! sphinx of black quartz, judge my vow.\n"
) * 4

TORCH_CELLS = {
    "lstm": (nn.LSTM, {}),
    "gru": (nn.GRU, {}),
    "rnn_tanh": (nn.RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": (nn.RNN, {"nonlinearity": "relu"}),
}


def vocab(text=TEXT, level="char"):
    return _rustrnn.Vocab.build(text, level=level)


def tiny_lm(
    cell="lstm",
    embed=6,
    hidden=7,
    layers=2,
    dropout=0.0,
    tie=False,
    dtype=torch.float64,
    text=TEXT,
):
    """``tie=True`` ties at one width (``hidden = embed``); ``tie="projected"`` ties the
    embedding to a wider stack through the model's projection."""
    if tie is True:
        hidden = embed
    tie = bool(tie)
    return LanguageModel(
        vocab(text),
        embed_size=embed,
        hidden_size=hidden,
        num_layers=layers,
        cell=cell,
        dropout=dropout,
        tie_weights=tie,
    ).to(dtype)


class PlainLM(nn.Module):
    """word_language_model's RNNModel, attribute names as rustrnn's LanguageModel."""

    def __init__(self, ntoken, cell, embed, hidden, layers, dropout=0.0, tie=False):
        super().__init__()
        cls, extra = TORCH_CELLS[cell]
        self.embedding = nn.Embedding(ntoken, embed)
        self.drop = nn.Dropout(dropout)
        self.rnn = cls(embed, hidden, layers, dropout=dropout if layers > 1 else 0.0, **extra)
        # AWD-LSTM's tie of different widths, as a bias-free linear map to the embedding's.
        self.projection = nn.Linear(hidden, embed, bias=False) if tie and embed != hidden else None
        self.head = nn.Linear(embed if tie else hidden, ntoken)
        if tie:
            self.head.weight = self.embedding.weight

    def forward(self, ids, state=None):
        out, state = self.rnn(self.drop(self.embedding(ids)), state)
        out = self.drop(out)
        if self.projection is not None:
            out = self.projection(out)
        return self.head(out), state


def plain_copy(model):
    cfg = model.config
    ref = PlainLM(
        len(model.vocab),
        cfg["cell"],
        cfg["embed_size"],
        cfg["hidden_size"],
        cfg["num_layers"],
        cfg["dropout"],
        cfg["tie_weights"],
    ).to(model.embedding.weight.dtype)
    ref.load_state_dict(model.state_dict(), strict=True)
    return ref
