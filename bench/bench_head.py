"""The fused, chunked head: rustrnn.functional.linear_cross_entropy forward and backward
against F.cross_entropy(F.linear(x, w, b), y) with autograd, at word-LM shapes.

Run: python bench/bench_head.py [--rounds R] [--dtype float32|float64] [--quick]
         [--chunks 128,256,512] [--measure-memory] [--system-malloc]

Both sides compute the mean loss and the gradients of input, weight and bias from the
same float32 operands, in this one process, interleaved round by round; the time is the
best of R rounds. The memory column is the head's largest intermediate, computed: the
logits torch materialises (N x V, and autograd keeps the log-softmax beside them)
against the chunk rustrnn holds (one chunk x V buffer); with --measure-memory, the
peak resident growth of each side is also measured in a child process. --chunks times
the fused pass at other rows per chunk too (the measurement the default was chosen by).
"""

import argparse
import platform
import subprocess
import sys
import time

import rustrnn
import steady_malloc
import torch
import torch.nn.functional as F
from rustrnn import _rustrnn
from rustrnn.functional import linear_cross_entropy

SHAPES = [(n, h, v) for n in (700, 2240) for h in (200, 650) for v in (10_000, 33_278)]
QUICK = [(700, 200, 10_000), (700, 650, 33_278)]


def operands(n, h, v, dtype):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, h, dtype=dtype, generator=g).requires_grad_()
    w = (torch.randn(v, h, dtype=dtype, generator=g) * 0.05).requires_grad_()
    b = (torch.randn(v, dtype=dtype, generator=g) * 0.1).requires_grad_()
    y = torch.randint(0, v, (n,), generator=g)
    return x, w, b, y


def fused(x, w, b, y):
    return torch.autograd.grad(linear_cross_entropy(x, w, y, b), (x, w, b))


def fused_at(rows):
    """The fused forward and backward at ``rows`` per chunk, through the binding."""

    def run(x, w, b, y):
        _, *grads = _rustrnn.linear_cross_entropy(
            x, w, y, b, "mean", -100, (True, True, True), chunk_rows=rows
        )
        return grads

    return run


def plain(x, w, b, y):
    return torch.autograd.grad(F.cross_entropy(F.linear(x, w, b), y), (x, w, b))


def timed(f, *args):
    t = time.perf_counter()
    out = f(*args)
    return (time.perf_counter() - t) * 1e3, out


def mib(elements, dtype):
    return elements * torch.empty(0, dtype=dtype).element_size() / 2**20


def peak_rss_growth(side, n, h, v, dtype):
    """The peak resident-set growth (MiB) of one forward+backward in a fresh child
    (the high-water mark, so the first call: the gradients it returns included)."""
    # VmHWM, not ru_maxrss: a child's ru_maxrss starts at its parent's.
    code = (
        "import re, sys, torch, rustrnn\n"
        "sys.path.insert(0, 'bench')\n"
        "import bench_head as B\n"
        "hwm = lambda: int(re.search(r'VmHWM:\\s*(\\d+)', open('/proc/self/status').read())[1])\n"
        f"args = B.operands({n}, {h}, {v}, torch.{dtype})\n"
        "before = hwm()\n"
        f"B.{side}(*args)\n"
        "print((hwm() - before) / 1024)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(r.stdout.split()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--quick", action="store_true", help="two shapes only")
    ap.add_argument("--measure-memory", action="store_true")
    ap.add_argument("--system-malloc", action="store_true", help="glibc's default malloc")
    ap.add_argument("--chunks", default="", help="rows per chunk to time as well, e.g. 128,512")
    args = ap.parse_args()
    allocator = steady_malloc.ensure(sys.argv)
    dtype = getattr(torch, args.dtype)
    chunks = [int(c) for c in args.chunks.split(",") if c]
    print(
        f"machine: {platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}, rustrnn {rustrnn.__version__}, {args.dtype} CPU, "
        f"best of {args.rounds} interleaved rounds; forward + backward of the mean loss"
    )
    print(allocator)
    print(
        f"{'N':>5} {'H':>4} {'V':>6} {'rustrnn ms':>10} {'torch ms':>9} {'ratio':>6} "
        f"{'chunk':>5} {'logits MiB':>10} {'chunk MiB':>9}"
        + ("  measured MiB (rustrnn / torch)" if args.measure_memory else "")
        + "".join(f" {f'rows={c}':>12}" for c in chunks)
    )
    for n, h, v in QUICK if args.quick else SHAPES:
        ops = operands(n, h, v, dtype)
        sides = {"fused": fused, "plain": plain, **{c: fused_at(c) for c in chunks}}
        best = {side: float("inf") for side in sides}
        outs = {}
        for _ in range(args.rounds):
            for side, f in sides.items():
                t, outs[side] = timed(f, *ops)
                best[side] = min(best[side], t)
        got, want = outs["fused"], outs["plain"]
        for g, wg in zip(got, want):  # the same gradients, or the times mean nothing
            torch.testing.assert_close(g, wg, rtol=1e-4, atol=1e-5)
        chunk = _rustrnn.linear_cross_entropy_chunk_rows(n, v)
        line = (
            f"{n:>5} {h:>4} {v:>6} {best['fused']:>10.1f} {best['plain']:>9.1f} "
            f"{best['plain'] / best['fused']:>5.2f}x {chunk:>5} {mib(n * v, dtype):>10.1f} "
            f"{mib(chunk * v, dtype):>9.1f}"
        )
        if args.measure_memory:
            mem = [peak_rss_growth(side, n, h, v, args.dtype) for side in ("fused", "plain")]
            line += f"  {mem[0]:>14.0f} / {mem[1]:.0f}"
        for c in chunks:
            line += f" {best[c]:>7.1f} {best['plain'] / best[c]:.2f}x"
        print(line, flush=True)


if __name__ == "__main__":
    main()
