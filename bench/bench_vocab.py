"""Vocab.encode against a plain Python dict lookup loop, in one process.

The text is the prose of the stdlib's pydoc topics, repeated to the requested
size. The baselines are what one would write without rustrnn:

* char level: ``torch.tensor([stoi.get(c, unk) for c in text])``
* word level: ``re.findall`` with the same rule (a newline is ``<eos>``), then
  the same lookup loop.

Both sides must give the same ids; the script prints MB/s for each and the
ratio. Not a test: nothing here gates CI.

    python bench/bench_vocab.py [--mb 10] [--repeat 3]
"""

import argparse
import re
import time
from pydoc_data.topics import topics

import torch
from rustrnn import Vocab

WORD_RE = re.compile(r"\n|\w+|[^\w\s]")


def make_text(mb):
    prose = "\n".join(topics[k] for k in sorted(topics))
    n = mb * 1_000_000
    return (prose * (n // len(prose) + 1))[:n]


def best_of(repeat, fn, *args):
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn(*args)
        times.append(time.perf_counter() - t0)
    return min(times), out


def python_char(text, stoi, unk):
    return torch.tensor([stoi.get(c, unk) for c in text], dtype=torch.int64)


def python_word(text, stoi, unk):
    return torch.tensor([stoi.get(t, unk) for t in WORD_RE.findall(text)], dtype=torch.int64)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=10, help="text size in MB (default 10)")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs, best kept (default 3)")
    args = ap.parse_args()

    text = make_text(args.mb)
    size_mb = len(text.encode("utf-8")) / 1e6
    print(f"text: {size_mb:.1f} MB UTF-8, {len(text):,} characters; best of {args.repeat}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(
        f"{'level':<6} {'tokens':>11} {'build s':>8} {'rustrnn MB/s':>13} "
        f"{'python MB/s':>12} {'ratio':>7}"
    )
    for level, baseline in [("char", python_char), ("word", python_word)]:
        t0 = time.perf_counter()
        v = Vocab.build(text, level=level)
        build_s = time.perf_counter() - t0
        stoi = {t: i for i, t in enumerate(v.tokens())}
        if level == "word":
            stoi["\n"] = v.eos_id
        t_rust, ids = best_of(args.repeat, v.encode, text)
        t_py, ref = best_of(args.repeat, baseline, text, stoi, v.unk_id)
        if not torch.equal(ids, ref):
            raise SystemExit(f"{level}: rustrnn and the Python baseline disagree")
        print(
            f"{level:<6} {len(ids):>11,} {build_s:>8.3f} {size_mb / t_rust:>13.1f} "
            f"{size_mb / t_py:>12.1f} {t_py / t_rust:>6.1f}x"
        )


if __name__ == "__main__":
    main()
