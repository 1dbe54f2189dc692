"""rustrnn.functional.linear_cross_entropy against torch's
F.cross_entropy(F.linear(x, w, b), y) differentiated by autograd: values and the
gradients of input, weight and bias (float32 to 1e-5, float64 to 1e-10), at sizes on
either side of the chunk's rows, and torch's exceptions for bad operands."""

import pytest
import rustrnn
import torch
import torch.nn.functional as F
from hostile_probe import probe
from rustrnn import _rustrnn
from rustrnn.functional import linear_cross_entropy

TOL = {torch.float32: 1e-5, torch.float64: 1e-10}


def operands(n, h, v, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, h, dtype=dtype, generator=g)
    w = torch.randn(v, h, dtype=dtype, generator=g) * 0.3
    b = torch.randn(v, dtype=dtype, generator=g) * 0.3
    y = torch.randint(0, v, (n,), generator=g)
    return x, w, b, y


def leaves(*ts):
    return [None if t is None else t.detach().clone().requires_grad_() for t in ts]


def both(x, w, b, y, reduction="mean", **kw):
    """(loss, grads) of rustrnn and of torch, differentiated through sum(loss * g)."""
    out = []
    for fn in (
        lambda x, w, b: linear_cross_entropy(x, w, y, b, reduction, **kw),
        lambda x, w, b: F.cross_entropy(F.linear(x, w, b), y, reduction=reduction, **kw),
    ):
        lx, lw, lb = leaves(x, w, b)
        loss = fn(lx, lw, lb)
        g = torch.linspace(-1, 2, loss.numel(), dtype=loss.dtype).reshape(loss.shape)
        inputs = [t for t in (lx, lw, lb) if t is not None]
        out.append((loss.detach(), torch.autograd.grad((loss * g).sum(), inputs)))
    return out


def assert_same(got, want, tol):
    (loss, grads), (want_loss, want_grads) = got, want
    torch.testing.assert_close(loss, want_loss, rtol=tol, atol=tol, equal_nan=True)
    assert len(grads) == len(want_grads)
    for g, wg in zip(grads, want_grads):
        assert g.dtype == wg.dtype and g.shape == wg.shape
        torch.testing.assert_close(g, wg, rtol=tol, atol=tol)


def row_counts(v):
    c = _rustrnn.linear_cross_entropy_chunk_rows(10**9, v)
    assert c > 1
    return [1, c - 1, c + 1, 3 * c + 2]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("bias", [True, False])
