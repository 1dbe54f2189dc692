"""Training-step and inference speed of rustrnn stacks against torch.nn and a Python cell loop.

Run: python bench/bench_rnn.py [--steps N] [--rounds R] [--kinds lstm,gru,rnn]
[--device cuda] [--shape large] [--quick]
Prints ms per step, tokens/s and the ratios (>1 means rustrnn is faster), all measured in
this one process on this machine. ``--shape large`` is T=128, B=64, E=512, H=1024;
``--quick`` (fewer steps, rounds and warm-up calls) fits a short GPU check.
"""

import argparse
import platform
import sys
from typing import NamedTuple

import device_timing
import rustrnn
import steady_malloc
import torch
from torch import nn

LAYERS, VOCAB = 2, 100


class Shape(NamedTuple):
    T: int  # timesteps
    B: int  # batch
    E: int  # embedding (the stack's input) width
    H: int  # hidden width


SHAPES = {"default": Shape(64, 32, 128, 256), "large": Shape(128, 64, 512, 1024)}
DEFAULT = SHAPES["default"]
T, B, E, H = DEFAULT  # bench_compile.py's model is this one's at the default shape
CPU = torch.device("cpu")

KINDS = {
    "lstm": (rustrnn.LSTM, nn.LSTM, nn.LSTMCell),
    "gru": (rustrnn.GRU, nn.GRU, nn.GRUCell),
    "rnn": (rustrnn.RNN, nn.RNN, nn.RNNCell),
}


class CellLoop(nn.Module):
    """The stack written as a Python loop over torch.nn cells."""

    def __init__(self, cell_cls, lstm, shape):
        super().__init__()
        self.lstm = lstm
        self.hidden = shape.H
        E, H = shape.E, shape.H
        self.cells = nn.ModuleList([cell_cls(E if i == 0 else H, H) for i in range(LAYERS)])

    def forward(self, x):
        for cell in self.cells:
            h = x.new_zeros(x.size(1), self.hidden)
            c = x.new_zeros(x.size(1), self.hidden)
            outs = []
            for t in range(x.size(0)):
                if self.lstm:
                    h, c = cell(x[t], (h, c))
                else:
                    h = cell(x[t], h)
                outs.append(h)
            x = torch.stack(outs)
        return x, None


class Model(nn.Module):
    def __init__(self, stack, shape=DEFAULT):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, shape.E)
        self.stack = stack
        self.head = nn.Linear(shape.H, VOCAB)

    def forward(self, ids):
        out, _ = self.stack(self.embed(ids))
        return self.head(out)


def timed(fn, steps, warmup=10, device=CPU):
    for _ in range(warmup):
        fn()
    start = device_timing.now(device)
    for _ in range(steps):
        fn()
    return (device_timing.now(device) - start) / steps


def measure(model, steps, shape=DEFAULT, device=CPU, warmup=10):
    ids = torch.randint(0, VOCAB, (shape.T, shape.B), device=device)
    target = torch.randint(0, VOCAB, (shape.T, shape.B), device=device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)

    def train_step():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(ids).view(-1, VOCAB), target.view(-1))
        loss.backward()
        opt.step()

    def infer():
        with torch.no_grad():
            model(ids)

    return timed(train_step, steps, warmup, device), timed(infer, steps, warmup, device)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=None, help="timed steps (10; --quick: 5)")
    ap.add_argument(
        "--rounds", type=int, default=None, help="interleaved rounds; best kept (3; --quick: 2)"
    )
    ap.add_argument("--kinds", default="lstm,gru,rnn")
    ap.add_argument("--shape", choices=sorted(SHAPES), default="default")
    ap.add_argument("--quick", action="store_true", help="fewer steps, rounds and warm-up calls")
    ap.add_argument("--system-malloc", action="store_true", help="glibc's default malloc")
    device_timing.add_argument(ap)
    args = ap.parse_args()
    device = device_timing.parse(args.device)
    steps = args.steps if args.steps is not None else (5 if args.quick else 10)
    rounds = args.rounds if args.rounds is not None else (2 if args.quick else 3)
    warmup = 3 if args.quick else 10
    shape = SHAPES[args.shape]
    allocator = steady_malloc.ensure(sys.argv)
    torch.manual_seed(0)
    where = "CPU" if device.type == "cpu" else f"on {device_timing.describe(device)}"
    print(
        f"machine: {platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}; T={shape.T} B={shape.B} E={shape.E} H={shape.H} "
        f"layers={LAYERS} float32 {where}"
    )
    header = (
        f"{'kind':5} {'path':10} {'train ms':>9} {'train tok/s':>12} "
        f"{'infer ms':>9} {'infer tok/s':>12}"
    )
    print(allocator)
    print(header)
    for kind in args.kinds.split(","):
        ours_cls, torch_cls, cell_cls = KINDS[kind]
        paths = {
            "rustrnn": Model(ours_cls(shape.E, shape.H, num_layers=LAYERS), shape),
            "torch.nn": Model(torch_cls(shape.E, shape.H, num_layers=LAYERS), shape),
            "cell loop": Model(CellLoop(cell_cls, kind == "lstm", shape), shape),
        }
        for model in paths.values():
            model.to(device)
        # Rounds interleave the paths so drift in the machine's speed (other load,
        # clocks) hits all of them alike; each path keeps its best round.
        results = {name: (float("inf"), float("inf")) for name in paths}
        for _ in range(rounds):
            for name, model in paths.items():
                train_s, infer_s = measure(model, steps, shape, device, warmup)
                best = results[name]
                results[name] = (min(best[0], train_s), min(best[1], infer_s))
        for name, (train_s, infer_s) in results.items():
            print(
                f"{kind:5} {name:10} {train_s * 1e3:9.1f} {shape.T * shape.B / train_s:12.0f} "
                f"{infer_s * 1e3:9.1f} {shape.T * shape.B / infer_s:12.0f}"
            )
        ours = results["rustrnn"]
        for base in ("torch.nn", "cell loop"):
            ref = results[base]
            print(
                f"{kind:5} rustrnn vs {base}: train {ref[0] / ours[0]:.2f}x, "
                f"inference {ref[1] / ours[1]:.2f}x"
            )


if __name__ == "__main__":
    main()
