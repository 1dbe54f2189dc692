"""Smoke test of an installed rustrnn wheel (run by check_wheels.py in a fresh
virtualenv that holds only the wheel and its dependencies, with no Rust toolchain on PATH).

Checks, each against a reference: RNN/GRU/LSTM forward outputs, final states and gradients
against torch.nn in float64 (float32 modules, so the fused kernels run); a tiny
LanguageModel trained a few steps, saved, reloaded (same logits) and sampled from; and the
``rustrnn`` command's ``--help``. With ``--parity`` only the stack checks run (the driver
repeats them under ``RUSTRNN_CPU=portable``).

Usage: python smoke.py [--parity]
"""

import os
import subprocess
import sys
import sysconfig
import tempfile
import time

import rustrnn
import torch
from torch import nn


def run(module, x, h0, dtype):
    """Output, final state(s) and the gradients of input, initial state and weights."""
    x = x.to(dtype).clone().requires_grad_()
    h0 = [h.to(dtype).clone().requires_grad_() for h in h0]
    out, final = module(x, tuple(h0) if len(h0) == 2 else h0[0])
    finals = list(final) if isinstance(final, tuple) else [final]
    weights = torch.linspace(-1, 1, out.numel(), dtype=dtype).view_as(out)
    loss = (out * weights).sum() + sum(f.square().sum() for f in finals)
    loss.backward()
    return [out, *finals, x.grad, *(h.grad for h in h0), *(p.grad for p in module.parameters())]


def check_stacks():
    """float32 rustrnn stacks against float64 torch.nn with the same weights."""
    torch.manual_seed(0)
    cases = [
        (rustrnn.RNN, nn.RNN, {"num_layers": 2}),
        (rustrnn.GRU, nn.GRU, {"num_layers": 2, "bidirectional": True}),
        (rustrnn.LSTM, nn.LSTM, {"num_layers": 2}),
    ]
    for ours_cls, ref_cls, kwargs in cases:
        ours = ours_cls(12, 20, **kwargs)
        ref = ref_cls(12, 20, **kwargs).double()
        ref.load_state_dict(ours.state_dict(), strict=True)
        layers = ours.num_layers * (2 if ours.bidirectional else 1)
        x = torch.randn(7, 3, 12)
        h0 = [torch.randn(layers, 3, 20) for _ in range(2 if ours_cls is rustrnn.LSTM else 1)]
        got, want = run(ours, x, h0, torch.float32), run(ref, x, h0, torch.float64)
        assert len(got) == len(want)
        for a, b in zip(got, want):
            assert a.dtype == torch.float32 and a.shape == b.shape
            torch.testing.assert_close(a.double(), b.detach(), rtol=2e-4, atol=2e-4)
    print(f"stacks match torch.nn (outputs and gradients) on {rustrnn.cpu_features()}")


def check_language_model():
    """Train, save, reload, generate."""
    torch.manual_seed(0)
    text = "the quick brown fox jumps over the lazy dog.\n" * 60
    vocab = rustrnn.Vocab.build(text, level="char")
    model = rustrnn.LanguageModel(vocab, embed_size=16, hidden_size=32, num_layers=1, dropout=0.0)
    history = rustrnn.train(
        model, text, text[:500], batch_size=4, bptt=16, max_steps=8, lr=1e-2, progress=False
    )
    assert len(history.losses) == 8 and all(loss == loss for loss in history.losses)
    model.eval()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.safetensors")
        model.save(path)
        loaded = rustrnn.LanguageModel.load(path)
    ids = vocab.encode("the quick").view(-1, 1)
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids)[0], model(ids)[0], rtol=0, atol=0)
    out = loaded.generate("the ", 20, greedy=True)
    assert len(out) == 1 and isinstance(out[0], str) and out[0], out
    print(
        f"trained 8 steps (loss {history.losses[0]:.3f} -> {history.losses[-1]:.3f}), "
        f"saved, reloaded, generated {out[0]!r}"
    )


def check_command():
    script = os.path.join(sysconfig.get_path("scripts"), "rustrnn")
    r = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "train" in r.stdout, (r.returncode, r.stdout, r.stderr)
    print("rustrnn --help works")


def main():
    start = time.perf_counter()
    where = os.path.dirname(os.path.realpath(rustrnn.__file__))
    assert where.startswith(os.path.realpath(sys.prefix)), f"rustrnn imported from {where}"
    print(f"rustrnn {rustrnn.__version__} from {where}")
    print(f"Python {sys.version.split()[0]}, torch {torch.__version__}")
    check_stacks()
    if "--parity" not in sys.argv[1:]:
        check_language_model()
        check_command()
    print(f"smoke test passed in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