def test_matches_torch_small_vocabulary(dtype, reduction, bias):
    for n in row_counts(7):
        x, w, b, y = operands(n, 5, 7, dtype)
        assert_same(*both(x, w, b if bias else None, y, reduction), TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_matches_torch_large_vocabulary(dtype, reduction):
    v = 12_000
    for n in row_counts(v):
        x, w, b, y = operands(n, 24, v, dtype, seed=n)
        assert_same(*both(x, w, b, y, reduction), TOL[dtype])


def test_no_bias_large_vocabulary():
    v = 12_000
    n = row_counts(v)[-1]
    x, w, _, y = operands(n, 16, v, torch.float64)
    assert_same(*both(x, w, None, y, "sum"), TOL[torch.float64])


def test_chunk_cut_by_a_large_vocabulary():
    # Past 2^23 / 512 classes the chunk is shorter than 512 rows.
    v = 40_000
    rows = _rustrnn.linear_cross_entropy_chunk_rows(10**9, v)
    assert rows < 512
    x, w, b, y = operands(rows + 1, 8, v, torch.float32)
    assert_same(*both(x, w, b, y), TOL[torch.float32])


@pytest.mark.parametrize("rows", [1, 5, 64])
def test_any_chunk_size_through_the_binding(rows):
    x, w, b, y = operands(131, 6, 17, torch.float64)
    loss, *grads = _rustrnn.linear_cross_entropy(
        x, w, y, b, "sum", -100, (True, True, True), chunk_rows=rows
    )
    (want_loss, want_grads) = both(x, w, b, y, "sum")[1]
    g = torch.linspace(-1, 2, 1, dtype=torch.float64)  # both() scales the scalar loss by -1
    assert_same((loss, [t * g for t in grads]), (want_loss, want_grads), TOL[torch.float64])
    with pytest.raises(ValueError, match="chunk_rows must be positive, got 0"):
        _rustrnn.linear_cross_entropy(x, w, y, b, chunk_rows=0)


def test_word_lm_shape_float32():
    x, w, b, y = operands(700, 200, 10_000, torch.float32)
    assert_same(*both(x, w, b, y), TOL[torch.float32])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_ignored_targets(reduction):
    x, w, b, y = operands(300, 6, 11, torch.float64)
    y[::7] = -100
    assert_same(*both(x, w, b, y, reduction), TOL[torch.float64])
    y[::7] = 3  # an ignore_index inside the classes
    assert_same(*both(x, w, b, y, reduction, ignore_index=3), TOL[torch.float64])


def test_every_target_ignored_mean_is_nan_and_gradients_zero():
    x, w, b, _ = operands(5, 4, 6, torch.float64)
    y = torch.full((5,), -100)
    got, want = both(x, w, b, y)
    assert torch.isnan(got[0]) and torch.isnan(want[0])
    for g, wg in zip(*(got[1], want[1])):
        assert torch.equal(g, wg) and not g.any()


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_no_rows(reduction):
    x, w, b, y = operands(0, 4, 6, torch.float32)
    assert_same(*both(x, w, b, y, reduction), TOL[torch.float32])


def test_only_the_inputs_that_require_grad():
    x, w, b, y = operands(40, 5, 9, torch.float64)
    lx, lb = leaves(x, b)
    loss = linear_cross_entropy(lx, w, y, lb)
    dx, db = torch.autograd.grad(loss, [lx, lb])
    rx, rb = leaves(x, b)
    want = torch.autograd.grad(F.cross_entropy(F.linear(rx, w, rb), y), [rx, rb])
    torch.testing.assert_close(dx, want[0], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(db, want[1], rtol=1e-10, atol=1e-10)


def test_without_grad_no_graph():
    x, w, b, y = operands(30, 5, 9, torch.float32)
    lx, lw, lb = leaves(x, w, b)
    with torch.no_grad():
        loss = linear_cross_entropy(lx, lw, y, lb)
    assert loss.grad_fn is None and not loss.requires_grad
    assert torch.allclose(loss, F.cross_entropy(F.linear(x, w, b), y), rtol=1e-5, atol=1e-5)


def test_gradient_accumulates_over_two_backwards():
    x, w, b, y = operands(20, 5, 9, torch.float64)
    lx, lw, lb = leaves(x, w, b)
    loss = linear_cross_entropy(lx, lw, y, lb)
    loss.backward(retain_graph=True)
    loss.backward()
    rx, rw, rb = leaves(x, w, b)
    F.cross_entropy(F.linear(rx, rw, rb), y).backward()
    torch.testing.assert_close(lw.grad, 2 * rw.grad, rtol=1e-10, atol=1e-10)


def test_strided_operands_and_byte_targets():
    x, w, b, y = operands(50, 6, 9, torch.float64)
    xt = x.t().contiguous().t()  # column-major
    wt = w.t().contiguous().t()
    got, _ = both(xt, wt, b, y.to(torch.uint8))
    assert_same(got, both(x, w, b, y)[1], TOL[torch.float64])


def test_double_backward_is_refused():
    x, w, b, y = operands(10, 4, 6, torch.float64)
    lx, lw = leaves(x, w)
    (dx,) = torch.autograd.grad(linear_cross_entropy(lx, lw, y, b), [lx], create_graph=True)
    # No second derivative that is silently zero: autograd refuses it.
    with pytest.raises(RuntimeError, match="does not require grad|twice"):
        dx.sum().backward()


def test_exported():
    assert "linear_cross_entropy" in rustrnn.functional.__all__


def _bad(**over):
    x, w, b, y = operands(3, 4, 5, torch.float32)
    args = {"input": x, "weight": w, "bias": b, "target": y, **over}
    return args


# Each: the operands changed, and a piece of the message rustrnn gives.
BAD = {
    "target too large": (dict(target=torch.tensor([0, 7, 1])), "Target 7 is out of bounds."),
    "negative target": (dict(target=torch.tensor([0, -1, 1])), "Target -1 is out of bounds."),
    "float target": (dict(target=torch.tensor([0.0, 1.0, 2.0])), "Long or Byte"),
    "int32 target": (dict(target=torch.tensor([0, 1, 2], dtype=torch.int32)), "torch.int32"),
    "bool target": (dict(target=torch.tensor([True, False, True])), "torch.bool"),
    "2-D target": (dict(target=torch.zeros(3, 1, dtype=torch.long)), "[3, 1]"),
    "short target": (
        dict(target=torch.tensor([0, 1])),
        "batch_size (3) to match target batch_size (2)",
    ),
    "hidden sizes": (dict(input=torch.randn(3, 6)), "(3x6 and 4x5)"),
    "bias length": (dict(bias=torch.randn(6)), "[5]"),
    "input dtype": (dict(input=torch.randn(3, 4, dtype=torch.float64)), "torch.float64"),
    "bias dtype": (dict(bias=torch.randn(5, dtype=torch.float64)), "torch.float64"),
    "integer operands": (
        dict(
            input=torch.ones(3, 4, dtype=torch.long),
            weight=torch.ones(5, 4, dtype=torch.long),
            bias=None,
        ),
        "floating-point",
    ),
    "weight 1-D": (dict(weight=torch.randn(4), bias=None), "weight of shape [V, H]"),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_operands_raise_torchs_class(case):
    over, message = BAD[case]
    a = _bad(**over)
    with pytest.raises(Exception) as torch_err:
        F.cross_entropy(F.linear(a["input"], a["weight"], a["bias"]), a["target"])
    for grad in (False, True):
        if grad and a["input"].is_floating_point():
            a["input"] = a["input"].detach().requires_grad_()
        with pytest.raises(Exception) as err:
            linear_cross_entropy(a["input"], a["weight"], a["target"], a["bias"])
        # torch's NotImplementedError (integer logits) is a RuntimeError.
        want = RuntimeError if torch_err.type is NotImplementedError else torch_err.type
        assert isinstance(err.value, want), (err.value, torch_err.value)
        assert message in str(err.value)


def test_input_of_other_rank_is_refused():
    # torch reads a 3-D input's dim 1 as the classes; rustrnn takes rows only.
    x = torch.randn(2, 3, 4)
    with pytest.raises(RuntimeError, match=r"input of shape \[N, H\].*\[2, 3, 4\]"):
        linear_cross_entropy(x, torch.randn(5, 4), torch.zeros(2, dtype=torch.long))


def test_unknown_reduction_is_torchs_value_error():
    x, w, b, y = operands(3, 4, 5, torch.float32)
    with pytest.raises(ValueError, match="avg is not a valid value for reduction"):
        F.cross_entropy(F.linear(x, w, b), y, reduction="avg")
    for grad in (False, True):
        with pytest.raises(ValueError, match="avg is not a valid value for reduction"):
            linear_cross_entropy(x.requires_grad_(grad), w, y, b, reduction="avg")


def test_hostile_sizes_and_dtypes_raise_in_a_child():
    code = """
    import rustrnn.functional as RF
    def expect(what, cls, f):
        try:
            f()
        except cls as e:
            print(what, "ok", type(e).__name__)
        else:
            print(what, "no error")
    huge = 2**40
    x = torch.zeros(1, 4).expand(huge, 4)
    y = torch.zeros(1, dtype=torch.long).expand(huge)
    expect("rows", RuntimeError, lambda: RF.linear_cross_entropy(x, torch.zeros(5, 4), y))
    w = torch.zeros(1, 4).expand(huge, 4)
    x = torch.zeros(3, 4, requires_grad=True)
    y = torch.zeros(3, dtype=torch.long)
    expect("classes", RuntimeError, lambda: RF.linear_cross_entropy(x, w, y))
    c = torch.zeros(3, 4, dtype=torch.complex64)
    expect("complex", RuntimeError, lambda: RF.linear_cross_entropy(c, c[:2], y))
    expect("target type", TypeError, lambda: RF.linear_cross_entropy(x, x, [0, 1, 2]))
    m = torch.zeros(3, 4, device="meta")
    expect("meta", RuntimeError, lambda: RF.linear_cross_entropy(m, m, y.to("meta")))
    print("done")
    """
    r = probe(code, timeout=120, memory_gb=8)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split("\n")
    for what in ("rows", "classes", "complex", "target type", "meta"):
        assert any(line.startswith(f"{what} ok") for line in lines), r.stdout
    assert "done" in lines, r.stdout
