"""The stacks under torch.compile(fullgraph=True) and torch.export: one graph, and the
outputs and gradients of the eager modules (the custom ops of rustrnn.nn._ops)."""

import pytest
import rustrnn
import torch
from rnn_helpers import KINDS, flatten_state, make_state
from rustrnn.nn import _ops
from torch import nn
from torch._dynamo.testing import CompileCounter

T, B, IN, H = 5, 3, 4, 6
BACKENDS = ["eager", "aot_eager", "inductor"]

# Inductor's own use of torch.jit, not rustrnn's.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated")

# (kind, constructor options, unbatched, with an initial state): between them every option.
CASES = [
    ("rnn_tanh", dict(num_layers=2, bias=False, batch_first=True), False, True),
    ("rnn_relu", dict(bidirectional=True), True, False),
    ("lstm", dict(num_layers=2, bidirectional=True, proj_size=3, batch_first=True), False, True),
    ("lstm", dict(), False, False),
    ("lstm", dict(num_layers=2, proj_size=2), True, True),
    ("gru", dict(num_layers=2, bidirectional=True), False, True),
    ("gru", dict(bias=False, batch_first=True), True, False),
]


def case_id(case):
    kind, kwargs, unbatched, with_hx = case
    opts = "-".join(f"{k}={v}" for k, v in kwargs.items())
    return f"{kind}-{opts or 'default'}-unb{int(unbatched)}-hx{int(with_hx)}"


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def build(kind, kwargs, dtype):
    cls, _, extra = KINDS[kind]
    return cls(IN, H, **extra, **kwargs).to(dtype)


def make_input(module, unbatched, dtype, length=T):
    if unbatched:
        shape = (length, IN)
    else:
        shape = (B, length, IN) if module.batch_first else (length, B, IN)
    return torch.randn(shape, dtype=dtype, requires_grad=True)


def run(fn, module, x, state):
    """Output, final states, and the gradients of the parameters, input and state."""
    leaves = [x, *flatten_state(state)] if state is not None else [x]
    for t in [*module.parameters(), *leaves]:
        t.grad = None
    out, final = fn(x, state)
    finals = flatten_state(final)
    # Every output weighted differently, so that no gradient term cancels.
    loss = (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum()
    for f in finals:
        loss = loss + (f * torch.cos(torch.arange(f.numel(), dtype=f.dtype)).view_as(f)).sum()
    loss.backward()
    grads = [p.grad.clone() for p in module.parameters()] + [t.grad.clone() for t in leaves]
    return [out.detach(), *(f.detach() for f in finals)], grads


def assert_all_close(got, want, tol):
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert a.shape == b.shape and a.stride() == b.stride(), (a.shape, b.shape)
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)


def check_compiled_matches_eager(case, dtype, backend, tol):
    kind, kwargs, unbatched, with_hx = case
    module = build(kind, kwargs, dtype)
    x = make_input(module, unbatched, dtype)
    state = make_state(kind, module, B, unbatched, dtype) if with_hx else None
    compiled = torch.compile(module, fullgraph=True, backend=backend)
    got_out, got_grads = run(compiled, module, x, state)
    want_out, want_grads = run(module, module, x, state)
    assert_all_close(got_out, want_out, tol)
    assert_all_close(got_grads, want_grads, tol)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_compiled_matches_eager_float64(case, backend):
    check_compiled_matches_eager(case, torch.float64, backend, 1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_compiled_matches_eager_float32(case, backend):
    # float32 on the CPU runs oneDNN's LSTM and rustrnn's fused GRU/RNN kernels.
    check_compiled_matches_eager(case, torch.float32, backend, 1e-5)


@pytest.mark.parametrize("engine", ["auto", "libtorch"])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", list(KINDS))
def test_training_dropout_draws_the_forwards_masks_in_backward(kind, backend, engine):
    """The backward recomputes the forward: its gradients are those of the masks the
    forward drew, which the eager module reproduces from the same seed. Under the
    libtorch engine (every CUDA stack's) too: libtorch's autograd records nothing inside
    a custom op, so both the forward op and its recomputation run on rustrnn's engines
    and draw rustrnn's masks, those of the eager module on them."""
    module = build(kind, dict(num_layers=3, dropout=0.5, bidirectional=True), torch.float64)
    x = make_input(module, False, torch.float64)
    compiled = torch.compile(module, fullgraph=True, backend=backend)
    # Inductor has its own random numbers unless told to fall back to torch's.
    with torch._inductor.config.patch(fallback_random=True), rustrnn.backends.rnn_engine(engine):
        torch.manual_seed(7)
        got_out, got_grads = run(compiled, module, x, None)
        again_out, _ = run(compiled, module, x, None)
    # What _ops.stack_forward draws first after manual_seed(7) seeds the stack's masks.
    torch.manual_seed(7)
    seed = int(torch.randint(1 << 62, (), dtype=torch.int64))
    torch.manual_seed(seed)
    want_out, want_grads = run(module, module, x, None)
    assert_all_close(got_out, want_out, 1e-12)
    assert_all_close(got_grads, want_grads, 1e-12)
    # Each call draws a new seed, so new masks.
    assert not torch.allclose(got_out[0], again_out[0])


def test_training_dropout_under_inductors_random_numbers():
    module = build("lstm", dict(num_layers=2, dropout=0.5), torch.float64)
    x = make_input(module, False, torch.float64)
    compiled = torch.compile(module, fullgraph=True, backend="inductor")
    outs = [compiled(x)[0] for _ in range(2)]
    assert not torch.allclose(outs[0], outs[1])
    eval_out = module.eval()(x)[0]
    assert not torch.allclose(outs[0], eval_out)
    outs[0].sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())


