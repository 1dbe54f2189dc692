"""Training speed and quality: rustrnn.train against the same recipe in plain PyTorch.

Both sides start from the same weights and train a character-level language model on
the same corpus (the stdlib ``pydoc_data.topics`` text) with the same optimizer, clipping,
dropout, batch size and bptt; the PyTorch side is word_language_model's loop over
nn.Embedding + nn.LSTM + nn.Linear. Prints tokens/s of both and their ratio (>1 means
rustrnn is faster), the validation perplexity of both after the same number of steps
(measured the same way), and the process RSS at the end of each epoch.

The two sides draw different dropout masks (rustrnn's generator and torch's bernoulli_),
so single runs part ways; early in training the validation perplexity of one recipe
varies by several percent from seed to seed. The quality comparison is therefore over
`--seeds` runs per side, each pair starting from the same new weights.

With ``--word``: word level on a real word corpus (Jane Austen's novels,
``bench/word_corpus.py``: 772K training tokens, the 10,000 most frequent words), with
word_language_model's own recipe (emsize = nhid = 200, 2 layers, dropout 0.2, SGD lr 20,
clip 0.25, batch 20, bptt 35), where the output layer dominates a step.

Run: python bench/bench_train.py [--steps 300] [--epoch-steps 150] [--seeds 3] [--cell lstm]
[--word] [--head adaptive] [--device cuda] [--quick]  (``--quick``: 100 steps, epochs of 50,
1 seed). ``--head adaptive``: rustrnn trains an adaptive softmax head (default cutoffs, or
``--cutoffs 1000,5000``)
against the torch loop's full softmax.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys

import device_timing
import rustrnn
import steady_malloc
import torch
import torch.nn.functional as F
from rustrnn.corpus import default_corpus, split
from torch import nn

CHAR = dict(batch=32, bptt=64, embed=128, hidden=256, optimizer="adam", lr=2e-3)
# pytorch/examples word_language_model's defaults.
WORD = dict(batch=20, bptt=35, embed=200, hidden=200, optimizer="sgd", lr=20.0)


def rss_mib() -> float:
    """The current resident set size (Linux /proc; psutil elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        import psutil

        return psutil.Process().memory_info().rss / 2**20


class PlainLM(nn.Module):
    def __init__(self, ntoken, cell, embed, hidden, layers, dropout):
        super().__init__()
        cls = {"lstm": nn.LSTM, "gru": nn.GRU}[cell]
        self.embedding = nn.Embedding(ntoken, embed)
        self.drop = nn.Dropout(dropout)
        self.rnn = cls(embed, hidden, layers, dropout=dropout if layers > 1 else 0.0)
        self.head = nn.Linear(hidden, ntoken)

    def forward(self, ids, state=None):
        out, state = self.rnn(self.drop(self.embedding(ids)), state)
        return self.head(self.drop(out)), state


def batchify(ids, bsz):
    n = ids.size(0) // bsz
    return ids[: n * bsz].view(bsz, -1).t().contiguous()


def detach(state):
    if state is None:
        return None
    return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()


def torch_train(model, ids, args, epochs):
    """word_language_model's training loop, with torch.optim and clip_grad_norm_."""
    data = batchify(ids, args.batch)
    opt = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}[args.optimizer](
        model.parameters(), lr=args.lr
    )
    model.train()
    step, rss = 0, []
    for _ in range(epochs):
        state = None
        for i in range(0, data.size(0) - 1, args.bptt):
            if step == args.steps:
                break
            t = min(args.bptt, data.size(0) - 1 - i)
            x, y = data[i : i + t], data[i + 1 : i + 1 + t]
            state = detach(state)
            opt.zero_grad()
            out, state = model(x, state)
            loss = F.cross_entropy(out.view(-1, out.size(-1)), y.reshape(-1))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
            opt.step()
            step += 1
        rss.append(rss_mib())
    return step, rss


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help="training steps per side and seed (300; --quick: 100)",
    )
    p.add_argument(
        "--epoch-steps", type=int, default=None, help="steps in one epoch (150; --quick: 50)"
    )
    p.add_argument(
        "--seeds",
        type=int,
        default=None,
        help="runs per side, each from new weights (3; --quick: 1)",
    )
    p.add_argument("--quick", action="store_true", help="fewer steps and seeds")
    p.add_argument("--word", action="store_true", help="word level, word_language_model's recipe")
    p.add_argument("--cell", default="lstm", choices=["lstm", "gru"])
    # None: the char recipe's value, or with --word word_language_model's.
    p.add_argument("--batch", type=int, default=None, help="32; --word: 20")
    p.add_argument("--bptt", type=int, default=None, help="64; --word: 35")
    p.add_argument("--embed", type=int, default=None, help="128; --word: 200")
    p.add_argument("--hidden", type=int, default=None, help="256; --word: 200")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--dropout", type=float, default=0.2)
    p.add_argument("--optimizer", default=None, choices=["adam", "sgd"], help="adam; --word: sgd")
    p.add_argument("--lr", type=float, default=None, help="2e-3; --word: 20")
    p.add_argument("--clip", type=float, default=0.25)
    p.add_argument(
        "--head",
        default="full",
        choices=["full", "adaptive"],
        help="rustrnn's head (the torch loop keeps nn.Linear); adaptive: default cutoffs",
    )
    p.add_argument(
        "--cutoffs",
        type=lambda s: [int(c) for c in s.split(",")],
        default=None,
        help="the adaptive head's cutoffs, e.g. 1000,5000 (default: the model's default)",
    )
    p.add_argument("--system-malloc", action="store_true", help="glibc's default malloc")
    device_timing.add_argument(p)
    args = p.parse_args()
    device = device_timing.parse(args.device)
    for name, full, quick in (("steps", 300, 100), ("epoch_steps", 150, 50), ("seeds", 3, 1)):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    recipe = WORD if args.word else CHAR
    for name, value in recipe.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    allocator = steady_malloc.ensure(sys.argv)
    clock = device_timing.now

    if args.word:
        from word_corpus import word_corpus

        train_text, valid_text, _ = word_corpus()
        vocab = rustrnn.Vocab.build(train_text, level="word", max_size=10_000)
    else:
        train_text, valid_text = split(default_corpus())
        vocab = rustrnn.Vocab.build(train_text, level="char")
    # Each epoch is `epoch_steps` windows: B streams of epoch_steps * bptt + 1 tokens.
    train_ids = vocab.encode(train_text)[: args.batch * (args.epoch_steps * args.bptt + 1)]
    valid_ids = vocab.encode(valid_text)[:20_000]
    # On the device once, as rustrnn.train would put them, for both sides.
    train_ids, valid_ids = train_ids.to(device), valid_ids.to(device)
    epochs = math.ceil(args.steps / args.epoch_steps)
    tokens = args.steps * args.batch * args.bptt

    def lm(head):
        return rustrnn.LanguageModel(
            vocab,
            args.embed,
            args.hidden,
            args.layers,
            cell=args.cell,
            dropout=args.dropout,
            head=head,
            **({"cutoffs": args.cutoffs} if head == "adaptive" and args.cutoffs else {}),
        )

    def new_pair(seed):
        torch.manual_seed(seed)
        ours = lm(args.head)
        ref = PlainLM(len(vocab), args.cell, args.embed, args.hidden, args.layers, args.dropout)
        # The same embedding and stack; with the adaptive head, the reference keeps its
        # own (full) head, as the recipe it is compared with has.
        ref.load_state_dict(ours.state_dict(), strict=args.head == "full")
        return ours.to(device), ref.to(device)

    # Models that score each side's weights with rustrnn.evaluate (eval mode, no dropout).
    scorers = {"full": lm("full").to(device), args.head: lm(args.head).to(device)}

    def perplexity(state_dict, head):
        scorers[head].load_state_dict(state_dict, strict=True)
        return rustrnn.evaluate(scorers[head], valid_ids, batch_size=10, bptt=args.bptt)

    print(
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; {'word' if args.word else 'char'}-level "
        f"{args.cell}, vocab {len(vocab)}, E={args.embed} H={args.hidden} layers={args.layers}, "
        f"B={args.batch} bptt={args.bptt}, {args.optimizer} lr={args.lr} clip={args.clip} "
        f"dropout={args.dropout}, rustrnn head {args.head}"
        + (f" (cutoffs {args.cutoffs})" if args.cutoffs else "")
        + f"; {args.steps} steps "
        f"({epochs} epochs of {args.epoch_steps}) per run, {args.seeds} seeds"
        + ("" if device.type == "cpu" else f"; on {device_timing.describe(device)}")
    )
    print(allocator)
    print(f"RSS before training: {rss_mib():.0f} MiB")

    # Warm-up (allocator, oneDNN primitives) on throwaway copies.
    warm, warm_ref = new_pair(0)
    rustrnn.train(
        warm, train_ids, batch_size=args.batch, bptt=args.bptt, max_steps=2, progress=False
    )
    torch_train(warm_ref, train_ids, argparse.Namespace(**{**vars(args), "steps": 2}), 1)
    del warm, warm_ref

    def run_ours(model, seed):
        rss = []

        def on_step(step, m):
            if m["event"] == "step" and step % args.epoch_steps == 0:
                rss.append(rss_mib())

        torch.manual_seed(seed)
        t0 = clock(device)
        hist = rustrnn.train(
            model,
            train_ids,
            batch_size=args.batch,
            bptt=args.bptt,
            epochs=epochs,
            max_steps=args.steps,
            optimizer=args.optimizer,
            lr=args.lr,
            clip=args.clip,
            progress=False,
            callback=on_step,
        )
        elapsed = clock(device) - t0
        assert len(hist.steps) == args.steps
        return elapsed, rss

    def run_ref(model, seed):
        torch.manual_seed(seed)
        t0 = clock(device)
        steps, rss = torch_train(model, train_ids, args, epochs)
        elapsed = clock(device) - t0
        assert steps == args.steps
        return elapsed, rss

    # Each seed starts both sides from the same new weights; the side that goes first
    # alternates, so drift in the machine's speed hits both alike.
    times = {"ours": [], "ref": []}
    ppl = {"ours": [], "ref": []}
    rss = {}
    for seed in range(1, args.seeds + 1):
        ours, ref = new_pair(seed)
        order = [("ours", run_ours, ours), ("ref", run_ref, ref)]
        for side, run, model in order if seed % 2 else order[::-1]:
            elapsed, side_rss = run(model, 1000 + seed)
            times[side].append(elapsed)
            ppl[side].append(
                perplexity(model.state_dict(), args.head if side == "ours" else "full")
            )
            rss.setdefault(side, side_rss)

    t_ours, t_ref = sum(times["ours"]), sum(times["ref"])
    tps_ours, tps_ref = tokens * args.seeds / t_ours, tokens * args.seeds / t_ref
    mean = {k: statistics.fmean(v) for k, v in ppl.items()}
    print()
    print(f"{'':28}{'rustrnn.train':>16}{'torch loop':>16}{'ratio':>10}")
    print(f"{'tokens/s':28}{tps_ours:16,.0f}{tps_ref:16,.0f}{tps_ours / tps_ref:10.2f}")
    for i, (a, b) in enumerate(zip(times["ours"], times["ref"]), 1):
        print(
            f"{f'ms/step, seed {i}':28}{1e3 * a / args.steps:16.1f}"
            f"{1e3 * b / args.steps:16.1f}{b / a:10.2f}"
        )
    for i, (a, b) in enumerate(zip(ppl["ours"], ppl["ref"]), 1):
        print(f"{f'valid ppl, seed {i}':28}{a:16.4f}{b:16.4f}")
    print(
        f"{'valid ppl, mean':28}{mean['ours']:16.4f}{mean['ref']:16.4f}"
        f"{mean['ours'] / mean['ref']:10.3f}"
    )
    if args.seeds > 1:
        sd = {k: statistics.stdev(v) for k, v in ppl.items()}
        print(f"{'valid ppl, sd over seeds':28}{sd['ours']:16.4f}{sd['ref']:16.4f}")
    for e, (a, b) in enumerate(zip(rss["ours"], rss["ref"]), 1):
        print(f"{f'RSS after epoch {e} (MiB)':28}{a:16.0f}{b:16.0f}")


if __name__ == "__main__":
    main()
