"""rustrnn modules and their torch.nn twins: to_torch / from_torch round trips,
flatten_parameters, and _flat_weights following dtype and device moves, assign=True
loads and parametrizations, each checked against torch.nn computing the same thing."""

import io
import warnings

import pytest
import rustrnn
import torch
from lm_helpers import TEXT, tiny_lm
from rnn_helpers import KINDS, flatten_state, make_pair
from torch import nn
from torch.nn.utils import parametrize

STACK_OPTIONS = [
    dict(),
    dict(num_layers=2, bidirectional=True),
    dict(num_layers=3, bias=False, batch_first=True, dropout=0.25),
    dict(num_layers=2, bidirectional=True, batch_first=True, proj_size=3),
]

CONFIG_ATTRS = (
    "mode",
    "input_size",
    "hidden_size",
    "num_layers",
    "bias",
    "batch_first",
    "dropout",
    "bidirectional",
    "proj_size",
)

# Outputs to 1e-6 in float32; gradients, sums over every timestep, to 1e-5 (as in
# test_rnn_parity); float64 to 1e-12 against torch.nn and exactly between rustrnn twins.
TOLERANCE = {torch.float32: 1e-6, torch.float64: 1e-12}
GRAD_TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-12}


def stack_cases():
    for kind in KINDS:
        for i, options in enumerate(STACK_OPTIONS):
            if "proj_size" in options and kind != "lstm":
                continue
            for dtype in (torch.float32, torch.float64):
                yield pytest.param(kind, options, dtype, id=f"{kind}-{i}-{str(dtype)[6:]}")


def build(kind, options, dtype, **extra):
    ours_cls, _, kind_options = KINDS[kind]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # dropout with one layer
        return ours_cls(4, 6, **kind_options, **options, dtype=dtype, **extra)


def stack_input(module, dtype):
    shape = (3, 5, 4) if module.batch_first else (5, 3, 4)
    return torch.randn(shape, dtype=dtype)


def forward_backward(module, x, dtype):
    """Eval-mode outputs and every gradient, with a loss weighing each element differently."""
    module.eval()
    module.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_()
    out, state = module(x)
    outs = [out, *flatten_state(state)]
    loss = sum((o * torch.linspace(-1, 1, o.numel(), dtype=dtype).view_as(o)).sum() for o in outs)
    loss.backward()
    return [o.detach() for o in outs] + [x.grad] + [p.grad for p in module.parameters()]


def assert_all_close(a, b, tol, grad_tol=None, outputs=None):
    """``a`` and ``b`` agree to ``tol``; past the first ``outputs`` entries (the
    gradients) to ``grad_tol``."""
    assert len(a) == len(b)
    for i, (u, v) in enumerate(zip(a, b)):
        assert u.dtype == v.dtype and u.shape == v.shape
        t = tol if outputs is None or i < outputs else grad_tol
        if t == 0:
            assert torch.equal(u, v)
        else:
            torch.testing.assert_close(u, v, rtol=t, atol=t)


def assert_twins(got, want, dtype, outputs):
    assert_all_close(got, want, TOLERANCE[dtype], GRAD_TOLERANCE[dtype], outputs)


@pytest.mark.parametrize("kind,options,dtype", list(stack_cases()))
def test_stack_to_torch_and_back(kind, options, dtype):
    ours = build(kind, options, dtype)
    ref = ours.to_torch()
    assert type(ref) is KINDS[kind][1]
    for attr in CONFIG_ATTRS:
        assert getattr(ref, attr) == getattr(ours, attr), attr
    if kind.startswith("rnn"):
        assert ref.nonlinearity == ours.nonlinearity
    assert ref._flat_weights_names == ours._flat_weights_names
    for (name, p), (ref_name, q) in zip(ours.named_parameters(), ref.named_parameters()):
        assert name == ref_name and torch.equal(p, q) and p.dtype == q.dtype == dtype
        assert p.data_ptr() != q.data_ptr()  # copies, not shared storage
    x = stack_input(ours, dtype)
    outputs = 3 if kind == "lstm" else 2
    assert_twins(forward_backward(ours, x, dtype), forward_backward(ref, x, dtype), dtype, outputs)

    back = type(ours).from_torch(ref)
    assert type(back) is type(ours)
    assert repr(back) == repr(ours) and back._spec == ours._spec
    assert_all_close(forward_backward(back, x, dtype), forward_backward(ours, x, dtype), 0)


@pytest.mark.parametrize("kind", list(KINDS))
def test_stack_from_a_fresh_torch_module(kind):
    _, ref_cls, kind_options = KINDS[kind]
    ref = ref_cls(4, 6, num_layers=2, bidirectional=True, **kind_options)
    ours = KINDS[kind][0].from_torch(ref)
    x = torch.randn(5, 3, 4)
    got = forward_backward(ours, x, torch.float32)
    want = forward_backward(ref, x, torch.float32)
    assert_twins(got, want, torch.float32, 3 if kind == "lstm" else 2)


