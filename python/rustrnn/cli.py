"""The ``rustrnn`` command line: train, generate, perplexity, score, ngram.

Errors (a missing file, an unreadable checkpoint, a bad option value) print one
line to stderr and exit with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import List, Optional

from . import _cli_ngram, _cli_score, _cli_vectors

# LmConfig::CELLS (src/lm/model.rs), for argparse before torch is imported.
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


def _finite_non_negative_float(value: str) -> float:
    x = _non_negative_float(value)
    if math.isinf(x):
        raise argparse.ArgumentTypeError(f"must be a finite non-negative number, got {value}")
    return x


def _clip(value: str) -> float:
    x = float(value)
    if not x > 0:
        raise argparse.ArgumentTypeError(
            f"must be a positive number (inf for no clipping), got {value}"
        )
    return x


def _cutoffs(value: str) -> List[int]:
    """``2000,10000``: the adaptive head's cutoffs (their rules are checked with the model)."""
    try:
        return [int(c) for c in value.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be comma-separated integers such as 2000,10000, got {value}"
        ) from None


def _seed(value: str) -> int:
    n = int(value)
    if not -(2**63) <= n < 2**64:  # what torch.manual_seed takes
        raise argparse.ArgumentTypeError(f"must be in [-2**63, 2**64), got {value}")
    return n


