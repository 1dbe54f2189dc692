"""Vocabularies of millions of structured tokens: Vocab.load and Vocab.build against a
Python dict, in one process.

Tokens that share long prefixes or differ only in a few digits are where a weak hash
function puts many keys into few buckets (the time then grows faster than the count).
Two families, each at every size asked for:

* ``w<i>``: ``"w0"``, ``"w1"``, ... (a shared prefix, then a counter);
* ``digits``: distinct 8-digit numbers, ``99_999_999 - 7 i``.

For each: ``Vocab.load`` of a vocabulary file holding them, against ``json.load`` of the
same file and a ``{token: id}`` dict; and ``Vocab.build(text, level="word")`` of the
tokens separated by spaces, against ``str.split``, ``collections.Counter`` and the same
ordering (specials, then frequency, then token) into a dict. Both sides must agree on
the ids. Prints seconds and the ratio rustrnn / Python (the target is at most 2). Not a
test: nothing here gates CI.

    python bench/bench_vocab_scale.py [--sizes 1000000,5000000] [--repeat 1]
"""

import argparse
import collections
import json
import os
import tempfile

import torch
from bench_vocab import best_of  # bench/ is the script directory
from rustrnn import Vocab

SPECIALS = ["<unk>", "<eos>"]


def tokens(family, n):
    if family == "w<i>":
        return [f"w{i}" for i in range(n)]
    return [str(99_999_999 - 7 * i) for i in range(n)]


def python_load(path):
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    return {t: i for i, t in enumerate(doc["tokens"])}


def python_build(text):
    counts = collections.Counter(text.split())
    for s in SPECIALS:
        counts.pop(s, None)
    order = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return {t: i for i, t in enumerate(SPECIALS + [t for t, _ in order])}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000000,5000000", help="token counts, comma-separated")
    ap.add_argument("--repeat", type=int, default=1, help="timed runs, best kept (default 1)")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; best of {args.repeat}")
    print(f"{'family':7} {'tokens':>9} {'what':5} {'rustrnn s':>10} {'python s':>9} {'ratio':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        for n in [int(s) for s in args.sizes.split(",")]:
            for family in ("w<i>", "digits"):
                toks = tokens(family, n)
                path = os.path.join(tmp, "vocab.json")
                doc = {
                    "format": "rustrnn.vocab",
                    "version": 1,
                    "level": "word",
                    "lower": False,
                    "specials": SPECIALS,
                    "tokens": SPECIALS + toks,
                }
                with open(path, "w", encoding="utf-8") as f:
                    json.dump(doc, f)
                t_ours, vocab = best_of(args.repeat, Vocab.load, path)
                t_py, stoi = best_of(args.repeat, python_load, path)
                assert len(vocab) == len(stoi) and vocab[toks[-1]] == stoi[toks[-1]]
                print(
                    f"{family:7} {n:>9,} {'load':5} {t_ours:>10.2f} {t_py:>9.2f} "
                    f"{t_ours / t_py:>5.2f}x"
                )
                text = " ".join(toks)
                t_ours, vocab = best_of(args.repeat, Vocab.build, text, "word")
                t_py, stoi = best_of(args.repeat, python_build, text)
                assert len(vocab) == len(stoi)
                assert all(vocab[t] == stoi[t] for t in (toks[0], toks[n // 2], toks[-1]))
                print(
                    f"{family:7} {n:>9,} {'build':5} {t_ours:>10.2f} {t_py:>9.2f} "
                    f"{t_ours / t_py:>5.2f}x"
                )
                del toks, text, vocab, stoi


if __name__ == "__main__":
    main()
