"""rustrnn.multinomial and rustrnn.sample against torch.multinomial's contract,
the exact sampling probabilities (chi-square) and a plain-torch recomputation.

Statistical tests use a fixed seed (conftest) and reject at p < 1e-4 (so a
correct sampler fails one of them with probability ~1e-3 per fresh seed).
"""

from __future__ import annotations

import math

import pytest
import rustrnn
import torch
from sampler_helpers import (
    ERROR_CASES,
    chi2_pvalue,
    chi2_sf,
    raised,
    reference_probs,
)

P_MIN = 1e-4  # significance level of every chi-square test


# ---------------------------------------------------------------------------
# chi-square p-value without scipy


@pytest.mark.parametrize("x", [0.01, 0.5, 1.0, 3.84, 10.0, 30.0, 80.0])
def test_chi2_sf_matches_closed_forms(x):
    # df = 1: erfc(sqrt(x/2)); df = 2: exp(-x/2); df = 4: exp(-x/2)(1 + x/2).
    assert chi2_sf(x, 1) == pytest.approx(math.erfc(math.sqrt(x / 2)), rel=1e-10, abs=1e-300)
    assert chi2_sf(x, 2) == pytest.approx(math.exp(-x / 2), rel=1e-10)
    assert chi2_sf(x, 4) == pytest.approx(math.exp(-x / 2) * (1 + x / 2), rel=1e-10)


def second_draw_probs(p: torch.Tensor) -> torch.Tensor:
    """P(second draw = j) when drawing sequentially without replacement."""
    p = p.double() / p.double().sum()
    joint = pair_probs(p)
    return joint.sum(0)


def pair_probs(p: torch.Tensor) -> torch.Tensor:
    """P(first = i, second = j) = p_i p_j / (1 - p_i), i != j."""
    p = p.double() / p.double().sum()
    joint = p[:, None] * p[None, :] / (1 - p[:, None])
    joint.fill_diagonal_(0)
    return joint


# ---------------------------------------------------------------------------
# multinomial: shapes


@pytest.mark.parametrize(
    "shape,n,repl",
    [
        ((7,), 3, False),
        ((7,), 20, True),
        ((5, 7), 7, False),
        ((5, 7), 1, True),
        ((0, 4), 2, True),
        ((1, 1), 1, False),
    ],
)
def test_multinomial_shape_dtype_device(shape, n, repl):
    w = torch.rand(shape) + 0.1
    ours = rustrnn.multinomial(w, n, repl)
    ref = torch.multinomial(w, n, repl)
    assert ours.shape == ref.shape
    assert ours.dtype == ref.dtype == torch.int64
    assert ours.device == w.device


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_multinomial_dtypes_and_layouts(dtype):
    w = torch.rand(9, 6).to(dtype)
    for x in (w, w.t(), w[::2], w[:, 1:]):  # non-contiguous views too
        out = rustrnn.multinomial(x, 3, replacement=False)
        assert out.shape == (x.shape[0], 3)
        assert ((out >= 0) & (out < x.shape[1])).all()


def test_multinomial_reads_weights_that_require_grad():
    """As torch.multinomial: weights that require grad are read, not refused, copied
    into the graph or changed, and give the draws their detached values give."""
    w = torch.rand(4, 5, requires_grad=True)
    before = w.detach().clone()
    out = rustrnn.multinomial(w, 2, generator=torch.Generator().manual_seed(3))
    want = rustrnn.multinomial(before, 2, generator=torch.Generator().manual_seed(3))
    assert torch.equal(out, want) and out.dtype == torch.long
    assert torch.equal(w.detach(), before) and w.grad is None


def test_without_replacement_rows_are_distinct_permutations():
    w = torch.rand(200, 30) + 1e-3
    out = rustrnn.multinomial(w, 30, replacement=False)
    assert torch.equal(out.sort(1).values, torch.arange(30).expand(200, 30))


