"""``rustrnn score``: log P of every line of text files, KenLM ``query``-style.

One line out per line in: the natural-log probability, the scored tokens, the OOVs among
them and the line, tab-separated (``--per-token`` adds each token's score); then a
summary like KenLM's. Lines go to the model in chunks, so a large file streams. The
model is a :class:`~rustrnn.LanguageModel` or an :class:`~rustrnn.NGramLM` (an ARPA file).
"""

from __future__ import annotations

import sys
from typing import Iterator, List, Tuple

from .training import open_text_file

CHUNK = 2048


def add_parser(sub) -> None:
    s = sub.add_parser("score", help="log-probability of every line of text (KenLM-style)")
    s.add_argument(
        "checkpoint", help="a model file, a training run's directory or an ARPA n-gram file"
    )
    s.add_argument("files", nargs="+", help="UTF-8 text files; - for standard input")
    s.add_argument("--no-bos", action="store_true", help="do not read lines after a line break")
    s.add_argument("--no-eos", action="store_true", help="do not score the end of each line")
    s.add_argument("--per-token", action="store_true", help="print each token's log-probability")


def _lines(files: List[str], error) -> Iterator[str]:
    for f in files:
        try:
            stream = sys.stdin if f == "-" else open_text_file(f)
        except (OSError, ValueError) as e:  # ValueError: a NUL in the name
            raise error(f"cannot read {f!r}: {getattr(e, 'strerror', None) or e}") from None
        try:
            for line in stream:
                yield line.rstrip("\n")
        except UnicodeDecodeError as e:
            raise error(f"{f} is not UTF-8 text: {e.reason} at byte {e.start}") from None
        finally:
            if stream is not sys.stdin:
                stream.close()


def _chunks(lines: Iterator[str]) -> Iterator[List[str]]:
    chunk: List[str] = []
    for line in lines:
        chunk.append(line)
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _token_scores(model, chunk: List[str], bos: bool, eos: bool):
    """``(tokens, oov flags, natural-log scores)`` of each line of ``chunk``."""
    from .ngram import NGramLM

    if isinstance(model, NGramLM):
        rows = [model.full_scores(line, bos=bos, eos=eos) for line in chunk]
        return [([r.token for r in t], [r.oov for r in t], [r.log_prob for r in t]) for t in rows]
    parsed, scores = model._score_lines(chunk, bos, eos)
    return [(p[2], p[3], s) for p, s in zip(parsed, scores)]


def run(args, model, error) -> int:
    """Scores ``args.files`` with ``model``; ``error`` is the CLI's one-line error class."""
    bos, eos = not args.no_bos, not args.no_eos
    totals: List[Tuple[float, int, int, float]] = []
    out = sys.stdout
    for chunk in _chunks(_lines(args.files, error)):
        try:
            scored = _token_scores(model, chunk, bos, eos)
        except (ValueError, KeyError, IndexError) as e:
            raise error(str(e)) from None
        for line, (tokens, oov, s) in zip(chunk, scored):
            total = sum(s)
            oov_total = sum(x for x, f in zip(s, oov) if f)
            totals.append((total, len(s), sum(oov), oov_total))
            fields = [f"{total:.6f}", str(len(s)), str(sum(oov)), line]
            if args.per_token:
                fields.append(" ".join(f"{t}={x:.4f}" for t, x in zip(tokens, s)))
            out.write("\t".join(fields) + "\n")
    from .lm import Evaluation

    summary = Evaluation(
        sum(t[1] for t in totals),
        sum(t[2] for t in totals),
        sum(t[0] for t in totals),
        sum(t[3] for t in totals),
    )
    out.write(f"Perplexity including OOVs:\t{summary.perplexity_including_oovs:.4f}\n")
    out.write(f"Perplexity excluding OOVs:\t{summary.perplexity_excluding_oovs:.4f}\n")
    out.write(f"OOVs:\t{summary.oovs}\n")
    out.write(f"Tokens:\t{summary.tokens}\n")
    return 0
