"""Word-vector queries at scale: rustrnn.WordVectors against gensim's KeyedVectors on
the same vectors, in one process, interleaved.

Random float32 vectors (``--keys`` x ``--dim``, default 100 K x 300). For each query,
both answer the same call (and must agree on the neighbours); the best of ``--repeat``
rounds is printed in milliseconds with the ratio gensim / rustrnn (above 1: rustrnn is
faster). Also the word2vec text and binary files: save and load on both sides. Not a
test: nothing here gates CI.

    python bench/bench_vectors.py [--keys 100000] [--dim 300] [--repeat 5]
"""

import argparse
import os
import tempfile
import time

import rustrnn
import torch
from gensim.models import KeyedVectors


def timed(fn, *args, **kwargs):
    """Seconds one call takes, and what it returned."""
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t, out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(2)
    g = torch.Generator().manual_seed(0)
    vec = torch.randn(args.keys, args.dim, generator=g)
    keys = [f"w{i}" for i in range(args.keys)]
    wv = rustrnn.WordVectors(vec, keys)
    kv = KeyedVectors(args.dim)
    kv.add_vectors(keys, vec.numpy())
    kv.fill_norms()
    queries = {
        "most_similar(w1, topn=10)": lambda m: m.most_similar("w1", topn=10),
        "analogy w1 - w2 + w3": lambda m: m.most_similar(
            positive=["w1", "w3"], negative=["w2"], topn=10
        ),
        "most_similar_cosmul": lambda m: m.most_similar_cosmul(
            positive=["w1", "w3"], negative=["w2"], topn=10
        ),
        "doesnt_match(4 words)": lambda m: m.doesnt_match(["w1", "w2", "w3", "w4"]),
        "rank(w1, w2)": lambda m: m.rank("w1", "w2"),
    }
    print(f"{args.keys} keys x {args.dim}, {torch.get_num_threads()} threads")
    print(f"{'query':32} {'rustrnn ms':>11} {'gensim ms':>10} {'gensim/rustrnn':>15}")
    for name, q in queries.items():
        ours, theirs = float("inf"), float("inf")
        for _ in range(args.repeat):  # interleaved, so drift hits both sides alike
            t, a = timed(q, wv)
            ours = min(ours, t)
            t, b = timed(q, kv)
            theirs = min(theirs, t)
        if isinstance(a, list):
            assert [k for k, _ in a] == [k for k, _ in b], name
        print(f"{name:32} {ours * 1e3:11.2f} {theirs * 1e3:10.2f} {theirs / ours:15.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        for binary in (False, True):
            path = os.path.join(tmp, "v.bin" if binary else "v.txt")
            t_ours, _ = timed(wv.save_word2vec_format, path, binary=binary)
            t_theirs, _ = timed(kv.save_word2vec_format, path, binary=binary)
            l_ours, _ = timed(rustrnn.WordVectors.load_word2vec_format, path, binary=binary)
            l_theirs, _ = timed(KeyedVectors.load_word2vec_format, path, binary=binary)
            kind = "binary" if binary else "text"
            print(
                f"{'save ' + kind:32} {t_ours * 1e3:11.0f} {t_theirs * 1e3:10.0f} "
                f"{t_theirs / t_ours:15.2f}"
            )
            print(
                f"{'load ' + kind:32} {l_ours * 1e3:11.0f} {l_theirs * 1e3:10.0f} "
                f"{l_theirs / l_ours:15.2f}"
            )


if __name__ == "__main__":
    main()