def _read_files(files: List[str]) -> str:
    from .training import read_text_file

    parts = []
    for f in files:
        if not os.path.lexists(f):
            raise CliError(f"no such file: {f}")
        try:
            parts.append(read_text_file(f))
        except UnicodeDecodeError as e:
            raise CliError(f"{f} is not UTF-8 text: {e.reason} at byte {e.start}") from None
        except OSError as e:
            raise CliError(f"cannot read {f}: {e.strerror or e}") from None
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
    t.add_argument(
        "--embed",
        type=_positive_int,
        default=None,
        help="embedding width (64; with --tied, --hidden's unless given: a tied model of "
        "another width maps the stack's output to it through a projection)",
    )
    t.add_argument("--hidden", type=_positive_int, default=256, help="hidden state width")
    t.add_argument("--layers", type=_positive_int, default=2, help="recurrent layers")
    t.add_argument("--dropout", type=_non_negative_float, default=0.1, help="dropout rate")
    t.add_argument("--tied", action="store_true", help="tie embedding and head weights")
    t.add_argument(
        "--head",
        choices=("full", "adaptive"),
        default="full",
        help="output layer: a linear layer over the vocabulary, or an adaptive softmax",
    )
    t.add_argument(
        "--cutoffs",
        type=_cutoffs,
        default=None,
        help="adaptive head's cluster boundaries by token id, e.g. 2000,10000 "
        "(default: chosen from the vocabulary size)",
    )
    t.add_argument(
        "--div-value",
        type=float,
        default=4.0,
        help="adaptive head: cluster i projects to hidden / div_value**(i+1) units",
    )
    t.add_argument(
        "--recipe",
        choices=("plain", "awd"),
        default="plain",
        help="defaults of the options marked 'recipe': plain (word_language_model with "
        "Adam) or awd (AWD-LSTM's regularisation and NT-ASGD, its published settings)",
    )
    # None: the recipe's value (plain: this command's own defaults, shown in the help).
    t.add_argument("--bptt", type=_positive_int, default=None, help="tokens per window (64)")
    t.add_argument("--batch-size", type=_positive_int, default=None, help="parallel streams (32)")
    t.add_argument(
        "--optimizer", choices=("sgd", "adam", "adamw", "nt_asgd"), default=None, help="(adam)"
    )
    t.add_argument(
        "--lr", type=_finite_non_negative_float, default=None, help="learning rate (3e-3)"
    )
    t.add_argument("--weight-decay", type=_finite_non_negative_float, default=None, help="(0)")
    t.add_argument(
        "--clip", type=_clip, default=None, help="max gradient norm, inf for none (0.25)"
    )
    for name, what in [
        ("weight-drop", "DropConnect on the recurrent matrices"),
        ("dropout-input", "locked dropout on the embeddings"),
        ("dropout-hidden", "locked dropout between layers"),
        ("dropout-output", "locked dropout before the head"),
        ("dropout-embedding", "dropout of whole embedding rows"),
        ("alpha", "activation regularisation"),
        ("beta", "temporal activation regularisation"),
    ]:
        t.add_argument(f"--{name}", type=_non_negative_float, default=None, help=f"{what} (recipe)")
    t.add_argument(
        "--variable-bptt",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="AWD-LSTM's random window lengths (recipe)",
    )
    t.add_argument("--nonmono", type=_positive_int, default=None, help="NT-ASGD's interval (5)")
    t.add_argument("--epochs", type=_positive_int, default=1000, help="epochs at most")
    t.add_argument("--max-steps", type=_positive_int, default=None, help="steps at most")
    t.add_argument(
        "--time-budget",
        type=_non_negative_float,
        default=60.0,
        help="seconds of training at most (default: 60; 0 or inf for no limit)",
    )
    t.add_argument("--eval-every", type=_positive_int, default=200, help="validate every N steps")
    t.add_argument("--seed", type=_seed, default=0, help="random seed")
    t.add_argument(
        "--device",
        default="cpu",
        help="torch device, e.g. cpu or cuda (under torchrun, cuda means cuda:LOCAL_RANK)",
    )
    t.add_argument(
        "--out",
        default="runs/default",
        help="checkpoint directory; one holding an earlier run's files needs --resume or "
        "--overwrite",
    )
    t.add_argument("--resume", action="store_true", help="continue from OUT/last.safetensors")
    t.add_argument(
        "--overwrite",
        action="store_true",
        help="start afresh in an OUT that holds an earlier run, replacing its files",
    )
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--prompt", default=None, help="prompt for the sample printed at the end")

    g = sub.add_parser("generate", help="continue a prompt with a trained model")
    g.add_argument("checkpoint", help="a checkpoint, a training run's directory or an ARPA file")
    g.add_argument("--prompt", default="The ", help="text to continue")
    g.add_argument("--max-tokens", type=_positive_int, default=200, help="tokens to generate")
    g.add_argument("--temperature", type=float, default=1.0)
    g.add_argument("--top-k", type=int, default=None)
    g.add_argument("--top-p", type=float, default=None)
    g.add_argument("--greedy", action="store_true", help="always take the most likely token")
    g.add_argument("--min-p", type=float, default=None, help="min-p filtering, in [0, 1]")
    g.add_argument("--typical-p", type=float, default=None, help="typical sampling's mass")
    g.add_argument("--repetition-penalty", type=float, default=None, help="CTRL's penalty (1: off)")
    g.add_argument(
        "--no-repeat-ngram", type=int, default=None, help="never repeat an n-gram of this size"
    )
    g.add_argument("--beams", type=_positive_int, default=1, help="beam search with N beams")
    g.add_argument("--num-samples", type=_positive_int, default=1, help="continuations")
    g.add_argument("--seed", type=int, default=None, help="random seed")

    p = sub.add_parser("perplexity", help="perplexity of a model on text files")
    p.add_argument("checkpoint", help="a checkpoint, a training run's directory or an ARPA file")
    p.add_argument("files", nargs="+")
    _cli_score.add_parser(sub)
    _cli_ngram.add_parser(sub)
    _cli_vectors.add_parsers(sub)
    return ap


def _is_arpa(path: Path) -> bool:
    """Whether ``path`` is an ARPA n-gram file: named ``*.arpa``, or text whose header
    (what comes before the first n-gram section) has ARPA's ``\\data\\`` line."""
    if path.suffix.lower() == ".arpa":
        return True
    if not path.is_file():
        return False
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
    except OSError:
        return False
    if len(head) > 8 and head[8:9] == b"{":  # safetensors: a u64 length, then JSON
        return False
    return any(line.strip() == b"\\data\\" for line in head.splitlines())