def test_dynamic_sequence_length_compiles_once():
    module = build("gru", dict(num_layers=2, batch_first=True), torch.float64)
    counter = CompileCounter()
    compiled = torch.compile(module, fullgraph=True, backend=counter, dynamic=True)
    for length in (5, 9):
        x = make_input(module, False, torch.float64, length)
        got_out, got_grads = run(compiled, module, x, None)
        want_out, want_grads = run(module, module, x, None)
        assert_all_close(got_out, want_out, 1e-12)
        assert_all_close(got_grads, want_grads, 1e-12)
    assert counter.frame_count == 1


class First(nn.Module):
    """Picks the output sequence from ``(output, h_n)``."""

    def forward(self, out_and_state):
        return out_and_state[0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_sequential_with_gru_and_linear_is_one_graph(backend):
    model = nn.Sequential(rustrnn.GRU(IN, H, num_layers=2), First(), nn.Linear(H, 2)).double()
    x = torch.randn(T, B, IN, dtype=torch.float64, requires_grad=True)
    explanation = torch._dynamo.explain(model)(x)
    assert (explanation.graph_count, explanation.graph_break_count) == (1, 0)
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True, backend=backend)
    grads = []
    for fn in (compiled, model):
        model.zero_grad()
        x.grad = None
        y = fn(x)
        (y.tanh() * torch.arange(y.numel(), dtype=y.dtype).view_as(y)).sum().backward()
        grads.append([y.detach(), x.grad.clone(), *(p.grad.clone() for p in model.parameters())])
    assert_all_close(grads[0], grads[1], 1e-12)


class Classifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = rustrnn.LSTM(IN, H, num_layers=2, batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * H, 3)

    def forward(self, x):
        out, (h_n, c_n) = self.lstm(x)
        return self.head(out[:, -1]) + h_n.sum() - c_n.mean()


@pytest.mark.parametrize("strict", [False, True])
def test_export_runs_and_matches_eager(strict):
    model = Classifier().eval()
    x = torch.randn(B, T, IN)
    program = torch.export.export(model, (x,), strict=strict)
    targets = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    assert "rustrnn.stack_forward.default" in targets
    exported = program.module()
    for inp in (x, torch.randn(B, T, IN)):
        torch.testing.assert_close(exported(inp), model(inp), rtol=1e-6, atol=1e-6)
    # The exported module is differentiable too, through the backward op.
    exported(x).sum().backward()
    model(x).sum().backward()
    for a, b in zip(exported.parameters(), model.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-5)


def op_args(module, x, state, seed=None, train=False):
    h0, c0 = module._split_state(state)
    config = (module.mode, module.input_size, module.hidden_size, module.num_layers)
    config += (module.bias, module.batch_first, module.dropout, module.bidirectional)
    config += (module.proj_size, train)
    return (x, h0, c0, list(module.parameters()), seed, *config)


