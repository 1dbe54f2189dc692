"""The module contract: state dicts, initialisation, dropout, dtypes, cells, the step API."""

import gc
import math

import pytest
import rustrnn
import torch
from rnn_helpers import KINDS, make_pair


@pytest.mark.parametrize("kind", list(KINDS))
def test_state_dict_round_trips_both_ways_strictly(kind):
    ours_cls, ref_cls, extra = KINDS[kind]
    kwargs = dict(num_layers=2, bidirectional=True, **extra)
    if kind == "lstm":
        kwargs["proj_size"] = 3
    ref = ref_cls(5, 7, **kwargs)
    ours = ours_cls(5, 7, **kwargs)
    ours.load_state_dict(ref.state_dict(), strict=True)
    back = ref_cls(5, 7, **kwargs)
    back.load_state_dict(ours.state_dict(), strict=True)
    for (n1, p1), (n2, p2) in zip(ref.named_parameters(), back.named_parameters()):
        assert n1 == n2 and torch.equal(p1, p2)
    x = torch.randn(4, 2, 5)
    torch.testing.assert_close(ours(x)[0], ref(x)[0])


@pytest.mark.parametrize("kind", list(KINDS))
def test_initialisation_is_torchs_uniform(kind):
    cls, _, extra = KINDS[kind]
    hidden = 64
    m = cls(32, hidden, num_layers=2, **extra)
    bound = 1 / math.sqrt(hidden)
    values = torch.cat([p.detach().flatten() for p in m.parameters()])
    assert values.min() >= -bound and values.max() <= bound
    # U(-b, b) has mean 0 and variance b²/3; with n > 10^4 draws these hold to ~5 sigma.
    n = values.numel()
    assert abs(values.mean().item()) < 5 * bound / math.sqrt(3 * n)
    assert values.var().item() == pytest.approx(bound**2 / 3, rel=0.05)


def test_module_repr_reads_like_torch():
    assert repr(rustrnn.LSTM(128, 256, num_layers=2)) == "LSTM(128, 256, num_layers=2)"
    assert repr(rustrnn.GRU(3, 4, batch_first=True, bidirectional=True)) == repr(
        torch.nn.GRU(3, 4, batch_first=True, bidirectional=True)
    )
    # torch.nn.RNN omits a non-default nonlinearity from its repr; we show it.
    assert repr(rustrnn.RNN(3, 4, nonlinearity="relu", bias=False)) == (
        repr(torch.nn.RNN(3, 4, nonlinearity="relu", bias=False))[:-1] + ", nonlinearity=relu)"
    )
    assert repr(rustrnn.LSTMCell(3, 4, bias=False)) == repr(torch.nn.LSTMCell(3, 4, bias=False))


@pytest.mark.parametrize("kind", list(KINDS))
def test_dropout_one_matches_torch_in_training_mode(kind):
    # With p = 1 every input of layer 2 is dropped: deterministic, so comparable with torch.
    ours, ref = make_pair(kind, 4, 6, num_layers=2, dropout=1.0)
    ours.train()
    ref.train()
    x = torch.randn(5, 3, 4, dtype=torch.float64)
    torch.testing.assert_close(ours(x)[0], ref(x)[0])


def test_dropout_statistics_and_eval_mode():
    m = rustrnn.RNN(50, 50, num_layers=2, dropout=0.5, bias=False).double()
    with torch.no_grad():
        # Layer 2 reads layer 1's output through a small identity, so the output shows the mask.
        m.weight_hh_l1.zero_()
        m.weight_ih_l1.copy_(torch.eye(50, dtype=torch.float64) * 1e-3)
    x = torch.randn(200, 4, 50, dtype=torch.float64)
    m.eval()
    out_eval, _ = m(x)
    m.train()
    out_train, _ = m(x)
    # Output is tanh(1e-3 * mask * y / (1 - p)) ≈ 1e-3 * mask * y * 2: zero where dropped.
    ratio = out_train / out_eval
    dropped = (ratio.abs() < 1e-6).double().mean().item()
    n = ratio.numel()
    # Binomial(n, 0.5): 6 standard deviations.
    assert abs(dropped - 0.5) < 6 * math.sqrt(0.25 / n)
    kept = ratio[ratio.abs() > 1e-6]
    torch.testing.assert_close(kept, torch.full_like(kept, 2.0), rtol=1e-4, atol=1e-4)
    # Seeded dropout repeats.
    torch.manual_seed(3)
    a, _ = m(x)
    torch.manual_seed(3)
    b, _ = m(x)
    assert torch.equal(a, b)