def _load_model(path: str):
    """A trained LanguageModel (a checkpoint or a run's directory) or an NGramLM (an
    ARPA file); generate, perplexity and score take either."""
    import rustrnn

    if not Path(path).exists():
        raise CliError(f"no such checkpoint: {path}")
    ckpt = Path(path)
    if _is_arpa(ckpt):
        try:
            return rustrnn.NGramLM.load_arpa(ckpt)
        except (ValueError, OSError) as e:
            raise CliError(f"cannot load ARPA model: {e}") from None
    if not ckpt.is_dir():
        try:
            return rustrnn.LanguageModel.load(ckpt)
        except (ValueError, OSError) as e:
            raise CliError(f"cannot load checkpoint: {e}") from None
    # A directory written by `train`: its best model, else the last one, else the final
    # save. A damaged file is reported and the next one tried.
    names = ("best.safetensors", "last.safetensors", "model.safetensors")
    candidates = [ckpt / n for n in names if os.path.lexists(ckpt / n)]
    if not candidates:
        raise CliError(f"cannot load checkpoint: {path} holds none of {', '.join(names)}")
    for i, c in enumerate(candidates):
        try:
            return rustrnn.LanguageModel.load(c)
        except (ValueError, OSError) as e:
            if i + 1 == len(candidates):
                raise CliError(f"cannot load checkpoint: {e}") from None
            print(
                f"rustrnn: warning: {c} is unreadable ({e}); using {candidates[i + 1].name}",
                file=sys.stderr,
            )
    raise AssertionError("unreachable")  # pragma: no cover


