"""rustrnn.multinomial / rustrnn.sample against torch, timed in the same run.

    python bench/bench_sampler.py [--rows 1024] [--cats 10000] [--repeat 20]

Prints the median time of each call and the ratio torch / rustrnn (> 1: rustrnn
is faster). Not a test: nothing here gates on wall-clock time.
"""

from __future__ import annotations

import argparse
import statistics
import time

import rustrnn
import torch


def median_ms(fn, repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def torch_sample(logits, temperature=1.0, top_k=None, top_p=None):
    """The usual torch recipe: scale, filter, softmax, torch.multinomial."""
    z = logits / temperature
    if top_k is not None:
        kth = torch.topk(z, top_k, dim=-1).values[..., -1:]
        z = z.masked_fill(z < kth, float("-inf"))
    if top_p is not None:
        sorted_z, order = torch.sort(z, dim=-1, descending=True)
        probs = torch.softmax(sorted_z, dim=-1)
        before = probs.cumsum(-1) - probs
        sorted_z = sorted_z.masked_fill(before >= top_p, float("-inf"))
        z = torch.full_like(z, float("-inf")).scatter(-1, order, sorted_z)
    return torch.multinomial(torch.softmax(z, dim=-1), 1).squeeze(-1)


def row(name: str, t_torch: float, t_ours: float) -> None:
    print(f"{name:<44} {t_torch:9.2f} {t_ours:9.2f} {t_torch / t_ours:8.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1024)
    ap.add_argument("--cats", type=int, default=10000)
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()

    torch.manual_seed(0)
    w = torch.rand(args.rows, args.cats)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"weights [{args.rows}, {args.cats}] float32"
    )
    print(f"{'call':<44} {'torch ms':>9} {'ours ms':>9} {'ratio':>9}")
    for n, repl in [(1, True), (16, True), (1, False), (16, False), (100, False)]:
        t_torch = median_ms(lambda n=n, r=repl: torch.multinomial(w, n, r), args.repeat)
        t_ours = median_ms(lambda n=n, r=repl: rustrnn.multinomial(w, n, r), args.repeat)
        row(f"multinomial(num_samples={n}, replacement={repl})", t_torch, t_ours)

    logits = torch.randn(64, 50000) * 3
    for kw in [{}, {"top_k": 50}, {"top_p": 0.9}]:
        t_torch = median_ms(lambda kw=kw: torch_sample(logits, 0.8, **kw), args.repeat)
        t_ours = median_ms(lambda kw=kw: rustrnn.sample(logits, 0.8, **kw), args.repeat)
        row(f"sample([64, 50000], temperature=0.8, {kw})", t_torch, t_ours)

    one = torch.randn(50000)
    t_torch = median_ms(lambda: torch_sample(one, 0.8, top_k=50), args.repeat * 5)
    t_ours = median_ms(lambda: rustrnn.sample(one, 0.8, top_k=50), args.repeat * 5)
    row("sample([50000], temperature=0.8, top_k=50)", t_torch, t_ours)


if __name__ == "__main__":
    main()