@pytest.mark.parametrize("case", CASES[2:], ids=case_id)
def test_opcheck(case):
    kind, kwargs, unbatched, with_hx = case
    module = build(kind, kwargs, torch.float64)
    x = make_input(module, unbatched, torch.float64)
    state = make_state(kind, module, B, unbatched, torch.float64) if with_hx else None
    args = op_args(module, x, state)
    torch.library.opcheck(_ops._forward_op, args)
    with torch.no_grad():
        output, h_n, c_n = _ops._forward_op(*args)
    d_cn = torch.randn_like(c_n) if kind == "lstm" else None
    detached = [a.detach() if isinstance(a, torch.Tensor) else a for a in args]
    detached[3] = [w.detach() for w in detached[3]]
    grads = (torch.randn_like(output), torch.randn_like(h_n), d_cn, True)
    torch.library.opcheck(_ops._backward_op, (*grads, *detached))


def test_opcheck_with_dropout_seed():
    module = build("gru", dict(num_layers=2, dropout=0.3), torch.float64)
    x = make_input(module, False, torch.float64)
    seed = torch.tensor(1234, dtype=torch.int64)
    torch.library.opcheck(_ops._forward_op, op_args(module, x, None, seed, train=True))


@pytest.mark.parametrize("backend", ["eager", "aot_eager", "inductor"])
def test_language_model_compiles_whole(backend):
    """A LanguageModel (embedding, rustrnn dropout, stack, head) is one graph: eval-mode
    logits and gradients equal eager's."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    vocab = rustrnn.Vocab.build("the quick brown fox jumps over the lazy dog\n", level="char")
    model = rustrnn.LanguageModel(vocab, 8, 12, 2, cell="gru", dropout=0.3).double().eval()
    ids = torch.randint(0, len(vocab), (9, 3))
    compiled = torch.compile(model, fullgraph=True, backend=backend)
    results = []
    for fn in (compiled, model):
        model.zero_grad()
        logits, _ = fn(ids)
        (logits * torch.linspace(-1, 1, logits.numel()).view_as(logits)).sum().backward()
        results.append((logits.detach(), [p.grad.clone() for p in model.parameters()]))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-12, atol=1e-12)
    for a, b in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    # Training mode stays one graph too, with rustrnn's dropout in it.
    model.train()
    model.zero_grad()
    logits, _ = compiled(ids)
    logits.sum().backward()
    assert not torch.allclose(logits, results[1][0]), "dropout is applied"
    assert all(torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_compiled_dropout_draws_fresh_masks_with_the_right_rate(backend):
    torch._dynamo.reset()
    p, n = 0.3, 200_000
    x = torch.rand(n, dtype=torch.float64) + 1.0
    x.requires_grad_(True)
    fn = torch.compile(lambda t: rustrnn.functional.dropout(t, p), fullgraph=True, backend=backend)
    a, b = fn(x), fn(x)
    kept = a != 0
    # Kept elements are scaled by 1 / (1 - p); the kept count is Binomial(n, 1 - p),
    # within 6 standard deviations (a false failure about once in 10^9 runs).
    torch.testing.assert_close(a[kept], x[kept] / (1 - p))
    sd = (n * p * (1 - p)) ** 0.5
    assert abs(kept.sum().item() - n * (1 - p)) < 6 * sd
    assert not torch.equal(a != 0, b != 0), "every call draws a new mask"
    a.sum().backward()
    torch.testing.assert_close(x.grad, kept.double() / (1 - p))


@pytest.mark.parametrize("training", [True, False])
def test_compiled_dropout_checks_p_while_tracing(training):
    """The Rust rule for p runs at trace time (p is a constant there), in eval mode too, and
    a valid p leaves the graph whole."""
    torch._dynamo.reset()
    bad = torch.compile(
        lambda t: rustrnn.functional.dropout(t, 1.5, training), fullgraph=True, backend="eager"
    )
    with pytest.raises(
        Exception, match="dropout probability has to be between 0 and 1, but got 1.5"
    ):
        bad(torch.ones(3))
    good = torch.compile(
        lambda t: rustrnn.functional.dropout(t, 0.25, training), fullgraph=True, backend="eager"
    )
    assert good(torch.ones(3)).shape == (3,)
