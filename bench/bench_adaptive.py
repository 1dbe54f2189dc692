"""The adaptive softmax head against the full one, and against plain PyTorch.

A word-level model on a synthetic Zipf corpus (``--vocab`` word types, frequencies
proportional to 1 / rank**1.1, so the vocabulary's frequency order is the ranks'). Four
recipes train the same steps from the same weights, interleaved round by round (best
of ``--rounds``): rustrnn.train with ``head="full"`` and ``head="adaptive"``, and
word_language_model's loop over nn.Embedding + nn.LSTM + nn.Linear (cross-entropy) or
nn.AdaptiveLogSoftmaxWithLoss, with Adam. Then scoring: ``model.score`` of the
validation lines against plain torch's forward and the head's target log-probabilities
(``AdaptiveLogSoftmaxWithLoss(...).output``, or log_softmax + gather) over the same lines,
one padded batch. Prints tokens/s and the ratios (>1: the first is faster).

Run: python bench/bench_adaptive.py [--vocab 20000] [--steps 20] [--rounds 3]
"""

from __future__ import annotations

import argparse
import time

import rustrnn
import torch
import torch.nn.functional as F
from torch import nn


def zipf_corpus(types: int, tokens: int, seed: int = 0) -> str:
    g = torch.Generator().manual_seed(seed)
    probs = 1.0 / torch.arange(1, types + 1, dtype=torch.float64) ** 1.1
    ids = torch.multinomial(probs, tokens, replacement=True, generator=g).tolist()
    words = [f"w{i}" for i in ids]
    return "\n".join(" ".join(words[i : i + 20]) for i in range(0, len(words), 20))


class Plain(nn.Module):
    def __init__(self, model):
        super().__init__()
        cfg = model.config
        v, e, h = len(model.vocab), cfg["embed_size"], cfg["hidden_size"]
        self.embedding = nn.Embedding(v, e)
        self.rnn = nn.LSTM(e, h, cfg["num_layers"])
        if cfg["head"] == "adaptive":
            self.head = nn.AdaptiveLogSoftmaxWithLoss(h, v, cfg["cutoffs"], cfg["div_value"])
        else:
            self.head = nn.Linear(h, v)
        self.load_state_dict(model.state_dict())
        self.adaptive = cfg["head"] == "adaptive"

    def loss(self, x, y, state=None, reduction="mean"):
        out, state = self.rnn(self.embedding(x), state)
        flat, target = out.reshape(-1, out.size(-1)), y.reshape(-1)
        if self.adaptive:
            logp = self.head(flat, target).output
        else:
            logp = F.log_softmax(self.head(flat), -1).gather(1, target.unsqueeze(1)).squeeze(1)
        return (-logp.mean() if reduction == "mean" else -logp), state


def batchify(ids, bsz):
    n = ids.size(0) // bsz
    return ids[: n * bsz].view(bsz, -1).t().contiguous()


def torch_train(ref, ids, args):
    data = batchify(ids, args.batch)
    opt = torch.optim.Adam(ref.parameters(), lr=1e-3)
    state = None
    start = time.perf_counter()
    for i in range(args.steps):
        x = data[i * args.bptt : (i + 1) * args.bptt]
        y = data[i * args.bptt + 1 : (i + 1) * args.bptt + 1]
        state = None if state is None else tuple(s.detach() for s in state)
        opt.zero_grad()
        loss, state = ref.loss(x, y, state)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ref.parameters(), 0.25)
        opt.step()
    return time.perf_counter() - start


def ours_train(model, ids, args):
    start = time.perf_counter()
    rustrnn.train(model, ids, batch_size=args.batch, bptt=args.bptt, max_steps=args.steps,
                  lr=1e-3, clip=0.25, progress=False)  # fmt: skip
    return time.perf_counter() - start


def torch_score(ref, vocab, lines):
    eos = vocab.eos_id
    seqs = [[eos] + vocab.encode(line).tolist() + [eos] for line in lines]
    longest = max(len(s) for s in seqs)
    pad = torch.full((longest, len(seqs)), eos)
    for j, s in enumerate(seqs):
        pad[: len(s), j] = torch.tensor(s)
    start = time.perf_counter()
    with torch.no_grad():
        ref.loss(pad[:-1], pad[1:], reduction="none")
    return time.perf_counter() - start


def ours_score(model, lines):
    start = time.perf_counter()
    model.score(lines)
    return time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vocab", type=int, default=20000)
    ap.add_argument("--tokens", type=int, default=300_000)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--bptt", type=int, default=32)
    ap.add_argument("--hidden", type=int, default=256)
    args = ap.parse_args()
    text = zipf_corpus(args.vocab, args.tokens)
    vocab = rustrnn.Vocab.build(text, level="word")
    ids = vocab.encode(text)
    lines = text.splitlines()[:400]
    torch.manual_seed(0)
    models = {}
    for head in ("full", "adaptive"):
        torch.manual_seed(0)
        models[head] = rustrnn.LanguageModel(
            vocab, 128, args.hidden, 1, dropout=0.0, head=head
        ).eval()
    print(
        f"V={len(vocab)}, cutoffs={models['adaptive'].config['cutoffs']}, "
        f"hidden={args.hidden}, batch={args.batch}x{args.bptt}, {args.steps} steps, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    best = {}
    for _ in range(args.rounds):
        for head, model in models.items():
            snapshot = {k: v.clone() for k, v in model.state_dict().items()}
            ref = Plain(model)
            runs = {
                f"rustrnn train {head}": (ours_train, model, ids, args),
                f"torch train {head}": (torch_train, ref, ids, args),
                f"rustrnn score {head}": (ours_score, model, lines),
                f"torch score {head}": (torch_score, ref, vocab, lines),
            }
            for name, (fn, *fn_args) in runs.items():
                t = fn(*fn_args)
                best[name] = min(best.get(name, t), t)
            model.load_state_dict(snapshot)
    train_tokens = args.steps * args.batch * args.bptt
    score_tokens = sum(len(vocab.tokenize(line)) + 1 for line in lines)
    for name, t in best.items():
        n = train_tokens if "train" in name else score_tokens
        print(f"{name:24s} {n / t:12,.0f} tokens/s")

    pairs = [
        ("rustrnn {} adaptive", "rustrnn {} full"),
        ("rustrnn {} adaptive", "torch {} adaptive"),
        ("torch {} adaptive", "torch {} full"),
    ]
    for what in ("train", "score"):
        for a, b in pairs:
            a, b = a.format(what), b.format(what)
            print(f"{a + ' / ' + b:48s} {best[b] / best[a]:.2f}x")


if __name__ == "__main__":
    main()