def test_dropout_gradient_uses_the_forward_mask():
    m = rustrnn.GRU(3, 4, num_layers=2, dropout=0.5).double()
    x = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)
    torch.manual_seed(7)
    out, _ = m(x)
    out.sum().backward()
    g = [p.grad.clone() for p in m.parameters()]
    # Replaying the same mask through plain autograd: dropout on layer 1's output with the
    # same seed, recomputed with torch.nn.GRU layers.
    l1 = torch.nn.GRU(3, 4).double()
    l2 = torch.nn.GRU(4, 4).double()
    sd = m.state_dict()
    l1.load_state_dict({k.replace("_l0", "_l0"): v for k, v in sd.items() if "_l0" in k})
    l2.load_state_dict({k.replace("_l1", "_l0"): v for k, v in sd.items() if "_l1" in k})
    torch.manual_seed(7)
    y1, _ = l1(x)
    y2, _ = l2(rustrnn.functional.dropout(y1, 0.5))
    y2.sum().backward()
    torch.testing.assert_close(out, y2)
    ref = [p.grad for p in list(l1.parameters()) + list(l2.parameters())]
    for a, b in zip(g, ref):
        torch.testing.assert_close(a, b)


def test_to_double_and_train_eval_behave_as_for_any_module():
    m = rustrnn.LSTM(3, 4)
    assert m.weight_ih_l0.dtype == torch.float32
    m.double()
    assert all(p.dtype == torch.float64 for p in m.parameters())
    out, (h, c) = m(torch.randn(2, 1, 3, dtype=torch.float64))
    assert out.dtype == h.dtype == c.dtype == torch.float64
    m.to(torch.float32)
    assert m(torch.randn(2, 1, 3))[0].dtype == torch.float32
    assert m.eval() is m and not m.training


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("batch_first", [False, True])
def test_step_api_matches_a_full_forward(kind, batch_first):
    cls, _, extra = KINDS[kind]
    m = cls(3, 5, num_layers=2, batch_first=batch_first, **extra).double()
    x = torch.randn(6, 2, 3, dtype=torch.float64)
    full, final = m(x.transpose(0, 1) if batch_first else x)
    if batch_first:
        full = full.transpose(0, 1)
    state = None
    outs = []
    for t in range(6):
        y, state = m.step(x[t], state)
        outs.append(y)
    torch.testing.assert_close(torch.stack(outs), full)
    for a, b in zip(
        state if isinstance(state, tuple) else (state,),
        final if isinstance(final, tuple) else (final,),
    ):
        torch.testing.assert_close(a, b)


CELLS = {
    "rnn_tanh": (rustrnn.RNNCell, torch.nn.RNNCell, {"nonlinearity": "tanh"}),
    "rnn_relu": (rustrnn.RNNCell, torch.nn.RNNCell, {"nonlinearity": "relu"}),
    "lstm": (rustrnn.LSTMCell, torch.nn.LSTMCell, {}),
    "gru": (rustrnn.GRUCell, torch.nn.GRUCell, {}),
}


