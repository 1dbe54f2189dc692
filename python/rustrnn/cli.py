"""The ``rustrnn`` command line: train, generate, perplexity.

Errors (a missing file, an unreadable checkpoint, a bad option value) print one
line to stderr and exit with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import List, Optional

CELLS = ("lstm", "gru", "rnn_tanh", "rnn_relu")


class CliError(Exception):
    """A user mistake reported as one line."""


def _positive_int(value: str) -> int:
    n = int(value)
    if n <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return n


def _non_negative_float(value: str) -> float:
    x = float(value)
    if not x >= 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative number, got {value}")
    return x


def _read_files(files: List[str]) -> str:
    parts = []
    for f in files:
        p = Path(f)
        if not p.is_file():
            raise CliError(f"no such file: {f}")
        try:
            parts.append(p.read_text(encoding="utf-8"))
        except UnicodeDecodeError as e:
            raise CliError(f"{f} is not UTF-8 text: {e.reason} at byte {e.start}") from None
    return "\n".join(parts)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (exit status 2)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="rustrnn", description="Recurrent language models in Rust on libtorch.")
    sub = ap.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="train a language model (default corpus if no FILES)")
    t.add_argument("files", nargs="*", help="UTF-8 text files; none: the embedded pydoc corpus")
    t.add_argument("--level", choices=("char", "word"), default="char", help="token level")
    t.add_argument("--cell", choices=CELLS, default="lstm", help="recurrent cell")
    t.add_argument("--embed", type=_positive_int, default=64, help="embedding width")
    t.add_argument("--hidden", type=_positive_int, default=256, help="hidden state width")
    t.add_argument("--layers", type=_positive_int, default=2, help="recurrent layers")
    t.add_argument("--dropout", type=_non_negative_float, default=0.1, help="dropout rate")
    t.add_argument("--tied", action="store_true", help="tie embedding and head weights")
    t.add_argument("--bptt", type=_positive_int, default=64, help="tokens per window")
    t.add_argument("--batch-size", type=_positive_int, default=32, help="parallel streams")
    t.add_argument("--optimizer", choices=("sgd", "adam", "adamw"), default="adam")
    t.add_argument("--lr", type=_non_negative_float, default=3e-3, help="learning rate")
    t.add_argument("--clip", type=_non_negative_float, default=0.25, help="max gradient norm")
    t.add_argument("--epochs", type=_positive_int, default=1000, help="epochs at most")
    t.add_argument("--max-steps", type=_positive_int, default=None, help="steps at most")
    t.add_argument(
        "--time-budget",
        type=_non_negative_float,
        default=60.0,
        help="seconds of training at most (default: 60; 0 for no limit)",
    )
    t.add_argument("--eval-every", type=_positive_int, default=200, help="validate every N steps")
    t.add_argument("--seed", type=int, default=0, help="random seed")
    t.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    t.add_argument("--out", default="runs/default", help="checkpoint directory")
    t.add_argument("--resume", action="store_true", help="continue from OUT/last.safetensors")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--prompt", default=None, help="prompt for the sample printed at the end")

    g = sub.add_parser("generate", help="continue a prompt with a trained model")
    g.add_argument("checkpoint")
    g.add_argument("--prompt", default="The ", help="text to continue")
    g.add_argument("--max-tokens", type=_positive_int, default=200, help="tokens to generate")
    g.add_argument("--temperature", type=float, default=1.0)
    g.add_argument("--top-k", type=int, default=None)
    g.add_argument("--top-p", type=float, default=None)
    g.add_argument("--greedy", action="store_true", help="always take the most likely token")
    g.add_argument("--num-samples", type=_positive_int, default=1, help="continuations")
    g.add_argument("--seed", type=int, default=None, help="random seed")

    p = sub.add_parser("perplexity", help="perplexity of a model on text files")
    p.add_argument("checkpoint")
    p.add_argument("files", nargs="+")
    return ap


def _load_model(path: str):
    import rustrnn

    if not Path(path).exists():
        raise CliError(f"no such checkpoint: {path}")
    ckpt = Path(path)
    if ckpt.is_dir():
        ckpt = (
            ckpt / "best.safetensors"
            if (ckpt / "best.safetensors").exists()
            else ckpt / "last.safetensors"
        )
    try:
        return rustrnn.LanguageModel.load(ckpt)
    except (ValueError, OSError) as e:
        raise CliError(f"cannot load checkpoint: {e}") from None


def _cmd_train(args) -> int:
    import torch

    import rustrnn

    from .corpus import default_corpus, split

    text = _read_files(args.files) if args.files else default_corpus()
    train_text, valid_text = split(text)
    torch.manual_seed(args.seed)
    vocab = rustrnn.Vocab.build(train_text, level=args.level)
    try:
        model = rustrnn.LanguageModel(
            vocab,
            embed_size=args.hidden if args.tied else args.embed,
            hidden_size=args.hidden,
            num_layers=args.layers,
            cell=args.cell,
            dropout=args.dropout,
            tie_weights=args.tied,
        ).to(args.device)
    except (ValueError, RuntimeError) as e:
        raise CliError(str(e)) from None
    print(
        f"training a {args.cell} language model on {len(text):,} characters "
        f"({len(vocab)} {args.level} tokens in the vocabulary), up to {args.time_budget:g} s",
        file=sys.stderr,
    )
    history = rustrnn.train(
        model,
        train_text,
        valid_text,
        batch_size=args.batch_size,
        bptt=args.bptt,
        epochs=args.epochs,
        max_steps=args.max_steps,
        time_budget=args.time_budget or None,
        eval_every=args.eval_every,
        optimizer=args.optimizer,
        lr=args.lr,
        clip=args.clip,
        seed=args.seed,
        checkpoint_dir=args.out,
        resume=args.resume,
        progress=not args.no_progress,
    )
    os.makedirs(args.out, exist_ok=True)
    final = Path(args.out) / "model.safetensors"
    model.save(final)
    ppl = model.perplexity(valid_text[:20000])
    print(f"validation perplexity {ppl:.2f} after {len(history.losses)} steps; saved {final}")
    prompt = args.prompt or train_text[:40].rsplit(" ", 1)[0] + " "
    greedy = model.generate(prompt, 160, greedy=True)[0]
    torch.manual_seed(args.seed)
    sampled = model.generate(prompt, 160, temperature=0.8)[0]
    print(f"\nprompt: {prompt!r}")
    width = 60
    print(f"{'greedy (argmax)':<{width}} | sampled (multinomial, T=0.8)")
    left, right = (greedy.replace("\n", " "), sampled.replace("\n", " "))
    for i in range(0, max(len(left), len(right)), width):
        print(f"{left[i : i + width]:<{width}} | {right[i : i + width]}")
    return 0


def _cmd_generate(args) -> int:
    import torch

    model = _load_model(args.checkpoint)
    if args.seed is not None:
        torch.manual_seed(args.seed)
    try:
        texts = model.generate(
            args.prompt,
            args.max_tokens,
            temperature=args.temperature,
            top_k=args.top_k,
            top_p=args.top_p,
            greedy=args.greedy,
            num_samples=args.num_samples,
        )
    except (ValueError, KeyError) as e:
        raise CliError(str(e)) from None
    for t in texts:
        print(args.prompt + t)
        if args.num_samples > 1:
            print("-" * 40)
    return 0


def _cmd_perplexity(args) -> int:
    model = _load_model(args.checkpoint)
    text = _read_files(args.files)
    try:
        ppl = model.perplexity(text)
    except (ValueError, KeyError) as e:
        raise CliError(str(e)) from None
    print(f"{ppl:.4f}")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    args = _build_parser().parse_args(argv)
    commands = {"train": _cmd_train, "generate": _cmd_generate, "perplexity": _cmd_perplexity}
    try:
        return commands[args.command](args)
    except CliError as e:
        print(f"rustrnn {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"rustrnn {args.command}: interrupted", file=sys.stderr)
        return 130
