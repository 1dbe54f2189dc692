"""PackedSequence speed: rustrnn against torch.nn on the same packed batch, and
rustrnn's packed step against its own padded step.

Run: python bench/bench_packed.py [--steps N] [--rounds R] [--kinds lstm,gru,rnn]

The batch: 32 sequences with lengths uniform in [1, 64] (seeded), E=128, H=256,
2 layers, float32 CPU. A training step is forward + backward of a sum over the
packed outputs; inference is the forward under no_grad. Prints ms per step and
the ratios (>1 means rustrnn is faster), all measured in this one process, the
paths interleaved round by round and each keeping its best round.
"""

import argparse
import platform
import sys

import rustrnn
import steady_malloc
import torch
from bench_rnn import timed
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

T, B, E, H, LAYERS = 64, 32, 128, 256, 2

KINDS = {
    "lstm": (rustrnn.LSTM, nn.LSTM),
    "gru": (rustrnn.GRU, nn.GRU),
    "rnn": (rustrnn.RNN, nn.RNN),
}


def measure(module, x, steps):
    def train_step():
        module.zero_grad(set_to_none=True)
        out, _ = module(x)
        data = out.data if hasattr(out, "batch_sizes") else out
        data.sum().backward()

    def infer():
        with torch.no_grad():
            module(x)

    return timed(train_step, steps, warmup=5), timed(infer, steps, warmup=5)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds; best kept")
    ap.add_argument("--kinds", default="lstm,gru,rnn")
    ap.add_argument("--system-malloc", action="store_true", help="glibc's default malloc")
    args = ap.parse_args()
    allocator = steady_malloc.ensure(sys.argv)
    torch.manual_seed(0)
    lengths = torch.randint(1, T + 1, (B,))
    real = int(lengths.sum())
    padded = torch.randn(T, B, E)
    packed = pack_padded_sequence(padded, lengths, enforce_sorted=False)
    print(
        f"machine: {platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}; B={B} lengths in [1, {T}] ({real} real tokens of "
        f"{T * B}), E={E} H={H} layers={LAYERS} float32 CPU"
    )
    print(allocator)
    print(f"{'kind':5} {'path':16} {'train ms':>9} {'infer ms':>9}")
    for kind in args.kinds.split(","):
        ours_cls, torch_cls = KINDS[kind]
        ours = ours_cls(E, H, num_layers=LAYERS)
        ref = torch_cls(E, H, num_layers=LAYERS)
        ref.load_state_dict(ours.state_dict())
        paths = {
            "rustrnn packed": (ours, packed),
            "torch.nn packed": (ref, packed),
            "rustrnn padded": (ours, padded),
            "torch.nn padded": (ref, padded),
        }
        results = {name: (float("inf"), float("inf")) for name in paths}
        for _ in range(args.rounds):
            for name, (module, x) in paths.items():
                train_s, infer_s = measure(module, x, args.steps)
                best = results[name]
                results[name] = (min(best[0], train_s), min(best[1], infer_s))
        for name, (train_s, infer_s) in results.items():
            print(f"{kind:5} {name:16} {train_s * 1e3:9.1f} {infer_s * 1e3:9.1f}")
        ours_p, ref_p = results["rustrnn packed"], results["torch.nn packed"]
        ours_d = results["rustrnn padded"]
        share = real / (T * B)
        print(
            f"{kind:5} rustrnn vs torch.nn, packed: train {ref_p[0] / ours_p[0]:.2f}x, "
            f"inference {ref_p[1] / ours_p[1]:.2f}x"
        )
        print(
            f"{kind:5} rustrnn packed / (real share {share:.2f} x rustrnn padded): "
            f"train {ours_p[0] / (share * ours_d[0]):.2f}, "
            f"inference {ours_p[1] / (share * ours_d[1]):.2f} (target <= 1.3)"
        )


if __name__ == "__main__":
    main()
