"""Infinities and NaN in what the stacks are given: the same outputs and gradients as
torch.nn, element for element (NaN where torch gives NaN, +-inf where it gives +-inf),
on every engine: the fused float32 kernels (RNN, GRU; LSTM for packed input and T=1),
oneDNN's LSTM (padded float32), the composed float64 path, one and two directions.

A +inf, -inf or NaN is put at every position of the input (each in its own batch row,
and one at a time at every timestep) and at a few positions of the initial state. Before
the fix the fused kernels' padding lanes turned ``0 * inf`` into NaN that spread to every
unit of every later step, the GRU's recurrent candidate part was computed with the
input's infinities in it, and ReLU turned NaN into 0.
"""

import itertools

import pytest
import torch
from rnn_helpers import make_pair
from torch.nn.utils.rnn import pack_padded_sequence

T, B, F, H = 4, 3, 4, 20  # H = 20: the fused kernels pad it (to 32 and to 64 columns)
VALUES = (float("inf"), float("-inf"), float("nan"))
LAYOUTS = {
    "padded": {},
    "t1": {},
    "packed": {},
    "bidirectional": {"bidirectional": True, "num_layers": 2},
}


def run(module, layout, x, state):
    """Outputs and the gradients of input, state and weights for random output grads."""
    params = list(module.parameters())
    states = [s for s in (state if isinstance(state, tuple) else (state,)) if s is not None]
    if layout == "packed":
        lengths = torch.arange(x.shape[1]) % x.shape[0] + 1  # every length, every order
        packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
        out, final = module(packed, state)
        out = out.data
    else:
        out, final = module(x, state)
    finals = list(final) if isinstance(final, tuple) else [final]
    outs = [out, *finals]
    gen = torch.Generator().manual_seed(1)
    grads_out = [torch.randn(o.shape, generator=gen, dtype=o.dtype) for o in outs]
    grads = torch.autograd.grad(outs, [x, *states, *params], grads_out, allow_unused=True)
    return outs, grads


def compare(ours, ref, layout, dtype, x, state):
    got = run(ours, layout, x, state)
    want = run(ref, layout, x, state)
    tol = {"atol": 1e-5, "rtol": 1e-4} if dtype == torch.float32 else {}
    for g, w in zip(got[0] + list(got[1]), want[0] + list(want[1])):
        if w is None:
            assert g is None or not g.any()
            continue
        # Same NaN positions, same infinities, close finite values.
        torch.testing.assert_close(g, w, equal_nan=True, **tol)


def initial_state(kind, module, dtype, batch):
    d = 2 if module.bidirectional else 1
    h = torch.randn(d * module.num_layers, batch, H, dtype=dtype)
    return (h, torch.randn_like(h)) if kind == "lstm" else h


def fresh(kind, state):
    """The state as leaves that require grad (a tuple for the LSTM)."""
    states = tuple(s.clone().requires_grad_(True) for s in (state if kind == "lstm" else (state,)))
    return states if kind == "lstm" else states[0]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", ["rnn_tanh", "rnn_relu", "gru", "lstm"])
def test_one_non_finite_input_value_anywhere(kind, dtype, layout):
    """Every (timestep, feature) position at once: the rows of a batch are independent,
    so row ``r`` carries the value at its own position (and the last row none); every
    row's outputs and input gradients must be torch's."""
    ours, ref = make_pair(kind, F, H, dtype=dtype, **LAYOUTS[layout])
    steps = 1 if layout == "t1" else T
    rows = steps * F + 1
    base = torch.randn(steps, rows, F, dtype=dtype)
    state = initial_state(kind, ours, dtype, rows)
    for value in VALUES:
        x = base.clone()
        for r in range(rows - 1):
            x[r // F, r, r % F] = value
        try:
            compare(ours, ref, layout, dtype, x.requires_grad_(True), fresh(kind, state))
        except AssertionError as e:
            raise AssertionError(f"{value} in the input: {e}") from None


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("kind", ["rnn_tanh", "rnn_relu", "gru", "lstm"])
def test_one_non_finite_value_per_timestep(kind, layout):
    """One value in the whole batch, at each timestep in turn: the weight gradients (sums
    over every row) are torch's too, NaN where and only where torch's are."""
    dtype = torch.float32
    ours, ref = make_pair(kind, F, H, dtype=dtype, **LAYOUTS[layout])
    steps = 1 if layout == "t1" else T
    base = torch.randn(steps, B, F, dtype=dtype)
    state = initial_state(kind, ours, dtype, B)
    for t, value in itertools.product(range(steps), VALUES):
        x = base.clone()
        x[t, t % B, t % F] = value
        try:
            compare(ours, ref, layout, dtype, x.requires_grad_(True), fresh(kind, state))
        except AssertionError as e:
            raise AssertionError(f"{value} at input[{t}, {t % B}, {t % F}]: {e}") from None


@pytest.mark.parametrize("layout", ["padded", "packed"])
@pytest.mark.parametrize("kind", ["rnn_tanh", "rnn_relu", "gru", "lstm"])
def test_non_finite_initial_state(kind, layout):
    dtype = torch.float32
    ours, ref = make_pair(kind, F, H, dtype=dtype, **LAYOUTS[layout])
    x = torch.randn(T, B, F, dtype=dtype)
    state = initial_state(kind, ours, dtype, B)
    for which, (b, u), value in itertools.product(
        range(2 if kind == "lstm" else 1), [(0, 0), (2, H - 1), (1, 7)], VALUES
    ):
        states = [s.clone() for s in (state if kind == "lstm" else (state,))]
        states[which][0, b, u] = value
        s = fresh(kind, tuple(states) if kind == "lstm" else states[0])
        try:
            compare(ours, ref, layout, dtype, x.clone().requires_grad_(True), s)
        except AssertionError as e:
            raise AssertionError(f"{value} at state {which}[0, {b}, {u}]: {e}") from None


@pytest.mark.parametrize("kind", ["rnn_tanh", "gru", "lstm"])
def test_saturating_finite_inputs_match_torch(kind):
    """Huge finite inputs saturate the gates exactly as in torch (no NaN, no drift)."""
    ours, ref = make_pair(kind, F, H, dtype=torch.float32)
    for scale in (1e4, 1e20, 1e30):
        x = (torch.randn(T, B, F) * scale).requires_grad_(True)
        compare(ours, ref, "padded", torch.float32, x, None)


@pytest.mark.parametrize("kind", ["rnn_tanh", "rnn_relu", "gru", "lstm"])
def test_generation_step_keeps_torchs_values(kind):
    """``step`` (one timestep at a time, T=1 on the fused kernels) with an infinity in
    the first input: the later steps are those of torch.nn, not NaN."""
    ours, ref = make_pair(kind, F, H, dtype=torch.float32)
    xs = torch.randn(T, B, F)
    xs[0, 1, 2] = float("inf")
    with torch.no_grad():
        want, _ = ref(xs)
        state, got = None, []
        for t in range(T):
            out, state = ours.step(xs[t], state)
            got.append(out)
    torch.testing.assert_close(torch.stack(got), want, equal_nan=True, atol=1e-5, rtol=1e-4)
