"""What torch.compile costs a rustrnn stack: the compiled path's custom ops against eager.

Compiled, the backward op recomputes the stack's forward (a custom op cannot carry the
forward's Tape; see rustrnn/nn/_ops.py), so a training step runs the forward twice.

Run: python bench/bench_compile.py [--steps N] [--rounds R] [--kinds lstm,gru,rnn]
       [--backends aot_eager,inductor]
Prints ms per training step and per inference call of the model of bench_rnn.py (embedding,
stack, linear head) eager and compiled, and the ratios (>1 means the compiled path is
slower), all measured in this one process on this machine.
"""

import argparse
import platform
import sys

import rustrnn
import steady_malloc
import torch
from bench_rnn import LAYERS, VOCAB, B, E, H, Model, T, measure


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds; best kept")
    ap.add_argument("--kinds", default="lstm,gru,rnn")
    ap.add_argument("--backends", default="aot_eager,inductor")
    ap.add_argument("--system-malloc", action="store_true", help="glibc's default malloc")
    args = ap.parse_args()
    allocator = steady_malloc.ensure(sys.argv)
    torch.manual_seed(0)
    print(
        f"machine: {platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}; T={T} B={B} E={E} H={H} layers={LAYERS} "
        f"vocab={VOCAB} float32 CPU"
    )
    print(allocator)
    print(f"{'kind':5} {'path':10} {'train ms':>9} {'infer ms':>9}")
    stacks = {"lstm": rustrnn.LSTM, "gru": rustrnn.GRU, "rnn": rustrnn.RNN}
    backends = args.backends.split(",")
    for kind in args.kinds.split(","):
        model = Model(stacks[kind](E, H, num_layers=LAYERS))
        paths = {"eager": model}
        for backend in backends:
            torch._dynamo.reset()
            paths[backend] = torch.compile(model, fullgraph=True, backend=backend)
            measure(paths[backend], 1)  # compile outside the timed rounds
        results = {name: (float("inf"), float("inf")) for name in paths}
        for _ in range(args.rounds):
            for name, fn in paths.items():
                train_s, infer_s = measure(fn, args.steps)
                best = results[name]
                results[name] = (min(best[0], train_s), min(best[1], infer_s))
        for name, (train_s, infer_s) in results.items():
            print(f"{kind:5} {name:10} {train_s * 1e3:9.1f} {infer_s * 1e3:9.1f}")
        eager = results["eager"]
        for backend in backends:
            got = results[backend]
            print(
                f"{kind:5} {backend} vs eager: train {got[0] / eager[0]:.2f}x, "
                f"inference {got[1] / eager[1]:.2f}x"
            )


if __name__ == "__main__":
    main()
