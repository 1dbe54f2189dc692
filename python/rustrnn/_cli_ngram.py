"""``rustrnn ngram FILES... --order 5 --out model.arpa``: fit an n-gram model, write ARPA.

Wired into :mod:`rustrnn.cli` by ``add_parser(sub)`` in its parser and ``"ngram": run``
among its commands; errors are :class:`rustrnn.cli.CliError` (one line, exit status 2).
"""

from __future__ import annotations

import argparse
import sys
import time

SMOOTHINGS = ("modified_kneser_ney", "kneser_ney", "add_k")


def _order(value: str) -> int:
    n = int(value)
    if not 1 <= n <= 8:
        raise argparse.ArgumentTypeError(f"must be between 1 and 8, got {value}")
    return n


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Adds the ``ngram`` subcommand to ``subparsers`` (argparse's ``add_subparsers()``)."""
    p = subparsers.add_parser(
        "ngram",
        help="fit an n-gram model (modified Kneser-Ney) and write it as an ARPA file",
        description="Counts the n-grams of the text (each line a sentence) in Rust, "
        "estimates an interpolated modified Kneser-Ney model as KenLM's lmplz does, and "
        "writes a standard ARPA file.",
    )
    p.add_argument("files", nargs="*", help="UTF-8 text files; none: the embedded pydoc corpus")
    p.add_argument("--order", type=_order, default=5, help="n-gram order, 1 to 8 (default: 5)")
    p.add_argument("--level", choices=("char", "word"), default="word", help="token level")
    p.add_argument("--lower", action="store_true", help="lower-case the text")
    p.add_argument(
        "--smoothing", choices=SMOOTHINGS, default="modified_kneser_ney", help="estimator"
    )
    p.add_argument("--k", type=float, default=None, help="add-k's pseudo-count (add_k only)")
    p.add_argument("--out", default="model.arpa", help="the ARPA file to write")
    return p


def run(args) -> int:
    """Runs ``rustrnn ngram`` with parsed ``args``; returns the exit status."""
    import rustrnn

    from .cli import CliError, _read_files
    from .corpus import default_corpus

    text = _read_files(args.files) if args.files else default_corpus()
    t0 = time.perf_counter()
    try:
        vocab = rustrnn.Vocab.build(text, level=args.level, lower=args.lower)
        lm = rustrnn.NGramLM.fit(text, vocab, order=args.order, smoothing=args.smoothing, k=args.k)
        lm.save_arpa(args.out)
    except (ValueError, OSError) as e:
        raise CliError(str(e)) from None
    counts = " ".join(f"{n + 1}={c}" for n, c in enumerate(lm.counts))
    print(
        f"wrote {args.out}: order {lm.order} {args.smoothing} {args.level}-level model of "
        f"{len(text):,} characters, n-grams {counts} ({time.perf_counter() - t0:.2f} s)",
        file=sys.stderr,
    )
    return 0
