"""The cells' parameters come from Rust (``cell_param_specs``), as the stacks' come from
their RnnSpec: torch.nn's names, shapes and order, and what torch.empty refuses of a size
refused with its exception class (and, for a negative size or an overflowing storage,
its words), checked against torch.nn's cells."""

import pytest
import rustrnn
import torch
from rustrnn import _rustrnn
from test_rnn_errors import raised

CELLS = {
    "LSTM": (rustrnn.LSTMCell, torch.nn.LSTMCell),
    "GRU": (rustrnn.GRUCell, torch.nn.GRUCell),
    "RNN_TANH": (rustrnn.RNNCell, torch.nn.RNNCell),
    "RNN_RELU": (rustrnn.RNNCell, torch.nn.RNNCell),
}


def _options(mode):
    return {"nonlinearity": "relu"} if mode == "RNN_RELU" else {}


@pytest.mark.parametrize("mode", list(CELLS))
@pytest.mark.parametrize("sizes", [(3, 5), (0, 4), (4, 0), (0, 0), (1, 1)])
@pytest.mark.parametrize("bias", [True, False])
def test_specs_are_torchs_parameters(mode, sizes, bias):
    ours_cls, ref_cls = CELLS[mode]
    ref = ref_cls(*sizes, bias=bias, **_options(mode))
    want = [(name, list(p.shape)) for name, p in ref.named_parameters()]
    assert _rustrnn.cell_param_specs(mode, *sizes, bias) == want
    ours = ours_cls(*sizes, bias=bias, **_options(mode))
    assert [(name, list(p.shape)) for name, p in ours.named_parameters()] == want
    assert (ours.bias_ih is None) is (ref.bias_ih is None) is (not bias)


BAD_SIZES = [
    (-1, 4),
    (4, -1),
    (-3, -2),
    (4, -(2**61)),
    (4, -(2**61) - 1),
    (4, 2**40),
    (2**62, 4),
    (2**61, 4),
    (4, 2**61),
    (4, 2**62),
    (4, 2**63),
    (2**64, 4),
    (2.5, 4),
    (4, "3"),
    (None, 4),
    (4, None),
]


@pytest.mark.parametrize("mode", list(CELLS))
@pytest.mark.parametrize("sizes", BAD_SIZES, ids=repr)
def test_sizes_torch_refuses_are_refused_with_its_class(mode, sizes):
    """On the meta device, so that what torch accepts is not allocated. A negative size
    and an overflowing storage are torch.empty's RuntimeError word for word; a gate
    count past int64 its TypeError (whose text, with a C++ trace in it, is torch's)."""
    ours_cls, ref_cls = CELLS[mode]
    ref = raised(lambda: ref_cls(*sizes, device="meta", **_options(mode)))
    ours = raised(lambda: ours_cls(*sizes, device="meta", **_options(mode)))
    if ref is None:
        assert ours is None, ours
        return
    assert type(ours) is type(ref), (ours, ref)
    if isinstance(ref, RuntimeError) or "Overflow" not in str(ref):
        assert str(ours) == str(ref)


@pytest.mark.parametrize("mode", list(CELLS))
def test_sizes_torch_takes_are_taken(mode):
    """A bool or a 0-d integer tensor is a size to torch; both stay as given, as torch's."""
    ours_cls, ref_cls = CELLS[mode]
    for sizes in [(True, 4), (4, torch.tensor(3)), (torch.tensor(2), True)]:
        ours, ref = ours_cls(*sizes, **_options(mode)), ref_cls(*sizes, **_options(mode))
        assert [p.shape for p in ours.parameters()] == [p.shape for p in ref.parameters()]
        assert ours.hidden_size is sizes[1]


def test_gate_counts_past_int64_are_a_type_error_in_rust_too():
    for mode, hidden in [("LSTM", 2**61), ("GRU", 2**62), ("LSTM", -(2**61) - 1)]:
        with pytest.raises(TypeError, match="overflows a 64-bit size"):
            _rustrnn.cell_param_specs(mode, 4, hidden, True)
    with pytest.raises(RuntimeError, match="Storage size calculation overflowed"):
        _rustrnn.cell_param_specs("RNN_TANH", 4, 2**62, True)
