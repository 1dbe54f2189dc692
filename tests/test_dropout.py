"""rustrnn.functional.dropout and rustrnn.nn.Dropout against torch.nn.functional.dropout's
contract: the mask's statistics, scaling, gradients, seeding and argument errors."""

import math

import pytest
import rustrnn
import torch
import torch.nn.functional as F
from rustrnn.functional import dropout


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("p", [0.2, 0.5, 0.9])
def test_kept_fraction_and_scale(dtype, p):
    x = torch.ones(1001, 999, dtype=dtype)
    y = dropout(x, p)
    kept = y != 0
    n = x.numel()
    # Binomial(n, 1 - p): 6 standard deviations (a false failure about once in 10^9).
    assert abs(kept.sum().item() - n * (1 - p)) < 6 * math.sqrt(n * p * (1 - p))
    want = torch.full_like(y[kept], 1 / (1 - p))
    torch.testing.assert_close(y[kept], want)


def chi2_p_value(chi2: float, df: int) -> float:
    """P(X > chi2) for X chi-square with df degrees of freedom (the regularized upper
    incomplete gamma function)."""
    return torch.special.gammaincc(torch.tensor(df / 2.0), torch.tensor(chi2 / 2.0)).item()


def test_masks_are_independent_of_position():
    """The count kept in each row (500 draws) and each column (1000 draws) is
    Binomial(n, 1 - p): the sum of their squared standard scores is chi-square with one
    degree of freedom per row (1000) or column (500); tested at significance 1e-6."""
    p, rows, cols = 0.3, 1000, 500
    kept = (dropout(torch.ones(rows, cols, dtype=torch.float64), p) != 0).double()
    for counts, size in [(kept.sum(1), cols), (kept.sum(0), rows)]:
        expected = size * (1 - p)
        chi2 = (((counts - expected) ** 2) / (size * p * (1 - p))).sum().item()
        assert chi2_p_value(chi2, counts.numel()) > 1e-6, (counts.numel(), chi2)


def test_gradient_is_the_mask():
    x = torch.randn(50, 40, dtype=torch.float64, requires_grad=True)
    y = dropout(x, 0.4)
    y.backward(torch.ones_like(y))
    torch.testing.assert_close(x.grad, (y / x).detach())


def test_torch_manual_seed_repeats_and_draws_advance():
    x = torch.ones(300, 20)
    torch.manual_seed(11)
    a, b = dropout(x, 0.5), dropout(x, 0.5)
    torch.manual_seed(11)
    assert torch.equal(a, dropout(x, 0.5))
    assert not torch.equal(a, b)


def test_identity_and_edge_probabilities_like_torch():
    x = torch.randn(7, 5)
    assert dropout(x, 0.0) is x
    assert dropout(x, 0.7, training=False) is x
    torch.testing.assert_close(dropout(x, 1.0), F.dropout(x, 1.0))
    assert dropout(torch.empty(0, 3), 0.5).shape == (0, 3)


@pytest.mark.parametrize("p", [-0.1, 1.5])
def test_bad_probability_raises_like_torch(p):
    x = torch.randn(3)
    with pytest.raises(ValueError) as ours:
        dropout(x, p)
    with pytest.raises(ValueError):
        F.dropout(x, p)
    assert str(p) in str(ours.value)
    with pytest.raises(ValueError):
        rustrnn.nn.Dropout(p)
    with pytest.raises(ValueError):
        rustrnn._rustrnn.dropout_mask(x, p)


def test_module_follows_train_and_eval():
    m = rustrnn.nn.Dropout(0.5)
    x = torch.ones(100, 100)
    assert (m(x) == 0).any()
    m.eval()
    assert torch.equal(m(x), x)
    assert repr(m) == "Dropout(p=0.5)"


def raised(fn):
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - the class is what we compare
        return e
    return None


BAD_PROBABILITIES = [-0.1, 1.5, 2, -1, -1.0, 1e20, float("inf"), -1e-7, torch.tensor(1.5)]


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("p", BAD_PROBABILITIES, ids=repr)
def test_the_rust_check_raises_torchs_error_on_every_path(p, training):
    """rustrnn's one rule for p (Rust's) raises torch's ValueError word for word, naming p as
    torch does (``2`` for an int, ``1.5`` for a 0-d tensor), also in eval mode, where torch
    checks p though nothing is dropped."""
    x = torch.randn(3)
    want = raised(lambda: F.dropout(x, p, training))
    got = raised(lambda: dropout(x, p, training))
    assert type(got) is type(want) is ValueError
    assert str(got) == str(want)
    want = raised(lambda: torch.nn.Dropout(p))
    for got in (
        raised(lambda: rustrnn.nn.Dropout(p)),
        raised(lambda: rustrnn._rustrnn.check_dropout(p)),
    ):
        assert type(got) is ValueError and str(got) == str(want)


@pytest.mark.parametrize("p", ["0.5", None, [0.5]], ids=repr)
def test_a_probability_that_is_no_number_is_a_type_error_as_in_torch(p):
    x = torch.randn(3)
    assert type(raised(lambda: F.dropout(x, p))) is TypeError
    for fn in (lambda: dropout(x, p), lambda: dropout(x, p, False), lambda: rustrnn.nn.Dropout(p)):
        assert type(raised(fn)) is TypeError


@pytest.mark.parametrize("p", [0.0, 1.0, 0.5, 0, 1, True])
def test_probabilities_torch_takes_are_taken(p):
    x = torch.randn(4, 3)
    assert rustrnn.nn.Dropout(p).p is p
    torch.nn.Dropout(p)
    assert rustrnn._rustrnn.check_dropout(p) is None
    assert dropout(x, p, training=False) is x
