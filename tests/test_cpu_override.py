"""RUSTRNN_CPU caps the instruction set of the fused kernels and the dropout masks, so the
portable and AVX2 variants (which a wheel runs on CPUs without AVX-512) are tested here
on any machine: float32 GRU, RNN and packed LSTM stacks against torch.nn in float64 with
the same weights, outputs and every gradient, in a subprocess per level; dropout masks
are the same bits at every level. A bad value fails at import."""

import json
import os
import subprocess
import sys

import pytest
import rustrnn

HERE = os.path.dirname(os.path.abspath(__file__))

PARITY = """
import hashlib, json, sys
import torch
from torch.nn.utils.rnn import pack_sequence
sys.path.insert(0, sys.argv[1])
from rnn_helpers import make_pair
import rustrnn

torch.manual_seed(0)
for kind, packed in [("gru", False), ("rnn_tanh", False), ("gru", True), ("rnn_relu", True),
                     ("lstm", True)]:
    ours, ref = make_pair(kind, 17, 33, dtype=torch.float32, num_layers=2, bidirectional=True)
    ref = ref.double()
    # packed: lengths unsorted, with a tie and a length-1 sequence; padded: (T=6, N=5)
    seqs = [torch.randn(n, 17) for n in (4, 7, 1, 5, 7)] if packed else [torch.randn(6, 5, 17)]
    results = []
    for module, dtype in ((ours, torch.float32), (ref, torch.float64)):
        xs = [s.to(dtype).clone().requires_grad_() for s in seqs]
        x = pack_sequence(xs, enforce_sorted=False) if packed else xs[0]
        out, final = module(x)
        out = out.data if packed else out
        finals = list(final) if isinstance(final, tuple) else [final]
        w = torch.linspace(-1, 1, out.numel(), dtype=dtype).view_as(out)
        loss = (out * w).sum() + sum(f.square().sum() for f in finals)
        loss.backward()
        grads = [s.grad for s in xs] + [p.grad for p in module.parameters()]
        results.append([out, *finals, *grads])
    for a, b in zip(*results):
        assert a.dtype == torch.float32, (kind, a.dtype)
        torch.testing.assert_close(a.double(), b.detach(), rtol=2e-4, atol=2e-4)
torch.manual_seed(1)
mask = rustrnn.functional.dropout(torch.ones(1000, 37), 0.3)
mask64 = rustrnn.functional.dropout(torch.ones(999, dtype=torch.float64), 0.5)
digest = hashlib.sha256(mask.numpy().tobytes() + mask64.numpy().tobytes()).hexdigest()
print(json.dumps({"features": rustrnn.cpu_features(), "masks": digest}))
"""

LEVELS = ["portable", "avx2", "avx512"]


def run(code, *args, cpu):
    env = dict(os.environ, RUSTRNN_CPU=cpu)
    cmd = [sys.executable, "-c", code, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)


def supported():
    best = rustrnn.cpu_features()["detected"]
    return LEVELS[: LEVELS.index(best) + 1]


def test_cpu_features_reports_the_level_in_use():
    features = rustrnn.cpu_features()
    assert set(features) == {"isa", "detected", "requested"}
    assert features["detected"] in LEVELS
    if not os.environ.get("RUSTRNN_CPU"):
        assert features == {"isa": features["detected"], "detected": features["detected"],
                            "requested": None}  # fmt: skip


def test_each_level_matches_torch_and_draws_the_same_dropout_masks():
    digests = {}
    for level in supported():
        r = run(PARITY, HERE, cpu=level)
        assert r.returncode == 0, f"RUSTRNN_CPU={level}:\n{r.stderr}"
        result = json.loads(r.stdout.strip().splitlines()[-1])
        assert result["features"]["isa"] == level and result["features"]["requested"] == level
        digests[level] = result["masks"]
    assert "portable" in digests and len(set(digests.values())) == 1, digests


def test_an_unknown_value_fails_at_import():
    r = run("import rustrnn", cpu="avx3")
    assert r.returncode != 0
    assert "ValueError" in r.stderr
    assert 'RUSTRNN_CPU="avx3" is not one of portable, avx2, avx512' in r.stderr


def test_a_level_the_cpu_lacks_warns_and_uses_the_best_it_has():
    if "avx512" in supported():
        pytest.skip("this CPU has every level; the rule is tested in src/cpu.rs")
    code = "import rustrnn; print(rustrnn.cpu_features()['isa'])"
    r = run(code, cpu="avx512")
    assert r.returncode == 0, r.stderr
    assert "RuntimeWarning" in r.stderr and "lacks" in r.stderr
    assert r.stdout.strip() == supported()[-1]