def test_train_mode_and_device_carry_over():
    ours = rustrnn.GRU(4, 6, device="meta")
    ref = ours.to_torch()
    assert ref.weight_ih_l0.device.type == "meta" and ref.training
    ours.eval()
    assert not ours.to_torch().training
    assert not rustrnn.GRU.from_torch(ours.to_torch()).training
    assert rustrnn.GRU.from_torch(ref).weight_hh_l0.device.type == "meta"


@pytest.mark.parametrize(
    "cls,wrong",
    [(rustrnn.LSTM, nn.GRU(4, 6)), (rustrnn.RNN, nn.LSTM(4, 6)), (rustrnn.GRU, nn.RNN(4, 6))],
)
def test_from_torch_refuses_another_kind(cls, wrong):
    with pytest.raises(
        TypeError, match=f"{cls.__name__}.from_torch takes a torch.nn.{cls.__name__}"
    ):
        cls.from_torch(wrong)


CELLS = {
    "rnn_tanh": (rustrnn.RNNCell, nn.RNNCell, {}),
    "rnn_relu": (rustrnn.RNNCell, nn.RNNCell, {"nonlinearity": "relu"}),
    "lstm": (rustrnn.LSTMCell, nn.LSTMCell, {}),
    "gru": (rustrnn.GRUCell, nn.GRUCell, {}),
}


def cell_forward_backward(cell, x, h, dtype):
    cell.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_()
    out = cell(x, h)
    outs = list(out) if isinstance(out, tuple) else [out]
    loss = sum((o * torch.linspace(-1, 1, o.numel(), dtype=dtype).view_as(o)).sum() for o in outs)
    loss.backward()
    return [o.detach() for o in outs] + [x.grad] + [p.grad for p in cell.parameters()]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("kind", list(CELLS))
def test_cell_to_torch_and_back(kind, bias, dtype):
    ours_cls, ref_cls, options = CELLS[kind]
    ours = ours_cls(4, 6, bias=bias, dtype=dtype, **options)
    ref = ours.to_torch()
    assert type(ref) is ref_cls
    assert (ref.input_size, ref.hidden_size, ref.bias) == (4, 6, bias)
    assert getattr(ref, "nonlinearity", None) == getattr(ours, "nonlinearity", None)
    assert [n for n, _ in ref.named_parameters()] == [n for n, _ in ours.named_parameters()]
    x = torch.randn(3, 4, dtype=dtype)
    h = torch.randn(3, 6, dtype=dtype)
    state = (h, torch.randn(3, 6, dtype=dtype)) if kind == "lstm" else h
    want = cell_forward_backward(ref, x, state, dtype)
    got = cell_forward_backward(ours, x, state, dtype)
    assert_twins(got, want, dtype, 2 if kind == "lstm" else 1)
    back = ours_cls.from_torch(ref)
    assert repr(back) == repr(ours)
    assert_all_close(
        cell_forward_backward(back, x, state, dtype),
        cell_forward_backward(ours, x, state, dtype),
        0,
    )


def test_cell_from_torch_refuses_another_kind():
    with pytest.raises(
        TypeError, match="GRUCell.from_torch takes a torch.nn.GRUCell, got LSTMCell"
    ):
        rustrnn.GRUCell.from_torch(nn.LSTMCell(3, 4))


# ------------------------------------------------------------------ language model