def _train_device(name: str):
    """``--device`` as a torch.device rustrnn can train on (checked before any work)."""
    import torch

    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as e:
        raise CliError(f"--device {name}: {e}") from None
    if device.type not in ("cpu", "cuda"):
        raise CliError(f"--device {name}: training runs on cpu or cuda, not {device.type}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CliError(f"--device {name}: CUDA is not available here")
    return device


def _join_torchrun(device):
    """Under torchrun (``WORLD_SIZE`` above 1): joins the process group, NCCL on CUDA
    (each process on its ``LOCAL_RANK``'s GPU) and gloo on the CPU, so that
    :func:`rustrnn.train` averages the gradients across the processes.

    Returns:
        ``(rank, device, joined)``.
    """
    import torch

    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise CliError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not a number") from None
    if world <= 1:
        return 0, device, False
    dist = torch.distributed
    if not dist.is_available():
        raise CliError("WORLD_SIZE is set, but this torch has no torch.distributed")
    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if local >= torch.cuda.device_count():
            raise CliError(
                f"LOCAL_RANK {local}: this machine has {torch.cuda.device_count()} CUDA devices"
            )
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    try:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    except (RuntimeError, ValueError) as e:
        raise CliError(f"cannot join the torchrun process group: {e}") from None
    return dist.get_rank(), device, True


def _claim_out(args) -> None:
    """``--out`` before any training: a writable directory, and not an earlier run's
    unless ``--resume`` or ``--overwrite`` says what to do with it."""
    from . import _rustrnn

    out = args.out
    try:
        _rustrnn.claim_checkpoint_dir(out, args.resume or args.overwrite)
    except FileExistsError as e:
        try:
            held = sorted(n for n in os.listdir(out) if not n.startswith("."))
        except OSError:  # not a directory one can list (a link loop, a dangling link)
            raise CliError(f"--out {e}") from None
        raise CliError(
            f"--out {out} already holds an earlier run ({', '.join(held[:3])}"
            f"{', ...' if len(held) > 3 else ''}): pass --resume to continue it, --overwrite "
            "to replace it, or choose another --out"
        ) from None
    except OSError as e:
        raise CliError(f"--out {e}") from None


def _head_size(args, vocab_size: int, embed: int, cutoffs: Optional[List[int]]) -> int:
    """The head's parameter count: ``V * H + V`` for the full head (tied: its bias and any
    projection ``E * H``); torch's widths for the adaptive one (``AdaptiveLogSoftmaxWithLoss``:
    no biases)."""
    h = args.hidden
    if cutoffs is None and args.tied:
        return vocab_size + (embed * h if embed != h else 0)
    if cutoffs is None:
        return vocab_size * h + vocab_size
    bounds = cutoffs + [vocab_size]
    n = (bounds[0] + len(cutoffs)) * h
    try:
        for i in range(len(cutoffs)):
            hsz = int(h // (args.div_value ** (i + 1)))
            n += hsz * h + hsz * (bounds[i + 1] - bounds[i])
    except (ZeroDivisionError, OverflowError, ValueError):
        pass  # a div_value the model refuses, naming it
    return n


def _check_model_size(args, vocab_size: int, embed: int, cutoffs=None) -> None:
    """Refuses a model that could not fit in memory before allocating it: training holds
    the weights, their gradients and Adam's two moments (four float32 copies)."""
    gates = {"lstm": 4, "gru": 3}.get(args.cell, 1)
    h, layers = args.hidden, args.layers
    first = gates * h * (embed + h) + 2 * gates * h
    rest = gates * h * (2 * h) + 2 * gates * h
    head = _head_size(args, vocab_size, embed, cutoffs)
    n = vocab_size * embed + first + (layers - 1) * rest + head
    need = 4 * 4 * n
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return
    if need > memory:
        raise CliError(
            f"--embed {embed} --hidden {h} --layers {layers}: the model would have {n:,} "
            f"parameters; training it needs about {need / 2**30:,.1f} GiB, more than this "
            f"machine's {memory / 2**30:,.1f} GiB"
        )


# `rustrnn train`'s own values for the plain recipe (rustrnn.train's differ in lr).
_PLAIN_CLI = {"batch_size": 32, "bptt": 64, "optimizer": "adam", "lr": 3e-3, "clip": 0.25}
_RECIPE_FLAGS = (
    "batch_size bptt optimizer lr weight_decay clip weight_drop dropout_input dropout_hidden "
    "dropout_output dropout_embedding alpha beta variable_bptt nonmono"
).split()


def _recipe_options(args) -> dict:
    """The recipe and the options given on the command line (the rest are the recipe's)."""
    given = {k: getattr(args, k) for k in _RECIPE_FLAGS if getattr(args, k) is not None}
    if args.recipe == "plain":
        given = {**_PLAIN_CLI, **given}
    if "clip" in given and math.isinf(given["clip"]):
        given["clip"] = None
    return {"recipe": args.recipe, **given}


def _cmd_train(args) -> int:
    import torch

    from .corpus import default_corpus

    device = _train_device(args.device)
    text = _read_files(args.files) if args.files else default_corpus()
    if not text.strip():
        raise CliError("the corpus is empty: nothing to train on")
    rank, device, joined = _join_torchrun(device)
    try:
        return _train_joined(args, text, device, rank, joined)
    finally:
        if joined:
            torch.distributed.destroy_process_group()


def _train_joined(args, text, device, rank, joined) -> int:
    """``rustrnn train`` once the process knows its rank: rank 0 claims ``--out``,
    writes the model and prints; every rank trains."""
    import torch

    import rustrnn

    from .corpus import split

    if rank == 0:
        _claim_out(args)
    if joined:
        torch.distributed.barrier()
    train_text, valid_text = split(text)
    torch.manual_seed(args.seed)
    try:
        vocab = rustrnn.Vocab.build(train_text, level=args.level)
        embed = args.embed or (args.hidden if args.tied else 64)
        if args.head == "full" and (args.cutoffs is not None or args.div_value != 4.0):
            raise CliError("--cutoffs and --div-value are for --head adaptive")
        cutoffs = args.cutoffs
        if args.head == "adaptive":
            cutoffs = rustrnn._rustrnn.adaptive_cutoffs(len(vocab), cutoffs)
        _check_model_size(args, len(vocab), embed, cutoffs)
        model = rustrnn.LanguageModel(
            vocab,
            embed_size=embed,
            hidden_size=args.hidden,
            num_layers=args.layers,
            cell=args.cell,
            dropout=args.dropout,
            tie_weights=args.tied,
            head=args.head,
            cutoffs=cutoffs,
            div_value=args.div_value,
        ).to(device)
    except (ValueError, RuntimeError) as e:
        raise CliError(str(e)) from None
    # Too little text for the streams is an option mistake: say so before training.
    train_ids = vocab.encode(train_text)
    batch_size = (
        _recipe_options(args).get("batch_size")
        or rustrnn.training.RECIPES[args.recipe]["batch_size"]
    )
    if train_ids.numel() // batch_size < 2:
        raise CliError(
            f"the corpus has {train_ids.numel():,} training tokens, too few for "
            f"--batch-size {batch_size} (each stream needs at least 2 tokens)"
        )
    valid_ids = vocab.encode(valid_text) if valid_text else None
    if valid_ids is not None and valid_ids.numel() < 2:
        valid_ids = valid_text = None  # too little to measure anything
    budget = args.time_budget if args.time_budget and math.isfinite(args.time_budget) else None
    print(
        f"training a {args.cell} language model on {len(text):,} characters "
        f"({len(vocab)} {args.level} tokens in the vocabulary)"
        + (f", up to {budget:g} s" if budget else ""),
        file=sys.stderr,
    )
    try:
        history = rustrnn.train(
            model,
            train_ids,
            valid_ids,
            **_recipe_options(args),
            epochs=args.epochs,
            max_steps=args.max_steps,
            time_budget=budget,
            eval_every=args.eval_every,
            seed=args.seed,
            checkpoint_dir=args.out,
            resume=args.resume,
            overwrite=args.overwrite,
            progress=not args.no_progress,
        )
    except (ValueError, OSError, RuntimeError, FloatingPointError) as e:
        raise CliError(str(e)) from None
    if rank != 0:
        return 0
    final = Path(args.out) / "model.safetensors"
    try:
        model.save(final)
    except OSError as e:
        raise CliError(f"cannot save the model: {e}") from None
    if valid_text:
        ppl = model.perplexity(valid_text[:20000])
        print(f"validation perplexity {ppl:.2f} after {len(history.losses)} steps; saved {final}")
    else:
        print(f"{len(history.losses)} steps (no validation text); saved {final}")
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
    chain = {
        "min_p": args.min_p,
        "typical_p": args.typical_p,
        "repetition_penalty": args.repetition_penalty,
        "no_repeat_ngram_size": args.no_repeat_ngram,
    }
    chain = {k: v for k, v in chain.items() if v is not None}
    if args.beams > 1:
        chain["num_beams"] = args.beams
    if chain and not hasattr(model, "vectors"):  # an n-gram model samples without them
        raise CliError(
            "--min-p, --typical-p, --repetition-penalty and --no-repeat-ngram "
            "need a neural model's checkpoint"
        )
    try:
        texts = model.generate(
            args.prompt,
            args.max_tokens,
            temperature=args.temperature,
            top_k=args.top_k,
            top_p=args.top_p,
            greedy=args.greedy,
            num_samples=args.num_samples,
            **chain,
        )
    except (ValueError, KeyError, IndexError, RuntimeError, OverflowError) as e:
        raise CliError(str(e)) from None
    for t in texts:
        print(_joined(model.vocab, args.prompt, t))
        if args.num_samples > 1:
            print("-" * 40)
    return 0


def _joined(vocab, prompt: str, continuation: str) -> str:
    """The prompt and its continuation as one text: at word level decoded words are
    separated by a space, so one goes between the prompt's last word and the first
    generated one (none at a line break or where the prompt ends in whitespace)."""
    if (
        vocab.level == "word"
        and prompt
        and continuation
        and not prompt[-1].isspace()
        and not continuation[0].isspace()
    ):
        return f"{prompt} {continuation}"
    return prompt + continuation


def _cmd_perplexity(args) -> int:
    model = _load_model(args.checkpoint)
    text = _read_files(args.files)
    try:
        ppl = model.perplexity(text)
    except (ValueError, KeyError) as e:
        raise CliError(str(e)) from None
    print(f"{ppl:.4f}")
    return 0


def _cmd_score(args) -> int:
    return _cli_score.run(args, _load_model(args.checkpoint), CliError)


def _cmd_vectors(args) -> int:
    return _cli_vectors.run_vectors(args, _load_model(args.checkpoint), CliError)


def _cmd_similar(args) -> int:
    return _cli_vectors.run_similar(args, _load_model(args.checkpoint), CliError)


def main(argv: Optional[List[str]] = None) -> int:
    argv = _cli_vectors.protect_negatives(sys.argv[1:] if argv is None else list(argv))
    args = _build_parser().parse_args(argv)
    commands = {
        "train": _cmd_train,
        "generate": _cmd_generate,
        "perplexity": _cmd_perplexity,
        "score": _cmd_score,
        "ngram": _cli_ngram.run,
        "vectors": _cmd_vectors,
        "similar": _cmd_similar,
    }
    try:
        return commands[args.command](args)
    except CliError as e:
        print(f"rustrnn {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"rustrnn {args.command}: interrupted", file=sys.stderr)
        return 130