# ---------------------------------------------------------------------------
# multinomial: errors, compared class by class with torch


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_multinomial_errors_match_torch(case):
    call, fragments = ERROR_CASES[case]
    torch_cls, _ = raised(lambda: call(torch.multinomial))
    ours_cls, msg = raised(lambda: call(rustrnn.multinomial))
    assert torch_cls is not None, "torch accepts this input"
    assert ours_cls is torch_cls, f"torch raises {torch_cls.__name__}, we {ours_cls}: {msg}"
    for fragment in fragments:
        assert fragment in msg, f"{fragment!r} not in {msg!r}"


def test_bad_value_outranks_zero_row_like_torch():
    w = torch.tensor([[0.0, 0.0], [1.0, float("nan")]])
    _, msg = raised(lambda: rustrnn.multinomial(w, 1))
    assert "nan" in msg and "input[1, 1]" in msg


@pytest.mark.parametrize(
    "w,n,row,nnz",
    [
        (torch.tensor([1.0, 0.0, 0.0]), 2, None, 1),
        (torch.tensor([[1.0, 2.0, 3.0], [0.0, 4.0, 0.0], [0.0, 0.0, 1.0]]), 2, 1, 1),
        (torch.tensor([[1.0, 2.0, 0.0, 3.0]]), 4, 0, 3),
    ],
)
def test_too_few_nonzero_weights_is_an_error(w, n, row, nnz):
    # torch silently returns zero-weight categories here; rustrnn refuses.
    torch.multinomial(w, n, replacement=False)
    with pytest.raises(RuntimeError) as e:
        rustrnn.multinomial(w, n, replacement=False)
    msg = str(e.value)
    assert f"only {nnz} non-zero weights" in msg and f"num_samples = {n}" in msg
    if row is not None:
        assert f"row {row}" in msg
    # With replacement the same weights are fine.
    assert rustrnn.multinomial(w, n, replacement=True).shape == torch.multinomial(w, n, True).shape


def test_failed_call_leaves_the_generator_alone():
    state = torch.get_rng_state()
    with pytest.raises(RuntimeError):
        rustrnn.multinomial(torch.tensor([[1.0, 1.0], [0.0, 0.0]]), 1)
    assert torch.equal(state, torch.get_rng_state())


# ---------------------------------------------------------------------------
# multinomial: zero weights and statistics


def sparse_weights(cats=300, every=7):
    w = torch.zeros(cats)
    w[::every] = torch.arange(1, len(w[::every]) + 1, dtype=torch.float32) % 5 + 0.5
    return w


def test_zero_weight_is_never_drawn():
    w = sparse_weights()
    rows = w.expand(2000, -1)
    with_repl = rustrnn.multinomial(rows, 100, replacement=True)  # 2e5 draws
    assert (w[with_repl] > 0).all()
    nnz = int((w > 0).sum())
    without = rustrnn.multinomial(rows, nnz, replacement=False)  # every non-zero, each once
    assert (w[without] > 0).all()
    assert torch.equal(without.sort(1).values, torch.nonzero(w).flatten().expand(2000, nnz))
    # Tiny weights next to huge ones are still drawn, zeros still never.
    w2 = torch.tensor([0.0, 1e-30, 0.0, 1e30, 0.0])
    out = rustrnn.multinomial(w2.expand(1000, -1), 2, replacement=False)
    assert torch.equal(out, torch.tensor([3, 1]).expand(1000, 2))


def test_distribution_with_replacement_chi2():
    p = torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0, 0.0, 5.0, 6.0, 7.0, 0.5])
    out = rustrnn.multinomial(p.expand(1000, -1), 1000, replacement=True)  # 1e6 draws
    assert chi2_pvalue(out, p) > P_MIN


def test_distribution_many_blocks_chi2():
    # 300 categories over several blocks of the CPU kernel, 1e6 draws.
    p = sparse_weights(300, 2) + torch.linspace(0, 1, 300) * (torch.arange(300) % 3 == 0)
    out = rustrnn.multinomial(p.expand(1000, -1), 1000, replacement=True)
    assert chi2_pvalue(out, p) > P_MIN