@pytest.mark.parametrize("kind", list(CELLS))
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("unbatched", [False, True])
@pytest.mark.parametrize("with_hx", [False, True])
def test_cells_match_torch(kind, bias, unbatched, with_hx):
    ours_cls, ref_cls, extra = CELLS[kind]
    ours = ours_cls(3, 5, bias=bias, **extra).double()
    ref = ref_cls(3, 5, bias=bias, **extra).double()
    ref.load_state_dict(ours.state_dict(), strict=True)
    shape = (3,) if unbatched else (2, 3)
    hshape = (5,) if unbatched else (2, 5)
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    hx = None
    if with_hx:
        h = torch.randn(hshape, dtype=torch.float64)
        hx = (h, torch.randn(hshape, dtype=torch.float64)) if kind == "lstm" else h
    results = []
    for m in (ours, ref):
        x.grad = None
        out = m(x, hx)
        outs = out if isinstance(out, tuple) else (out,)
        sum(o.sin().sum() for o in outs).backward()
        results.append(
            ([o.detach() for o in outs], [p.grad.clone() for p in m.parameters()], x.grad.clone())
        )
        m.zero_grad()
    (o1, g1, x1), (o2, g2, x2) = results
    for a, b in zip(o1 + g1 + [x1], o2 + g2 + [x2]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_lstm_inside_sequential_with_a_torch_optimizer():
    class Last(torch.nn.Module):
        def forward(self, x):
            return x[0][-1]

    model = torch.nn.Sequential(rustrnn.LSTM(3, 8), Last(), torch.nn.Linear(8, 1))
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    x = torch.randn(5, 16, 3)
    y = x.sum(dim=(0, 2)).unsqueeze(1)
    first = None
    for _ in range(60):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
    assert loss.item() < 0.5 * first
    assert all(p.grad is not None for p in model.parameters())


def test_in_place_weight_change_before_backward_is_detected():
    m = rustrnn.GRU(3, 4)
    out, _ = m(torch.randn(2, 1, 3))
    with torch.no_grad():
        m.weight_hh_l0.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.sum().backward()


def test_double_backward_is_refused_clearly():
    m = rustrnn.LSTM(3, 4).double()
    x = torch.randn(2, 1, 3, dtype=torch.float64, requires_grad=True)
    out, _ = m(x)
    (g,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable|does not require grad"):
        g.sum().backward()


def test_no_grad_inference_matches_the_training_path():
    m = rustrnn.LSTM(3, 4, num_layers=2).double()
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    with_grad, _ = m(x)
    with torch.no_grad():
        without, _ = m(x)
    assert with_grad.requires_grad and not without.requires_grad
    assert torch.equal(with_grad.detach(), without)


def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


@pytest.mark.parametrize("cls", [rustrnn.LSTM, rustrnn.GRU, rustrnn.RNN])
def test_rss_stays_flat_over_1000_training_steps(cls):
    """float32 on the CPU: the LSTM on oneDNN, the GRU and RNN on the fused kernels."""
    torch.manual_seed(0)
    model = cls(16, 32, num_layers=2)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(8, 4, 16)

    def train(steps):
        for _ in range(steps):
            opt.zero_grad()
            out, _ = model(x)
            out.square().mean().backward()
            opt.step()

    train(100)
    gc.collect()
    before = _rss_bytes()
    train(1000)
    gc.collect()
    growth = _rss_bytes() - before
    # One step's activations are ~50 KB; a leak of one tape per step would add > 50 MB.
    assert growth < 8 * 1024 * 1024, f"RSS grew by {growth / 1e6:.1f} MB over 1000 steps"


@pytest.mark.parametrize("kind", list(KINDS))
def test_strided_parameters_give_the_same_results(kind):
    """A parameter that is a transposed view (same shape, other strides) must not be read
    as if it were dense."""
    ours, ref = make_pair(kind, 6, 6, dtype=torch.float32, num_layers=2)
    with torch.no_grad():
        w = ours.weight_hh_l0.detach()
        strided = w.t().contiguous().t()  # same values and shape, column-major strides
        assert not strided.is_contiguous()
        ours.weight_hh_l0 = torch.nn.Parameter(strided)
    x = torch.randn(5, 3, 6, requires_grad=True)
    out, _ = ours(x)
    out.sum().backward()
    ref_x = x.detach().clone().requires_grad_()
    ref_out, _ = ref(ref_x)
    ref_out.sum().backward()
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(x.grad, ref_x.grad)
    torch.testing.assert_close(ours.weight_hh_l0.grad, ref.weight_hh_l0.grad)
