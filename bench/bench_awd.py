"""Better language models per minute: rustrnn.train with AWD-LSTM's recipe against
word_language_model's, the same model and the same wall-clock budget each.

Both runs train the same word-level LSTM (the same initial weights) on the same real word
corpus (Jane Austen's novels, ``bench/word_corpus.py``: 772K training tokens, the 10,000
most frequent words), one after the other, each for ``--budget`` seconds:

* ``plain``: pytorch/examples word_language_model's recipe (SGD lr 20, clip 0.25, batch 20,
  bptt 35, dropout 0.2, the learning rate divided by 4 when validation stops improving);
* ``awd``: ``recipe="awd"`` (weight drop 0.5, locked dropouts 0.4/0.25/0.4, embedding
  dropout 0.1, AR 2 / TAR 1, NT-ASGD lr 30, variable-length BPTT around 70, batch 20,
  weight decay 1.2e-6).

The validation perplexity is measured every ``--eval-every`` steps (eval mode; NT-ASGD's
averaged weights once it averages); the curves are printed, and with ``--plot FILE`` drawn
against wall-clock time (matplotlib). The budget is checked before each step.

Run: python bench/bench_awd.py [--budget 600] [--eval-every 200] [--plot awd.png]
"""

from __future__ import annotations

import argparse
import platform
import time

import rustrnn
import torch
from word_corpus import word_corpus


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", type=float, default=600.0, help="seconds per recipe")
    p.add_argument("--eval-every", type=int, default=200)
    p.add_argument("--embed", type=int, default=200)
    p.add_argument("--hidden", type=int, default=200)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plot", default=None, help="write both curves to this image file")
    args = p.parse_args()

    train_text, valid_text, _ = word_corpus()
    vocab = rustrnn.Vocab.build(train_text, level="word", max_size=10_000)
    train_ids, valid_ids = vocab.encode(train_text), vocab.encode(valid_text)
    torch.manual_seed(args.seed)
    start = rustrnn.LanguageModel(vocab, args.embed, args.hidden, args.layers, dropout=0.2)
    init = {k: v.clone() for k, v in start.state_dict().items()}
    print(
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; word-level LSTM E={args.embed} "
        f"H={args.hidden} x{args.layers}, vocab {len(vocab)}; {train_ids.numel():,} training "
        f"and {valid_ids.numel():,} validation tokens; {args.budget:g} s per recipe"
    )
    recipes = {
        "plain": dict(optimizer="sgd", lr=20.0, batch_size=20, bptt=35, lr_decay=0.25),
        "awd": dict(recipe="awd"),
    }
    curves = {}
    for name, options in recipes.items():
        model = rustrnn.LanguageModel(vocab, args.embed, args.hidden, args.layers, dropout=0.2)
        model.load_state_dict(init)
        times: list[float] = []
        t0 = time.perf_counter()

        def on_eval(step, m, times=times, t0=t0):
            if m["event"] == "eval":
                times.append(time.perf_counter() - t0)

        hist = rustrnn.train(
            model,
            train_ids,
            valid_ids,
            epochs=10**6,
            time_budget=args.budget,
            eval_every=args.eval_every,
            seed=args.seed + 1,
            progress=False,
            callback=on_eval,
            **options,
        )
        curves[name] = (times, hist)
        best = min(hist.valid_ppls) if hist.valid_ppls else float("nan")
        print(
            f"{name:>6}: {len(hist.steps)} steps, best validation perplexity {best:.2f}"
            + (f" (averaging from step {hist.averaged_from})" if hist.averaged_from else "")
        )

    print()
    print(f"{'seconds':>9} {'plain ppl':>10} | {'seconds':>9} {'awd ppl':>10}")
    (ta, ha), (tb, hb) = curves["plain"], curves["awd"]
    for i in range(max(len(ta), len(tb))):
        left = f"{ta[i]:9.0f} {ha.valid_ppls[i]:10.2f}" if i < len(ta) else " " * 20
        right = f"{tb[i]:9.0f} {hb.valid_ppls[i]:10.2f}" if i < len(tb) else ""
        print(f"{left} | {right}")
    best_plain, best_awd = min(ha.valid_ppls), min(hb.valid_ppls)
    print(
        f"\nbest validation perplexity in {args.budget:g} s: plain {best_plain:.2f}, "
        f"awd {best_awd:.2f} ({best_awd / best_plain:.3f}x)"
    )
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        for name, (t, h) in curves.items():
            ax.plot(t, h.valid_ppls, marker=".", label=name)
        ax.set_xlabel("seconds of training")
        ax.set_ylabel("validation perplexity")
        ax.set_yscale("log")
        ax.legend()
        ax.set_title("word_language_model recipe vs recipe='awd'")
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
        print(f"curves written to {args.plot}")


if __name__ == "__main__":
    main()
