"""What the sampler tests share (tests/test_sampler.py on the CPU, tests/test_cuda.py on
a GPU): Pearson's chi-square test without scipy, the plain-torch distribution that
``sample`` draws from, and the table of bad ``multinomial`` calls with the words each
error must contain."""

from __future__ import annotations

import math

import torch


def chi2_sf(x: float, df: int) -> float:
    """P(X >= x) for X ~ chi-square(df): the regularized upper gamma Q(df/2, x/2)."""
    a, z = df / 2.0, x / 2.0
    if z <= 0.0:
        return 1.0
    log_front = -z + a * math.log(z) - math.lgamma(a)
    if z < a + 1.0:  # series for the lower function P
        term = total = 1.0 / a
        n = a
        while term > total * 1e-17:
            n += 1.0
            term *= z / n
            total += term
        return max(0.0, 1.0 - total * math.exp(log_front))
    # continued fraction for Q (modified Lentz)
    tiny = 1e-300
    b = z + 1.0 - a
    c, d = 1.0 / tiny, 1.0 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        h *= d * c
        if abs(d * c - 1.0) < 1e-16:
            break
    return math.exp(log_front) * h


def chi2_pvalue(samples: torch.Tensor, probs: torch.Tensor) -> float:
    """Pearson's test of integer `samples` against category probabilities.

    Categories of probability 0 must never occur and carry no degree of freedom.
    """
    probs = probs.double() / probs.double().sum()
    counts = torch.bincount(samples.flatten(), minlength=probs.numel()).double()
    assert counts.numel() == probs.numel()
    zero = probs == 0
    assert counts[zero].sum() == 0, "a zero-probability category was drawn"
    expected = probs[~zero] * counts.sum()
    assert expected.min() >= 5, "too few draws for a chi-square test"
    stat = ((counts[~zero] - expected) ** 2 / expected).sum().item()
    return chi2_sf(stat, int((~zero).sum()) - 1)


def reference_probs(logits, temperature=1.0, top_k=None, top_p=None):
    """Plain-torch recomputation of the distribution sample() draws from."""
    z = logits.double() / temperature
    if top_k is not None:
        kth = z.topk(top_k).values[-1]
        z = z.masked_fill(z < kth, float("-inf"))
    p = torch.softmax(z, 0)
    if top_p is not None:
        sp, order = p.sort(descending=True)
        before = sp.cumsum(0) - sp
        sp = sp.masked_fill(before >= top_p, 0.0)
        p = torch.zeros_like(p).scatter(0, order, sp)
    return p / p.sum()


def raised(fn):
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - any class: the caller compares them
        return type(e), str(e)
    return None, ""


class _Call:
    """One call's arguments, applied to a function as ``call(torch.multinomial)``;
    ``call.on("cuda")`` is the same call with its tensors on that device."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs

    def __call__(self, f):
        return f(*self.args, **self.kwargs)

    def on(self, device) -> "_Call":
        def move(v):
            return v.to(device) if isinstance(v, torch.Tensor) else v

        return _Call(*map(move, self.args), **{k: move(v) for k, v in self.kwargs.items()})


_m = _Call


ERROR_CASES = {
    "3-D": (_m(torch.ones(2, 2, 2), 1), ["1 or 2 dim", "3-D", "[2, 2, 2]"]),
    "0-D": (_m(torch.tensor(1.0), 1), ["1 or 2 dim", "0-D"]),
    "int64": (_m(torch.ones(3, dtype=torch.long), 1), ["floating-point", "int64"]),
    "bool": (_m(torch.ones(3, dtype=torch.bool), 1), ["floating-point", "bool"]),
    "n=0": (_m(torch.ones(3), 0), ["n_sample <= 0", "got 0"]),
    "n<0": (_m(torch.ones(3), -2, True), ["n_sample <= 0", "got -2"]),
    "n>cats": (
        _m(torch.ones(3), 4, False),
        ["without replacement", "num_samples = 4", "3 categories"],
    ),
    "n>cats 2-D": (_m(torch.ones(2, 3), 5), ["num_samples = 5", "3 categories"]),
    "negative": (_m(torch.tensor([1.0, -1.0]), 1), ["element < 0", "input[1] = -1"]),
    "negative 2-D": (_m(torch.tensor([[1.0, 1.0], [2.0, -0.5]]), 1, True), ["input[1, 1] = -0.5"]),
    "inf": (_m(torch.tensor([1.0, float("inf")]), 1), ["`inf`", "input[1] = inf"]),
    "-inf": (_m(torch.tensor([float("-inf"), 1.0]), 1, True), ["input[0] = -inf"]),
    "nan": (_m(torch.tensor([[1.0, 2.0], [float("nan"), 1.0]]), 1), ["input[1, 0] = NaN"]),
    "zero sum": (_m(torch.zeros(3), 1), ["sum of probabilities <= 0", "sum to 0"]),
    "zero row": (_m(torch.tensor([[1.0, 1.0], [0.0, 0.0]]), 1, True), ["sum to 0", "row 1"]),
    "zero row no repl": (_m(torch.tensor([[1.0, 1.0], [0.0, 0.0]]), 2), ["row 1"]),
    "num_samples float": (_m(torch.ones(3), 1.5), ["num_samples", "float"]),
    "num_samples bool": (_m(torch.ones(3), True), ["num_samples", "bool"]),
    "input list": (_m([1.0, 2.0], 1), ["Tensor"]),
    "generator str": (_m(torch.ones(3), 1, generator="g"), ["generator", "torch.Generator"]),
}
