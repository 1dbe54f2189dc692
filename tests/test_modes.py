"""One spelling per mode, each where torch takes it: RNNBase's ``mode`` (and RnnSpec's, and
the cells' in the extension) is torch's 'LSTM', 'GRU', 'RNN_TANH' or 'RNN_RELU'; the
``nonlinearity`` 'tanh' or 'relu' belongs to RNN and RNNCell; the language model's ``cell``
keeps its own lower-case names, the ones its checkpoints store. Compared with torch.nn."""

import json

import pytest
import rustrnn
import torch
from lm_helpers import tiny_lm
from rustrnn import _rustrnn
from rustrnn.lm import LanguageModel
from safetensors import safe_open
from test_rnn_errors import assert_identical_error, raised

TORCH_MODES = ["LSTM", "GRU", "RNN_TANH", "RNN_RELU"]
OTHER_SPELLINGS = ["lstm", "Lstm", "gru", "rnn_tanh", "rnn_relu", "tanh", "relu", "RNN", " GRU", ""]
TORCH_STACKS = {
    "LSTM": (torch.nn.LSTM, {}),
    "GRU": (torch.nn.GRU, {}),
    "RNN_TANH": (torch.nn.RNN, {"nonlinearity": "tanh"}),
    "RNN_RELU": (torch.nn.RNN, {"nonlinearity": "relu"}),
}
LM_CELLS = {"lstm": "LSTM", "gru": "GRU", "rnn_tanh": "RNN_TANH", "rnn_relu": "RNN_RELU"}


@pytest.mark.parametrize("mode", TORCH_MODES)
def test_torchs_modes_build_and_run_what_torch_does(mode):
    ours = rustrnn.nn.RNNBase(mode, 3, 5, num_layers=2, bidirectional=True).double()
    base = torch.nn.RNNBase(mode, 3, 5, num_layers=2, bidirectional=True)
    assert ours.mode == base.mode == ours._spec.mode == mode
    assert ours._spec.arguments[0] == mode
    assert [(n, p.shape) for n, p in ours.named_parameters()] == [
        (n, p.shape) for n, p in base.named_parameters()
    ]
    cls, options = TORCH_STACKS[mode]
    ref = cls(3, 5, num_layers=2, bidirectional=True, **options).double()
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(4, 2, 3, dtype=torch.float64)
    torch.testing.assert_close(ours(x)[0], ref(x)[0])


def _mode_errors(mode):
    """Every place that takes a mode by torch's name, called with ``mode``."""
    weights = [p.detach() for p in rustrnn.GRUCell(3, 5).parameters()]
    return {
        "RNNBase": raised(lambda: rustrnn.nn.RNNBase(mode, 3, 5)),
        "RnnSpec": raised(lambda: _rustrnn.RnnSpec(mode, 3, 5)),
        "cell_param_specs": raised(lambda: _rustrnn.cell_param_specs(mode, 3, 5, True)),
        "cell_forward": raised(
            lambda: _rustrnn.cell_forward(mode, torch.randn(2, 3), None, None, weights)
        ),
    }


@pytest.mark.parametrize("mode", OTHER_SPELLINGS)
def test_other_spellings_are_torchs_value_error_naming_the_accepted(mode):
    ref = raised(lambda: torch.nn.RNNBase(mode, 3, 5))
    assert type(ref) is ValueError and str(ref) == f"Unrecognized RNN mode: {mode}"
    for where, ours in _mode_errors(mode).items():
        assert type(ours) is ValueError, (where, ours)
        assert str(ours).startswith(str(ref) + " ("), (where, ours)
        assert all(repr(name) in str(ours) for name in TORCH_MODES), (where, ours)


@pytest.mark.parametrize("mode", [5, None, b"LSTM"])
def test_a_mode_that_is_no_str_is_a_type_error_as_in_torch(mode):
    assert type(raised(lambda: torch.nn.RNNBase(mode, 3, 5))) is TypeError
    for where, ours in _mode_errors(mode).items():
        assert type(ours) is TypeError, (where, ours)


@pytest.mark.parametrize("value", ["RNN_TANH", "RNN_RELU", "TANH", "Relu", "rnn_tanh", None])
def test_nonlinearity_takes_torchs_two_names_only(value):
    assert_identical_error(
        lambda: rustrnn.RNN(3, 5, nonlinearity=value),
        lambda: torch.nn.RNN(3, 5, nonlinearity=value),
    )
    ours = rustrnn.RNNCell(3, 5, nonlinearity=value)
    ref = torch.nn.RNNCell(3, 5, nonlinearity=value)
    x = torch.randn(2, 3)
    assert_identical_error(lambda: ours(x), lambda: ref(x))


def test_a_cells_nonlinearity_is_read_at_each_step_as_torchs():
    """Both nonlinearities share one parameter layout: setting it after construction
    changes what the next step computes, in torch and here."""
    ref = torch.nn.RNNCell(3, 5).double()
    ours = rustrnn.RNNCell.from_torch(ref)
    ref.nonlinearity = ours.nonlinearity = "relu"
    x = torch.randn(4, 3, dtype=torch.float64)
    torch.testing.assert_close(ours(x), ref(x))
    assert (ours(x) >= 0).all()


@pytest.mark.parametrize("cell", list(LM_CELLS))
def test_language_model_cells_keep_their_own_names(cell, tmp_path):
    model = tiny_lm(cell)
    assert model.config["cell"] == cell
    assert model.rnn.mode == LM_CELLS[cell]
    assert _rustrnn.lm_stack_spec(model.config).mode == LM_CELLS[cell]
    if cell.startswith("rnn_"):
        assert model.rnn.nonlinearity == cell[4:]
    path = tmp_path / "m.safetensors"
    model.save(path)
    with safe_open(path, "pt") as f:
        assert json.loads(f.metadata()["config"])["cell"] == cell
    assert LanguageModel.load(path).config == model.config


@pytest.mark.parametrize("cell", ["LSTM", "RNN_TANH", "tanh", "Lstm"])
def test_torchs_mode_names_are_no_language_model_cells(cell):
    model = tiny_lm()
    with pytest.raises(ValueError, match="cell must be one of"):
        LanguageModel(model.vocab, cell=cell)
    with pytest.raises(ValueError, match="cell must be one of"):
        _rustrnn.lm_stack_spec({**model.config, "cell": cell})