def test_rows_keep_their_own_distributions():
    a = torch.tensor([1.0, 0.0, 3.0, 0.0, 1.0])
    b = torch.tensor([0.0, 2.0, 0.0, 5.0, 1.0])
    w = torch.stack([a, b]).repeat(500, 1)  # rows alternate a, b
    out = rustrnn.multinomial(w, 400, replacement=True)  # 2e5 draws per distribution
    assert chi2_pvalue(out[0::2], a) > P_MIN
    assert chi2_pvalue(out[1::2], b) > P_MIN


@pytest.mark.parametrize("cats", [10, 300])
def test_distribution_without_replacement_chi2(cats):
    # Two draws per row: first draw ~ p, second ~ sum_i p_i p_j / (1 - p_i).
    g = torch.Generator().manual_seed(5)
    p = torch.rand(cats, generator=g) ** 2 + 0.02
    p[1] = 0.0
    p[cats // 2] = 3.0  # a heavy category, so that removal matters
    rows = 1_000_000 if cats == 10 else 100_000  # keeps the expanded copy ~120 MB
    out = rustrnn.multinomial(p.expand(rows, -1), 2, replacement=False)
    assert (out[:, 0] != out[:, 1]).all()
    assert chi2_pvalue(out[:, 0], p) > P_MIN
    assert chi2_pvalue(out[:, 1], second_draw_probs(p)) > P_MIN
    if cats == 10:
        pairs = out[:, 0] * cats + out[:, 1]
        assert chi2_pvalue(pairs, pair_probs(p).flatten()) > P_MIN


def test_third_draw_without_replacement_chi2():
    p = torch.tensor([5.0, 1.0, 0.5, 2.0, 0.0, 1.5])
    out = rustrnn.multinomial(p.expand(300_000, -1), 3, replacement=False)
    q = p.double() / p.sum()
    third = torch.zeros(6, dtype=torch.float64)
    for i in range(6):
        for j in range(6):
            for k in range(6):
                if len({i, j, k}) == 3:
                    third[k] += q[i] * q[j] / (1 - q[i]) * q[k] / (1 - q[i] - q[j])
    assert chi2_pvalue(out[:, 2], third) > P_MIN


# ---------------------------------------------------------------------------
# multinomial: reproducibility


@pytest.mark.parametrize("repl", [True, False])
def test_manual_seed_repeats_and_successive_calls_differ(repl):
    w = torch.rand(16, 500)
    torch.manual_seed(123)
    a = rustrnn.multinomial(w, 8, repl)
    b = rustrnn.multinomial(w, 8, repl)
    torch.manual_seed(123)
    assert torch.equal(a, rustrnn.multinomial(w, 8, repl))
    assert torch.equal(b, rustrnn.multinomial(w, 8, repl))
    assert not torch.equal(a, b)
    torch.manual_seed(124)
    assert not torch.equal(a, rustrnn.multinomial(w, 8, repl))


@pytest.mark.parametrize("repl", [True, False])
def test_generator_is_honoured(repl):
    w = torch.rand(16, 500)
    g1 = torch.Generator().manual_seed(9)
    g2 = torch.Generator().manual_seed(9)
    state = torch.get_rng_state()
    a = rustrnn.multinomial(w, 8, repl, generator=g1)
    assert torch.equal(state, torch.get_rng_state()), "the default generator was used"
    assert torch.equal(a, rustrnn.multinomial(w, 8, repl, generator=g2))
    assert not torch.equal(a, rustrnn.multinomial(w, 8, repl, generator=g1))
    g3 = torch.Generator().manual_seed(10)
    assert not torch.equal(a, rustrnn.multinomial(w, 8, repl, generator=g3))


def test_generator_statistics_chi2():
    p = torch.tensor([1.0, 2.0, 0.0, 4.0])
    g = torch.Generator().manual_seed(3)
    out = rustrnn.multinomial(p.expand(500, -1), 400, True, generator=g)
    assert chi2_pvalue(out, p) > P_MIN


# ---------------------------------------------------------------------------
# sample


def test_sample_shapes():
    logits = torch.randn(4, 50)
    assert rustrnn.sample(logits).shape == (4,)
    one = rustrnn.sample(logits[0])
    assert one.shape == () and one.dtype == torch.int64
    assert rustrnn.sample(torch.randn(0, 5)).shape == (0,)
    for kw in ({"greedy": True}, {"top_k": 3}, {"top_p": 0.5}, {"top_k": 3, "top_p": 0.5}):
        assert rustrnn.sample(logits, **kw).shape == (4,)
        assert rustrnn.sample(logits[0], **kw).shape == ()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize(
    "kw",
    [
        {"greedy": True},
        {"top_k": 1},
        {"top_p": 1e-9},
        {"temperature": 1e-8},
        {"temperature": 1e-8, "top_p": 0.99},
        {"temperature": 1e-300, "top_k": 5},
    ],
)
def test_sample_limits_are_argmax(dtype, kw):
    logits = (torch.randn(32, 1000) * 4).to(dtype)
    expected = logits.float().argmax(1)
    for _ in range(5):
        assert torch.equal(rustrnn.sample(logits, **kw), expected)


def test_tiny_temperature_is_safe_for_extreme_logits():
    big = torch.finfo(torch.float32).max
    logits = torch.tensor([[-big, big, 0.0, big / 2], [1e-30, 0.0, -1e-30, 2e-30]])
    for t in (1e-8, 1e-30, 1e-45, 5e-324):
        out = rustrnn.sample(logits, temperature=t)
        assert out[0] == 1
        if t < 1e-40:  # differences of 1e-30 only matter at such temperatures
            assert out[1] == 3
    # float64 logits spanning the whole range.
    big64 = torch.finfo(torch.float64).max
    logits64 = torch.tensor([-big64, big64, 0.0, -1.0], dtype=torch.float64)
    for t in (1e-8, 5e-324, 1e300):
        out = rustrnn.sample(logits64, temperature=t, top_p=0.5)
        assert out == 1


def test_top_k_never_leaves_the_k_largest():
    logits = torch.randn(8, 200)
    k = 5
    allowed = logits.topk(k, 1).indices
    out = rustrnn.sample(logits.repeat(2500, 1), temperature=2.0, top_k=k)  # 2e4 draws
    hit = (out.view(2500, 8, 1) == allowed.unsqueeze(0)).any(-1)
    assert hit.all()


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"temperature": 0.7},
        {"temperature": 3.0, "top_k": 4},
        {"top_p": 0.8},
        {"temperature": 0.5, "top_k": 6, "top_p": 0.9},
    ],
)
def test_sample_distribution_chi2(kw):
    logits = torch.tensor([2.0, -1.0, 0.5, 1.5, float("-inf"), 0.0, 1.0, -0.5, 2.2, 0.3])
    out = rustrnn.sample(logits.expand(300_000, -1), **kw)
    assert chi2_pvalue(out, reference_probs(logits, **kw)) > P_MIN


