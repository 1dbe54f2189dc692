"""How fast a word-level training step could be on this machine: the ratio over the
plain-torch loop (bench_train.py's) that no implementation of the same arithmetic can
pass here, for the full head and the adaptive one.

issue 17 asks rustrnn.train for 1.5x the torch loop with the full head and 3x with the
adaptive head. Both sides run the same products (the head's three, the LSTM's), so how
far apart they can be depends on the machine: on one where the products run near the
cores' peak in torch too, only the rest of the torch step (log-softmax, the logits'
passes, the optimizer) can be won. This measures, in one process and interleaved:

* the torch loop's step (word_language_model's recipe, ``WORD`` of bench_train.py);
* the LSTM's forward and backward alone (torch.nn.LSTM on oneDNN, the path rustrnn's
  LSTM stack takes too: ``rnn::onednn``);
* each head product at its own shape with libtorch's ``mm`` (MKL), best of ``--rounds``.

The floor of a rustrnn step is then the LSTM plus every head product at the best rate
any product reached here (rustrnn's own kernels may run a product faster than MKL does,
as on AVX-512 machines; this credits every product with the fastest rate measured), and
nothing else costing anything. The bound is the torch step over that floor; a target
above it cannot be met on this machine by computing the same gradients.

Run: python bench/step_bound.py [--rounds 8] [--cutoffs 2000]
"""

from __future__ import annotations

import argparse
import platform
import time

import rustrnn
import torch
from bench_train import WORD, PlainLM, torch_train
from word_corpus import word_corpus


def best_ms(f, rounds: int) -> float:
    f()
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def head_products(n: int, h: int, v: int) -> list[tuple[int, int, int]]:
    """The forward `[n, h] x [h, v]` and the backward `d_x` and `d_w` products, as (m, k, n)."""
    return [(n, h, v), (n, v, h), (v, n, h)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--steps", type=int, default=10, help="torch loop steps per round")
    ap.add_argument(
        "--cutoffs",
        type=lambda s: [int(c) for c in s.split(",")],
        default=None,
        help="the adaptive head's (default: the model's default for the vocabulary)",
    )
    args = ap.parse_args()

    train_text, _, _ = word_corpus()
    vocab = rustrnn.Vocab.build(train_text, level="word", max_size=10_000)
    v, (b, bptt, e, h) = len(vocab), (WORD[k] for k in ("batch", "bptt", "embed", "hidden"))
    n = b * bptt
    ids = vocab.encode(train_text)[: b * (args.steps * bptt + 1)]
    cutoffs = args.cutoffs or rustrnn._rustrnn.adaptive_cutoffs(v, None)

    # The adaptive head's products: the shortlist and clusters for every row, then each
    # cluster's projection and classes for the rows whose target is in it (the
    # corpus's share of them), as nn.AdaptiveLogSoftmaxWithLoss computes.
    bounds = [0, *cutoffs, v]
    share = [
        ((ids >= lo) & (ids < hi)).double().mean().item() for lo, hi in zip(bounds[1:], bounds[2:])
    ]
    adaptive = head_products(n, h, cutoffs[0] + len(cutoffs))
    for i, s in enumerate(share):
        rows, width = max(1, round(s * n)), int(h // 4.0 ** (i + 1))
        adaptive += head_products(rows, h, width)
        adaptive += head_products(rows, width, bounds[i + 2] - bounds[i + 1])
    full = head_products(n, h, v)

    ops = {}
    for m, k, nn_ in set(full + adaptive):
        a, w = torch.randn(m, k), torch.randn(k, nn_)
        out = torch.empty(m, nn_)
        ops[(m, k, nn_)] = lambda a=a, w=w, out=out: torch.mm(a, w, out=out)

    lstm = torch.nn.LSTM(e, h, 2)
    x = torch.randn(bptt, b, e, requires_grad=True)

    def lstm_step():
        out, _ = lstm(x)
        out.sum().backward()

    torch.manual_seed(0)
    ref = PlainLM(v, "lstm", e, h, 2, 0.2)
    ref_args = argparse.Namespace(**{**WORD, "steps": args.steps, "clip": 0.25})

    times: dict[object, float] = {}
    for _ in range(args.rounds):  # interleaved, so drift in the machine hits all alike
        for key, f in [("torch", lambda: torch_train(ref, ids, ref_args, 1)), ("lstm", lstm_step)]:
            times[key] = min(times.get(key, float("inf")), best_ms(f, 1))
        for key, f in ops.items():
            times[key] = min(times.get(key, float("inf")), best_ms(f, 2))
    torch_step = times["torch"] / args.steps
    gflops = {key: 2 * key[0] * key[1] * key[2] / times[key] / 1e6 for key in ops}
    best_rate = max(gflops.values())

    print(
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; vocab {v}, E={e} H={h} x 2 LSTM, B={b} "
        f"bptt={bptt}; adaptive cutoffs {cutoffs} (rows per cluster "
        + ", ".join(f"{s:.1%}" for s in share)
        + f"); best of {args.rounds} rounds"
    )
    print(f"{'product (m, k, n)':28}{'MKL ms':>10}{'GFLOP/s':>10}")
    for key in sorted(ops, key=lambda k: -k[0] * k[1] * k[2]):
        print(f"{str(key):28}{times[key]:10.2f}{gflops[key]:10.1f}")
    print(f"\ntorch loop step {torch_step:.1f} ms; LSTM forward + backward {times['lstm']:.1f} ms")
    for name, products in (("full", full), ("adaptive", adaptive)):
        flop = sum(2 * m * k * nn_ for m, k, nn_ in products)
        floor = times["lstm"] + flop / best_rate / 1e6
        print(
            f"{name:9} head {flop / 1e9:.2f} GFLOP: floor {floor:.1f} ms/step "
            f"(products at {best_rate:.1f} GFLOP/s), bound {torch_step / floor:.2f}x the torch loop"
        )


if __name__ == "__main__":
    main()
