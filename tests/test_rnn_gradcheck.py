"""torch.autograd.gradcheck through the Rust forward and the hand-written Rust backward."""

import itertools

import pytest
import rustrnn
import torch
from rnn_helpers import KINDS


@pytest.mark.parametrize(
    "kind,bias,bidir,proj",
    [
        (k, b, d, p)
        for k, b, d, p in itertools.product(KINDS, [True, False], [False, True], [0, 2])
        if p == 0 or k == "lstm"
    ],
)
def test_gradcheck_stack(kind, bias, bidir, proj):
    cls, _, extra = KINDS[kind]
    kwargs = dict(num_layers=2, bias=bias, bidirectional=bidir, **extra)
    if proj:
        kwargs["proj_size"] = proj
    m = cls(3, 4, **kwargs).double()
    names = [n for n, _ in m.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in m.parameters()]
    x = torch.randn(4, 2, 3, dtype=torch.float64, requires_grad=True)
    d = 2 if bidir else 1
    h_out = proj or 4
    h0 = torch.randn(2 * d, 2, h_out, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(2 * d, 2, 4, dtype=torch.float64, requires_grad=True)

    def f(x, h0, c0, *ps):
        state = (h0, c0) if kind == "lstm" else h0
        out, final = torch.func.functional_call(m, dict(zip(names, ps)), (x, state))
        finals = final if isinstance(final, tuple) else (final,)
        return (out, *finals)

    assert torch.autograd.gradcheck(f, (x, h0, c0, *params), eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("bias", [True, False])
def test_gradcheck_cell(kind, bias):
    cls = {"lstm": rustrnn.LSTMCell, "gru": rustrnn.GRUCell}.get(kind, rustrnn.RNNCell)
    kwargs = {"nonlinearity": KINDS[kind][2]["nonlinearity"]} if kind.startswith("rnn") else {}
    m = cls(3, 4, bias=bias, **kwargs).double()
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    h = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    c = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)

    def f(x, h, c):
        return m(x, (h, c)) if kind == "lstm" else m(x, h)

    assert torch.autograd.gradcheck(f, (x, h, c))
