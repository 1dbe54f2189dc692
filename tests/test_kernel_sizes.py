"""A size sweep of the float32 CPU kernels against torch.nn in float64 with the same
weights: outputs, final states and every gradient.

GRU and RNN (tanh, relu) run rustrnn's fused kernels forward and backward; LSTM runs
oneDNN's kernel or the composed path. Sizes straddle the kernels' blocks (1, 2, 3, 15,
16, 17, 33 for input and hidden width) in every pair, each with bias on and off, one and
two directions; batch (1, 2, 5), sequence length (1, 3) and depth are cycled through
the cases; hidden_size=1 (a gate slot padded to a whole block) meets every batch,
length, bias and direction for every kind. Tolerance as in test_rnn_parity's float32
kernel check: float32's rounding stays below 2e-4.
"""

import itertools

import pytest
import torch
from rnn_helpers import KINDS, flatten_state, make_pair, make_state

SIZES = [1, 2, 3, 15, 16, 17, 33]
BATCHES = [1, 2, 5]
LENGTHS = [1, 3]
FLAGS = list(itertools.product([True, False], [False, True]))  # bias, bidirectional
SHAPES = list(itertools.product(BATCHES, LENGTHS))


def case_id(kind, input_size, hidden, batch, length, bias, bidir, layers):
    return (
        f"{kind}-in{input_size}-h{hidden}-B{batch}-T{length}-bias{int(bias)}"
        f"-bi{int(bidir)}-L{layers}"
    )


def cases():
    """Every kind x every (input_size, hidden_size) pair x bias x direction, batch and
    length cycled, two layers in every fifth case; and hidden_size=1 with every batch,
    length, bias and direction."""
    seen = set()
    for kind in KINDS:
        grid = itertools.product(itertools.product(SIZES, SIZES), FLAGS)
        for k, ((input_size, hidden), (bias, bidir)) in enumerate(grid):
            batch, length = SHAPES[k % len(SHAPES)]
            layers = 2 if k % 5 == 0 else 1
            seen.add((kind, input_size, hidden, batch, length, bias, bidir, layers))
        for k, ((batch, length), (bias, bidir)) in enumerate(itertools.product(SHAPES, FLAGS)):
            seen.add((kind, SIZES[k % len(SIZES)], 1, batch, length, bias, bidir, 1 + k % 2))
    for c in sorted(seen, key=lambda c: (list(KINDS).index(c[0]), *c[1:])):
        yield pytest.param(*c, id=case_id(*c))


def run(module, x, state, dtype):
    xi = x.to(dtype).clone().requires_grad_()
    leaves = [s.to(dtype).clone().requires_grad_() for s in state]
    out, final = module(xi, tuple(leaves) if len(leaves) == 2 else leaves[0])
    finals = flatten_state(final)
    loss = (out * torch.linspace(-1, 1, out.numel(), dtype=dtype).view_as(out)).sum()
    for f in finals:
        loss = loss + (f * torch.cos(torch.arange(f.numel(), dtype=dtype)).view_as(f)).sum()
    loss.backward()
    return [
        out,
        *finals,
        xi.grad,
        *(t.grad for t in leaves),
        *(p.grad for p in module.parameters()),
    ]


@pytest.mark.parametrize("kind,input_size,hidden,batch,length,bias,bidir,layers", list(cases()))
def test_float32_kernels_match_float64_torch(
    kind, input_size, hidden, batch, length, bias, bidir, layers
):
    ours, ref = make_pair(
        kind,
        input_size,
        hidden,
        dtype=torch.float32,
        num_layers=layers,
        bias=bias,
        bidirectional=bidir,
    )
    ref = ref.double()
    x = torch.randn(length, batch, input_size)
    state = [s.detach() for s in flatten_state(make_state(kind, ours, batch, False, torch.float32))]
    got = run(ours, x, state, torch.float32)
    want = run(ref, x, state, torch.float64)
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert a.dtype == torch.float32 and a.shape == b.shape
        torch.testing.assert_close(a.double(), b.detach(), rtol=2e-4, atol=2e-4)
