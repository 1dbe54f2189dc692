"""NGramLM: fit and scoring speed, against the plain-Python counting most tutorials use.

* Fit (count + modified Kneser-Ney estimate) of an order-5 model on the embedded default
  corpus at char level (~465 K characters), and on the same corpus repeated at word level
  to about 1 M words.
* The baseline counts every n-gram of orders 1..5 with ``collections.Counter`` over the
  sentences (``<s> w1 .. wm </s>``), already tokenized (its tokenization is not timed;
  rustrnn's fit time includes tokenizing the text). It does no estimation at all.
* Scoring: ``log_prob`` of the whole text (one stream) and ``score`` of its lines, in
  tokens per second; KenLM's ``Model.score`` on the same lines when ``kenlm`` is installed.
* Memory: the growth of the process's peak RSS during the word-level fit.

Not a test: nothing here gates CI.

    python bench/bench_ngram.py [--order 5] [--words 1000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
from collections import Counter
from pathlib import Path

import torch  # noqa: F401  (before rustrnn)
from bench_vocab import best_of  # bench/ is the script directory
from rustrnn import NGramLM, Vocab
from rustrnn.corpus import default_corpus


def counter_counts(sentences, order):
    """The tutorial way: one Counter per order over zipped shifted lists."""
    counts = [Counter() for _ in range(order + 1)]
    for s in sentences:
        padded = ["<s>"] + s + ["</s>"]
        for n in range(1, order + 1):
            counts[n].update(zip(*[padded[i:] for i in range(n)]))
    return counts


def row(label, seconds, tokens):
    rate = f"  {tokens / seconds / 1e6:6.2f} M tok/s" if tokens else ""
    print(f"  {label:<34} {seconds:8.3f} s{rate}")


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(name, text, level, order, repeat, kenlm):
    vocab = Vocab.build(text, level=level)
    sentences = [vocab.tokenize(line) for line in text.splitlines()]
    n_tokens = sum(len(s) + 1 for s in sentences)
    print(f"\n{name}: {len(text):,} characters, {len(sentences):,} lines, {n_tokens:,} tokens")
    rss0 = peak_rss_mb()
    t_fit, lm = best_of(repeat, NGramLM.fit, text, vocab, order)
    rss1 = peak_rss_mb()
    t_py, _ = best_of(1, counter_counts, sentences, order)
    print(f"  n-grams per order: {lm.counts} ({sum(lm.counts):,} in all)")
    row("fit (count + estimate), rustrnn", t_fit, n_tokens)
    row("count only, collections.Counter", t_py, n_tokens)
    print(f"  {'ratio (Counter / rustrnn fit)':<34} {t_py / t_fit:8.1f}x")
    print(f"  {'peak RSS growth during the fits':<34} {rss1 - rss0:8.1f} MB")
    t_lp, (_, per_token) = best_of(repeat, lm.log_prob, text)
    row("log_prob of the text (one stream)", t_lp, per_token.numel())
    t_sc, _ = best_of(repeat, lm.score, text.splitlines())
    row("score(lines)", t_sc, n_tokens)
    if kenlm is not None and level == "word":
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "m.arpa"
            t_save, _ = best_of(1, lm.save_arpa, path)
            t_load, _ = best_of(1, NGramLM.load_arpa, path)
            row("save_arpa", t_save, None)
            row("load_arpa", t_load, None)
            km = kenlm.Model(str(path))
            spaced = [" ".join(s) for s in sentences]
            t_k, _ = best_of(repeat, lambda: [km.score(s) for s in spaced])
            row("kenlm.Model.score, line by line", t_k, n_tokens)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--order", type=int, default=5)
    ap.add_argument("--words", type=int, default=1_000_000, help="word-level corpus size")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    try:
        import kenlm
    except ImportError:
        kenlm = None
    corpus = default_corpus()
    run("char level, default corpus", corpus, "char", args.order, args.repeat, kenlm)
    words_once = len(Vocab.build(corpus, level="word").tokenize(corpus))
    copies = -(-args.words // words_once)
    run(
        f"word level, default corpus x{copies}",
        corpus * copies,
        "word",
        args.order,
        args.repeat,
        kenlm,
    )


if __name__ == "__main__":
    main()
