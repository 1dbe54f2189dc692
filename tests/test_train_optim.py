"""The Rust optimizers and gradient clipping against torch.optim and
torch.nn.utils.clip_grad_norm_, step by step on the same gradients (float64)."""

import pytest
import torch
from rustrnn import _rustrnn

SHAPES = [(3, 4), (5,), (2, 2, 2)]
TORCH = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}


@pytest.mark.parametrize(
    "method,kw",
    [
        ("sgd", {}),
        ("sgd", {"momentum": 0.9}),
        ("sgd", {"momentum": 0.5, "weight_decay": 0.01}),
        ("adam", {}),
        ("adam", {"weight_decay": 0.1}),
        ("adamw", {"weight_decay": 0.1}),
        ("adamw", {"weight_decay": 0.0}),
    ],
)
def test_matches_torch_optim(method, kw):
    ours = [torch.randn(s, dtype=torch.float64) for s in SHAPES]
    ref = [p.clone().requires_grad_(True) for p in ours]
    kw = {"weight_decay": 0.0, **kw}
    extra = {} if method == "sgd" else {"foreach": False}
    ropt = TORCH[method](ref, lr=0.01, **kw, **extra)
    oopt = _rustrnn.Optimizer(method, ours, lr=0.01, **kw)
    for step in range(8):
        if step == 4:  # the learning rate changes between steps, as LR decay does
            oopt.lr = 0.003
            for group in ropt.param_groups:
                group["lr"] = 0.003
        grads = [torch.randn(s, dtype=torch.float64) for s in SHAPES]
        for r, g in zip(ref, grads):
            r.grad = g.clone()
        ropt.step()
        oopt.step([g.clone() for g in grads])
        for o, r in zip(ours, ref):
            torch.testing.assert_close(o, r.detach(), rtol=0, atol=1e-10)
    assert oopt.lr == 0.003


def test_updates_parameters_in_place_without_autograd():
    p = torch.nn.Parameter(torch.randn(4, dtype=torch.float64))
    storage = p.data_ptr()
    opt = _rustrnn.Optimizer("adam", [p], lr=0.1)
    opt.step([torch.ones(4, dtype=torch.float64)])
    assert p.data_ptr() == storage
    assert p.requires_grad and p.grad is None and p.grad_fn is None


@pytest.mark.parametrize("bad", [{"lr": -1.0}, {"lr": 0.1, "momentum": -0.5}])
def test_rejects_what_torch_rejects(bad):
    with pytest.raises(ValueError, match="Invalid"):
        _rustrnn.Optimizer("sgd", [torch.zeros(2)], **bad)
    with pytest.raises(ValueError, match="unknown optimizer"):
        _rustrnn.Optimizer("rmsprop", [torch.zeros(2)], lr=0.1)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("scale,max_norm", [(10.0, 1.0), (0.01, 1.0), (3.0, 0.25)])
def test_clipping_matches_torch(dtype, scale, max_norm):
    grads = [torch.randn(s, dtype=dtype) * scale for s in SHAPES]
    ref = [torch.zeros(s, dtype=dtype, requires_grad=True) for s in SHAPES]
    for r, g in zip(ref, grads):
        r.grad = g.clone()
    want = torch.nn.utils.clip_grad_norm_(ref, max_norm)
    ours = [g.clone() for g in grads]
    norm = _rustrnn.clip_grad_norm(ours, max_norm)
    assert norm == pytest.approx(want.item(), rel=1e-6 if dtype == torch.float32 else 1e-14)
    for o, r in zip(ours, ref):
        torch.testing.assert_close(o, r.grad, rtol=0, atol=0)
