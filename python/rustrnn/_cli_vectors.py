"""``rustrnn vectors CHECKPOINT --out vectors.txt [--binary]`` writes a model's word
vectors in the word2vec format; ``rustrnn similar CHECKPOINT WORD... [--topn N]`` prints
the nearest words, and with signed words an analogy: ``king -man +woman``.

Wired into :mod:`rustrnn.cli` by ``add_parsers(sub)``, ``protect_negatives(argv)`` (before
argparse, which would take ``-man`` for an option) and ``"vectors"``/``"similar"`` among
its commands; errors are :class:`rustrnn.cli.CliError` (one line, exit status 2).
"""

from __future__ import annotations

import re
import sys
from typing import List

# A negative word, kept away from argparse: "-man" becomes NEG + "man".
NEG = "\N{MINUS SIGN}"
_OPTION = re.compile(r"-(h|-.+)$")  # -h, --help, --topn, --topn=N


def add_parsers(sub) -> None:
    v = sub.add_parser("vectors", help="write a model's word vectors (word2vec format)")
    v.add_argument("checkpoint", help="a model file or a training run's directory")
    v.add_argument("--out", default="vectors.txt", help="the file to write")
    v.add_argument("--binary", action="store_true", help="word2vec's binary format")
    s = sub.add_parser(
        "similar",
        help="nearest words by cosine; analogies as: king -man +woman",
        description="Prints the TOPN words nearest to the mean of the WORDs' vectors "
        "(gensim's most_similar): a word with a leading '-' counts against, '+' or none for.",
    )
    s.add_argument("checkpoint", help="a model file or a training run's directory")
    s.add_argument("words", nargs="+", help="WORD, +WORD or -WORD")
    s.add_argument("--topn", type=int, default=10, help="how many words (default: 10)")


def protect_negatives(argv: List[str]) -> List[str]:
    """``argv`` with the negative words of a ``similar`` command marked so that argparse
    reads them as words, not options, and its options moved before the words (argparse
    reads no words after an option once it has read some)."""
    if "similar" not in argv:
        return argv
    at = argv.index("similar")
    options, words, value_next = [], [], False
    for a in argv[at + 1 :]:
        if value_next:
            options.append(a)
            value_next = False
        elif _OPTION.match(a):
            options.append(a)
            value_next = a == "--topn"
        elif a.startswith("-") and a != "-":
            words.append(NEG + a[1:])
        else:
            words.append(a)
    return argv[: at + 1] + options + words


def _vectors_of(model, error):
    if not hasattr(model, "vectors"):
        raise error("an n-gram model has no word vectors; give a neural model's checkpoint")
    return model.vectors()


def run_vectors(args, model, error) -> int:
    wv = _vectors_of(model, error)
    try:
        wv.save_word2vec_format(args.out, binary=args.binary)
    except (ValueError, OSError) as e:
        raise error(str(e)) from None
    kind = "binary" if args.binary else "text"
    print(f"wrote {args.out}: {len(wv)} vectors of {wv.vector_size} ({kind})", file=sys.stderr)
    return 0


def run_similar(args, model, error) -> int:
    if args.topn < 1:
        raise error(f"--topn must be at least 1, got {args.topn}")
    wv = _vectors_of(model, error)
    positive, negative = [], []
    for w in args.words:
        if w.startswith(NEG):
            negative.append(w[1:])
        else:
            positive.append(w[1:] if w.startswith("+") and len(w) > 1 else w)
    missing = [w for w in positive + negative if w not in wv]
    if missing:
        raise error(f"not in the model's vocabulary: {', '.join(map(repr, missing))}")
    if not positive:
        raise error("give at least one word without a leading '-'")
    for word, score in wv.most_similar(positive=positive, negative=negative, topn=args.topn):
        print(f"{word}\t{score:.4f}")
    return 0