def test_top_p_keeps_at_least_the_smallest_reaching_set():
    # probabilities 0.5, 0.3, 0.2: top_p=0.5 keeps {0}; 0.6 keeps {0, 1}; 0.81 all three.
    logits = torch.tensor([0.5, 0.3, 0.2]).log()
    for p, allowed in [(0.5, {0}), (0.6, {0, 1}), (0.81, {0, 1, 2})]:
        out = rustrnn.sample(logits.expand(20_000, -1), top_p=p)
        assert set(out.unique().tolist()) == allowed


def test_masked_logits_are_never_drawn():
    logits = torch.full((1000,), float("-inf"))
    logits[[3, 500, 999]] = torch.tensor([0.0, 1.0, -1.0])
    out = rustrnn.sample(logits.expand(5000, -1), temperature=5.0)
    assert set(out.unique().tolist()) <= {3, 500, 999}


@pytest.mark.parametrize(
    "kw,fragment",
    [
        ({"temperature": 0.0}, "temperature"),
        ({"temperature": -1.0}, "-1"),
        ({"temperature": float("nan")}, "NaN"),
        ({"top_k": 0}, "top_k"),
        ({"top_k": -3}, "-3"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": 1.5}, "1.5"),
        ({"top_p": -0.1}, "-0.1"),
        ({"top_p": float("nan")}, "NaN"),
    ],
)
def test_sample_bad_options_raise_value_error(kw, fragment):
    with pytest.raises(ValueError) as e:
        rustrnn.sample(torch.randn(5), **kw)
    assert fragment in str(e.value)


@pytest.mark.parametrize(
    "logits,cls,fragment",
    [
        (torch.tensor([0.0, float("nan")]), RuntimeError, "nan"),
        (torch.tensor([[0.0, 1.0], [float("inf"), 0.0]]), RuntimeError, "+inf (row 1)"),
        (torch.full((2, 3), float("-inf")), RuntimeError, "-inf (row 0)"),
        (torch.ones(2, 2, 2), RuntimeError, "[2, 2, 2]"),
        (torch.ones(3, dtype=torch.long), RuntimeError, "int64"),
        (torch.ones(3, 0), RuntimeError, "no tokens"),
    ],
)
def test_sample_bad_logits(logits, cls, fragment):
    with pytest.raises(cls) as e:
        rustrnn.sample(logits)
    assert fragment in str(e.value)
    with pytest.raises(cls):
        rustrnn.sample(logits, greedy=True)


def test_sample_seeding_and_generator():
    logits = torch.randn(64, 100)
    torch.manual_seed(1)
    a = rustrnn.sample(logits, top_p=0.9)
    b = rustrnn.sample(logits, top_p=0.9)
    torch.manual_seed(1)
    assert torch.equal(a, rustrnn.sample(logits, top_p=0.9))
    assert not torch.equal(a, b)
    g1, g2 = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    state = torch.get_rng_state()
    c = rustrnn.sample(logits, top_k=20, generator=g1)
    assert torch.equal(c, rustrnn.sample(logits, top_k=20, generator=g2))
    assert torch.equal(state, torch.get_rng_state())
    with pytest.raises(TypeError):
        rustrnn.sample(logits, generator=42)


# ---------------------------------------------------------------------------
# CUDA (the whole-tensor path); skipped without a GPU


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_path():
    w = sparse_weights().cuda()
    out = rustrnn.multinomial(w.expand(1000, -1), 100, replacement=True)
    assert out.device == w.device and (w[out] > 0).all()
    assert chi2_pvalue(out.cpu(), w.cpu()) > P_MIN
    p = torch.tensor([1.0, 0.0, 3.0, 2.0, 0.5]).cuda()
    out = rustrnn.multinomial(p.expand(200_000, -1), 2, replacement=False).cpu()
    assert chi2_pvalue(out[:, 0], p.cpu()) > P_MIN
    assert chi2_pvalue(out[:, 1], second_draw_probs(p.cpu())) > P_MIN
    with pytest.raises(RuntimeError, match="only 1 non-zero"):
        rustrnn.multinomial(torch.tensor([0.0, 1.0]).cuda(), 2)
    torch.manual_seed(2)
    a = rustrnn.multinomial(p, 3)
    torch.manual_seed(2)
    assert torch.equal(a, rustrnn.multinomial(p, 3))
    g = torch.Generator(device="cuda").manual_seed(1)
    g2 = torch.Generator(device="cuda").manual_seed(1)
    assert torch.equal(
        rustrnn.multinomial(p, 3, generator=g), rustrnn.multinomial(p, 3, generator=g2)
    )
    logits = torch.randn(8, 100, device="cuda")
    assert torch.equal(rustrnn.sample(logits, top_k=1), logits.argmax(1))
    assert rustrnn.sample(logits, top_p=0.9).device == logits.device
