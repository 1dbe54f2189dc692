"""Scoring many lines: LanguageModel.score (lines sorted by length and packed, in Rust)
against the plain-torch loop that scores one line at a time with the same weights.

Run: python bench/bench_score.py [--lines N] [--rounds R] [--cell lstm|gru|rnn_tanh]
                                 [--embed E] [--hidden H] [--layers L]

A word-level model (vocabulary of the embedded corpus' 5,000 most frequent words,
embedding 128, hidden 256, 2 layers by default) scores N lines of 5-40 words drawn from the corpus'
own lines. Both sides compute log P of every line with its end of line, read after a line
break; the scores are compared (relative 1e-4) and the time is the best of R interleaved
rounds, measured in this one process.
"""

import argparse
import platform
import random
import time

import rustrnn
import torch
import torch.nn.functional as F
from rustrnn.corpus import default_corpus
from torch import nn


def plain_modules(model):
    cfg = model.config
    cls = {"lstm": nn.LSTM, "gru": nn.GRU}.get(cfg["cell"], nn.RNN)
    extra = {"nonlinearity": cfg["cell"][4:]} if cls is nn.RNN else {}
    rnn = cls(cfg["embed_size"], cfg["hidden_size"], cfg["num_layers"], **extra)
    rnn.load_state_dict(model.rnn.state_dict())
    emb = nn.Embedding.from_pretrained(model.embedding.weight.detach().clone())
    head = nn.Linear(cfg["hidden_size"], len(model.vocab))
    head.load_state_dict(model.head.state_dict())
    return emb, rnn.eval(), head


def torch_loop(emb, rnn, head, encoded, eol):
    """One forward per line, the way a tutorial scores sentences."""
    out = []
    with torch.no_grad():
        for ids in encoded:
            context = torch.cat([torch.tensor([eol]), ids])
            targets = torch.cat([ids, torch.tensor([eol])])
            h, _ = rnn(emb(context).unsqueeze(1))
            logp = F.log_softmax(head(h.squeeze(1)).double(), dim=-1)
            out.append(logp.gather(1, targets.unsqueeze(1)).sum().item())
    return torch.tensor(out, dtype=torch.float64)


def peak_gflops():
    """The best float32 product rate this process gets: a 2048^3 product on
    libtorch's BLAS and on oneDNN, best of 5 each."""
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    runs = {
        "blas": lambda: torch.mm(a, b),
        "onednn": lambda: torch._C._nn.mkldnn_linear(a.to_mkldnn(), b).to_dense(),
    }
    best = float("inf")
    with torch.no_grad():
        for run in runs.values():
            run()
            for _ in range(5):
                t = time.perf_counter()
                run()
                best = min(best, time.perf_counter() - t)
    return 2 * 2048**3 / best / 1e9


def product_flops(cell, embed, hidden, layers, vocab):
    """Multiply-adds x 2 per token of the stack's and the head's products."""
    gates = {"lstm": 4, "gru": 3}.get(cell, 1) * hidden
    stack = gates * (embed + hidden) + (layers - 1) * gates * 2 * hidden
    return 2 * (stack + hidden * vocab)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cell", default="lstm")
    ap.add_argument("--embed", type=int, default=128)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=2)
    args = ap.parse_args()
    torch.manual_seed(0)
    random.seed(0)
    corpus = default_corpus()
    vocab = rustrnn.Vocab.build(corpus, level="word", max_size=5000)
    model = rustrnn.LanguageModel(
        vocab, args.embed, args.hidden, args.layers, cell=args.cell, dropout=0.0
    ).eval()
    words = [line.split() for line in corpus.splitlines() if len(line.split()) >= 5]
    lines = []
    while len(lines) < args.lines:
        w = random.choice(words)
        n = random.randint(5, 40)
        lines.append(" ".join((w * (n // len(w) + 1))[:n]))
    encoded = [vocab.encode(line) for line in lines]
    tokens = sum(len(e) + 1 for e in encoded)
    emb, rnn, head = plain_modules(model)
    eol = vocab["<eos>"]
    print(
        f"machine: {platform.machine()}, {torch.get_num_threads()} torch threads, torch "
        f"{torch.__version__}; {args.lines} lines, {tokens} tokens, V={len(vocab)}, "
        f"{args.cell} E={args.embed} H={args.hidden} {args.layers} layers float32 CPU"
    )
    best = {"rustrnn score": float("inf"), "torch loop": float("inf")}
    for _ in range(args.rounds):
        t = time.perf_counter()
        ours = model.score(lines)
        best["rustrnn score"] = min(best["rustrnn score"], time.perf_counter() - t)
        t = time.perf_counter()
        ref = torch_loop(emb, rnn, head, encoded, eol)
        best["torch loop"] = min(best["torch loop"], time.perf_counter() - t)
    worst = ((ours - ref).abs() / ref.abs()).max().item()
    for name, s in best.items():
        print(f"{name:14} {s * 1e3:9.1f} ms {tokens / s:12.0f} tok/s")
    print(
        f"rustrnn vs torch loop: {best['torch loop'] / best['rustrnn score']:.1f}x; "
        f"largest relative score difference {worst:.2e} (target 1e-4)"
    )
    # Both sides compute the same products; no scorer can beat them at the
    # machine's peak rate, so this is the most any speed-up here can be.
    flops = tokens * product_flops(args.cell, args.embed, args.hidden, args.layers, len(vocab))
    peak = peak_gflops()
    floor = flops / peak / 1e9
    print(
        f"products: {flops / 1e12:.2f} TFLOP; at this machine's measured peak "
        f"({peak:.0f} GFLOP/s) {floor * 1e3:.0f} ms, so at most "
        f"{best['torch loop'] / floor:.1f}x the torch loop; rustrnn runs at "
        f"{flops / best['rustrnn score'] / 1e9:.0f} GFLOP/s"
    )


if __name__ == "__main__":
    main()
