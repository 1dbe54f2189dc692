"""rustrnn stacks against torch.nn with the same weights: outputs, final states, gradients."""

import itertools

import pytest
import torch
from rnn_helpers import KINDS, flatten_state, make_pair, make_state

T, B, IN, H = 5, 3, 4, 6

CONFIGS = [
    (kind, bias, bidir, batch_first, layers, unbatched, with_hx, proj)
    for kind, bias, bidir, batch_first, layers, unbatched, with_hx, proj in itertools.product(
        KINDS,
        [True, False],
        [False, True],
        [False, True],
        [1, 2],
        [False, True],
        [False, True],
        [0, 3],
    )
    if proj == 0 or kind == "lstm"
]


def config_id(c):
    kind, bias, bidir, bf, layers, unb, hx, proj = c
    return (
        f"{kind}-bias{int(bias)}-bi{int(bidir)}-bf{int(bf)}-L{layers}-unb{int(unb)}"
        f"-hx{int(hx)}-proj{proj}"
    )


def run_both(config, dtype):
    kind, bias, bidir, batch_first, layers, unbatched, with_hx, proj = config
    kwargs = dict(num_layers=layers, bias=bias, batch_first=batch_first, bidirectional=bidir)
    if proj:
        kwargs["proj_size"] = proj
    ours, ref = make_pair(kind, IN, H, dtype=dtype, **kwargs)
    if unbatched:
        shape = (T, IN)
    else:
        shape = (B, T, IN) if batch_first else (T, B, IN)
    x = torch.randn(shape, dtype=dtype, requires_grad=True)
    state = make_state(kind, ours, B, unbatched, dtype) if with_hx else None
    results = []
    for module in (ours, ref):
        for p in module.parameters():
            p.grad = None
        x.grad = None
        leaves = flatten_state(state) if state is not None else []
        for t in leaves:
            t.grad = None
        out, final = module(x, state)
        finals = flatten_state(final)
        # A loss touching every output with distinct weights, so no gradient term cancels.
        loss = (out * torch.linspace(-1, 1, out.numel(), dtype=dtype).view_as(out)).sum()
        for f in finals:
            loss = loss + (f * torch.cos(torch.arange(f.numel(), dtype=dtype)).view_as(f)).sum()
        loss.backward()
        grads = [p.grad.clone() for p in module.parameters()]
        results.append(
            dict(
                out=out.detach(),
                finals=[f.detach() for f in finals],
                grads=grads,
                names=[n for n, _ in module.named_parameters()],
                dx=x.grad.clone(),
                dstate=[t.grad.clone() for t in leaves],
            )
        )
    return results


def assert_close(a, b, tol):
    assert a.shape == b.shape, (a.shape, b.shape)
    torch.testing.assert_close(a, b, rtol=tol, atol=tol)


@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_matches_torch_float64(config):
    ours, ref = run_both(config, torch.float64)
    assert ours["names"] == ref["names"]
    assert_close(ours["out"], ref["out"], 1e-10)
    for a, b in zip(ours["finals"], ref["finals"]):
        assert_close(a, b, 1e-10)
    for a, b in zip(ours["grads"], ref["grads"]):
        assert_close(a, b, 1e-10)
    assert_close(ours["dx"], ref["dx"], 1e-10)
    for a, b in zip(ours["dstate"], ref["dstate"]):
        assert_close(a, b, 1e-10)


FLOAT32_CONFIGS = [c for c in CONFIGS if c[1] and c[5] is False and c[6]]


@pytest.mark.parametrize("config", FLOAT32_CONFIGS, ids=config_id)
def test_matches_torch_float32(config):
    ours, ref = run_both(config, torch.float32)
    assert_close(ours["out"], ref["out"], 1e-5)
    for a, b in zip(ours["finals"], ref["finals"]):
        assert_close(a, b, 1e-5)
    for a, b in zip(ours["grads"], ref["grads"]):
        assert_close(a, b, 1e-5)
    assert_close(ours["dx"], ref["dx"], 1e-5)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("kind", list(KINDS))
def test_matches_torch_on_cuda(kind):
    ours, ref = make_pair(kind, IN, H, dtype=torch.float32, num_layers=2, bidirectional=True)
    ours.cuda()
    ref.cuda()
    x = torch.randn(T, B, IN, device="cuda", requires_grad=True)
    out, _ = ours(x)
    (out * out).sum().backward()
    ref_out, _ = ref(x.detach())
    torch.testing.assert_close(out, ref_out, rtol=1e-4, atol=1e-4)
    ref_x = x.detach().clone().requires_grad_()
    ref_out, _ = ref(ref_x)
    (ref_out * ref_out).sum().backward()
    for a, b in zip(ours.parameters(), ref.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(x.grad, ref_x.grad, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize(
    "kind,bias,hidden,bidir,unbatched,steps,batch",
    [
        ("gru", True, 256, False, False, 9, 33),
        ("gru", False, 80, True, False, 9, 33),
        ("gru", True, 64, False, True, 9, 33),
        ("gru", True, 17, True, False, 1, 1),
        ("rnn_tanh", True, 256, True, False, 9, 33),
        ("rnn_relu", False, 96, False, False, 9, 33),
        ("rnn_tanh", True, 128, False, True, 9, 33),
        ("rnn_relu", True, 5, True, False, 1, 2),
    ],
)
def test_float32_fused_kernels_against_float64_torch(
    kind, bias, hidden, bidir, unbatched, steps, batch
):
    """GRU and RNN float32 on the CPU run rustrnn's fused kernels, forward and backward,
    on a team of threads at these sizes (hidden sizes whole blocks and not, an odd
    batch for the row tiles' remainder, bias on and off). Checked against torch.nn in
    float64 with the same weights: float32's rounding over these sums stays below 2e-4.
    Also a single timestep and a single row."""
    width = 40
    ours, ref = make_pair(
        kind, width, hidden, dtype=torch.float32, num_layers=2, bias=bias, bidirectional=bidir
    )
    ref = ref.double()
    shape = (steps, width) if unbatched else (steps, batch, width)
    x = torch.randn(shape)
    state = make_state(kind, ours, batch, unbatched, torch.float32)
    got, want = [], []
    for module, dtype, sink in ((ours, torch.float32, got), (ref, torch.float64, want)):
        xi = x.to(dtype).detach().requires_grad_()
        hi = state.to(dtype).detach().requires_grad_()
        out, h_n = module(xi, hi)
        weights = torch.linspace(-1, 1, out.numel(), dtype=dtype).view_as(out)
        ((out * weights).sum() + (h_n * h_n).sum()).backward()
        sink.extend([out, h_n, xi.grad, hi.grad, *(p.grad for p in module.parameters())])
    for a, b in zip(got, want):
        torch.testing.assert_close(a.double(), b.detach(), rtol=2e-4, atol=2e-4)