@pytest.mark.parametrize(
    "cell,tie", [("lstm", False), ("lstm", True), ("gru", False), ("rnn_tanh", True)]
)
def test_language_model_to_torch(cell, tie):
    model = tiny_lm(cell, tie=tie, dropout=0.3, dtype=torch.float32).eval()
    ref = model.to_torch()
    assert not ref.training
    assert isinstance(ref.rnn, KINDS[cell][1])
    assert isinstance(ref.embedding, nn.Embedding) and isinstance(ref.head, nn.Linear)
    assert (ref.head.weight is ref.embedding.weight) == tie
    ours_sd, ref_sd = model.state_dict(), ref.state_dict()
    assert list(ours_sd) == list(ref_sd)
    for k in ours_sd:
        assert torch.equal(ours_sd[k], ref_sd[k])
    ids = model.vocab.encode(TEXT[:24]).view(-1, 3)
    with torch.no_grad():
        logits, state = model(ids)
        ref_logits, ref_state = ref(ids)
        torch.testing.assert_close(ref_logits, logits, rtol=1e-6, atol=1e-6)
        for a, b in zip(flatten_state(ref_state), flatten_state(state)):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
        # The state carries on across calls, and unbatched ids work, as in rustrnn.
        more = model.vocab.encode(TEXT[24:30]).view(-1, 3)
        torch.testing.assert_close(
            ref(more, ref_state)[0], model(more, state)[0], rtol=1e-6, atol=1e-6
        )
        flat = model.vocab.encode(TEXT[:10])
        torch.testing.assert_close(ref(flat)[0], model(flat)[0], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_exported_language_model_goes_through_torch_export(cell):
    model = tiny_lm(cell, dtype=torch.float32).eval()
    ref = model.to_torch()
    ids = model.vocab.encode(TEXT[:12]).view(-1, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.export's notes on nn.LSTM's _flat_weights
        program = torch.export.export(ref, (ids,))
    logits, state = program.module()(ids)
    with torch.no_grad():
        want_logits, want_state = model(ids)
    torch.testing.assert_close(logits, want_logits, rtol=1e-6, atol=1e-6)
    for a, b in zip(flatten_state(state), flatten_state(want_state)):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------- flatten_parameters


@pytest.mark.parametrize("kind", list(KINDS))
def test_flatten_parameters_is_a_no_op_like_torch_on_the_cpu(kind):
    ours, ref = make_pair(kind, 4, 6, dtype=torch.float32, num_layers=2)
    x = torch.randn(5, 3, 4)
    before = ours(x)[0]
    assert ours.flatten_parameters() is None
    assert ref.flatten_parameters() is None
    torch.testing.assert_close(ours(x)[0], before, rtol=0, atol=0)
    buf = io.BytesIO()
    torch.save(ours, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    assert loaded.flatten_parameters() is None
    torch.testing.assert_close(loaded(x)[0], ref(x)[0], rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------- _flat_weights


def assert_flat_weights_are_the_parameters(module, dtype):
    for name, w in zip(module._flat_weights_names, module._flat_weights):
        assert w is getattr(module, name) and w.dtype == dtype


@pytest.mark.parametrize("kind", list(KINDS))
def test_flat_weights_follow_dtype_moves(kind):
    ours, ref = make_pair(kind, 4, 6, dtype=torch.float32, num_layers=2, bidirectional=True)
    x = torch.randn(5, 3, 4)
    for move, dtype, tol in (
        (lambda m: m.double(), torch.float64, 1e-12),
        (lambda m: m.to(torch.float32), torch.float32, 1e-6),
        (lambda m: m.to(dtype=torch.float64), torch.float64, 1e-12),
        (lambda m: m.half(), torch.float16, 2e-3),
    ):
        move(ours)
        move(ref)
        assert_flat_weights_are_the_parameters(ours, dtype)
        with torch.no_grad():
            got, want = ours(x.to(dtype))[0], ref(x.to(dtype))[0]
        assert got.dtype == dtype
        torch.testing.assert_close(got, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("kind", list(KINDS))
def test_flat_weights_follow_load_state_dict_assign(kind):
    ours, _ = make_pair(kind, 4, 6, dtype=torch.float32, num_layers=2)
    donor, ref = make_pair(kind, 4, 6, dtype=torch.float64, num_layers=2)
    ours.load_state_dict(donor.state_dict(), assign=True)
    for name, w in zip(ours._flat_weights_names, ours._flat_weights):
        assert w is getattr(ours, name) and w.dtype == torch.float64
        assert w.data_ptr() == getattr(donor, name).data_ptr()  # assigned, not copied
    x = torch.randn(5, 3, 4, dtype=torch.float64)
    assert_all_close(
        forward_backward(ours, x, torch.float64), forward_backward(ref, x, torch.float64), 1e-12
    )


class WeightDrop(nn.Module):
    """A weight-drop style parametrization with a fixed mask (AWD-LSTM's DropConnect on W_hh)."""

    def __init__(self, mask):
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, weight):
        return weight * self.mask


@pytest.mark.parametrize("kind", list(KINDS))
def test_parametrized_recurrent_weight_matches_torch(kind):
    ours, ref = make_pair(kind, 4, 6, dtype=torch.float64, num_layers=2, bidirectional=True)
    for name in ("weight_hh_l0", "weight_hh_l1_reverse"):
        shape = getattr(ours, name).shape
        mask = (torch.rand(shape) > 0.4).double() / 0.6
        parametrize.register_parametrization(ours, name, WeightDrop(mask))
        parametrize.register_parametrization(ref, name, WeightDrop(mask))
        flat = ours._flat_weights[ours._flat_weights_names.index(name)]
        original = ours.parametrizations[name].original
        torch.testing.assert_close(flat, original * mask, rtol=0, atol=0)
    x = torch.randn(5, 3, 4, dtype=torch.float64)
    got = forward_backward(ours, x, torch.float64)
    want = forward_backward(ref, x, torch.float64)
    assert_all_close(got, want, 1e-12)
    originals = ours.parametrizations.weight_hh_l0.original
    assert originals.grad is not None and originals.grad.abs().sum() > 0
    torch.testing.assert_close(
        originals.grad, ref.parametrizations.weight_hh_l0.original.grad, rtol=1e-12, atol=1e-12
    )
    # Exported, the parametrized weight goes as its current value.
    exported = ours.to_torch()
    torch.testing.assert_close(exported(x)[0], ref(x)[0], rtol=1e-12, atol=1e-12)
