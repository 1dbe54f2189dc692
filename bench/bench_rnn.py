"""Training-step and inference speed of rustrnn stacks against torch.nn and a Python cell loop.

Run: python bench/bench_rnn.py [--steps N] [--rounds R] [--kinds lstm,gru,rnn]
Prints ms per step, tokens/s and the ratios (>1 means rustrnn is faster), all measured in
this one process on this machine.
"""

import argparse
import platform
import sys
import time

import rustrnn
import steady_malloc
import torch
from torch import nn

T, B, E, H, LAYERS, VOCAB = 64, 32, 128, 256, 2, 100

KINDS = {
    "lstm": (rustrnn.LSTM, nn.LSTM, nn.LSTMCell),
    "gru": (rustrnn.GRU, nn.GRU, nn.GRUCell),
    "rnn": (rustrnn.RNN, nn.RNN, nn.RNNCell),
}


class CellLoop(nn.Module):
    """The stack written as a Python loop over torch.nn cells."""

    def __init__(self, cell_cls, lstm):
        super().__init__()
        self.lstm = lstm
        self.cells = nn.ModuleList([cell_cls(E if i == 0 else H, H) for i in range(LAYERS)])

    def forward(self, x):
        for cell in self.cells:
            h = x.new_zeros(x.size(1), H)
            c = x.new_zeros(x.size(1), H)
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
    def __init__(self, stack):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, E)
        self.stack = stack
        self.head = nn.Linear(H, VOCAB)

    def forward(self, ids):
        out, _ = self.stack(self.embed(ids))
        return self.head(out)


def timed(fn, steps, warmup=10):
    for _ in range(warmup):
        fn()
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - start) / steps


def measure(model, steps):
    ids = torch.randint(0, VOCAB, (T, B))
    target = torch.randint(0, VOCAB, (T, B))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)

    def train_step():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(ids).view(-1, VOCAB), target.view(-1))
        loss.backward()
        opt.step()

    def infer():
        with torch.no_grad():
            model(ids)

    return timed(train_step, steps), timed(infer, steps)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds; best kept")
    ap.add_argument("--kinds", default="lstm,gru,rnn")
    ap.add_argument("--system-malloc", action="store_true", help="glibc's default malloc")
    args = ap.parse_args()
    allocator = steady_malloc.ensure(sys.argv)
    torch.manual_seed(0)
    print(
        f"machine: {platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}; T={T} B={B} E={E} H={H} layers={LAYERS} float32 CPU"
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
            "rustrnn": Model(ours_cls(E, H, num_layers=LAYERS)),
            "torch.nn": Model(torch_cls(E, H, num_layers=LAYERS)),
            "cell loop": Model(CellLoop(cell_cls, kind == "lstm")),
        }
        # Rounds interleave the paths so drift in the machine's speed (other load,
        # clocks) hits all of them alike; each path keeps its best round.
        results = {name: (float("inf"), float("inf")) for name in paths}
        for _ in range(args.rounds):
            for name, model in paths.items():
                train_s, infer_s = measure(model, args.steps)
                best = results[name]
                results[name] = (min(best[0], train_s), min(best[1], infer_s))
        for name, (train_s, infer_s) in results.items():
            print(
                f"{kind:5} {name:10} {train_s * 1e3:9.1f} {T * B / train_s:12.0f} "
                f"{infer_s * 1e3:9.1f} {T * B / infer_s:12.0f}"
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
