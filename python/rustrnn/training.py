"""Training a language model: :func:`train` and its :class:`History`.

The loop itself runs in Rust (``src/train/``) with the GIL released; Python only
prepares the data, draws the progress bar, runs the callback, reads and restores
torch's RNG for checkpoints and, under ``torch.distributed``, averages gradients.
"""

from __future__ import annotations

import errno
import io
import json
import math
import os
import stat
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Literal, Union

import torch
from torch import Tensor

from . import _rustrnn

Data = Union[str, "os.PathLike[str]", Tensor, Sequence[int]]


class _Default:
    """The value of a :func:`train` keyword that was not given: the ``recipe``'s, or the
    plain default when there is no recipe."""

    def __repr__(self) -> str:
        return "DEFAULT"


DEFAULT: Any = _Default()

RECIPES: dict[str, dict[str, Any]] = {
    # The plain recipe: pytorch/examples' word_language_model loop (with Adam).
    "plain": dict(
        batch_size=32,
        bptt=64,
        optimizer="adam",
        lr=2e-3,
        weight_decay=0.0,
        clip=0.25,
        weight_drop=0.0,
        dropout_input=None,
        dropout_hidden=None,
        dropout_output=None,
        dropout_embedding=0.0,
        alpha=0.0,
        beta=0.0,
        variable_bptt=False,
        nonmono=5,
    ),
    # AWD-LSTM (Merity et al. 2018): salesforce/awd-lstm-lm's main.py defaults with its
    # README's Penn Treebank command (batch_size 20, dropouti 0.4, dropouth 0.25).
    "awd": dict(
        batch_size=20,
        bptt=70,
        optimizer="nt_asgd",
        lr=30.0,
        weight_decay=1.2e-6,
        clip=0.25,
        weight_drop=0.5,
        dropout_input=0.4,
        dropout_hidden=0.25,
        dropout_output=0.4,
        dropout_embedding=0.1,
        alpha=2.0,
        beta=1.0,
        variable_bptt=True,
        nonmono=5,
    ),
}
"""The named sets of defaults :func:`train`'s ``recipe`` picks from."""

StopReason = Literal["epochs", "max_steps", "time_budget", "interrupted", "non_finite", "error"]
"""How a run ended (``History.stop_reason``): the names of the Rust core's ``StopReason``,
``_rustrnn.STOP_REASONS``."""


@dataclass
class History:
    """What :func:`train` recorded.

    Per step (parallel lists): ``steps`` (1-based, counting resumed steps), ``epochs``
    (0-based), ``losses`` (mean cross-entropy of the window, nats), ``lrs`` (the
    learning rate the step used), ``grad_norms`` (before clipping), ``tokens_per_sec``.
    Per evaluation: ``eval_steps`` and ``valid_ppls``. ``best_valid_ppl``.
    ``averaged_from``: with ``optimizer="nt_asgd"``, the step after which averaging
    started (None while it has not).

    ``stop_reason`` (None while the run goes on) is what ended it: for a run that
    finished, ``"epochs"`` (every epoch trained), ``"max_steps"`` or ``"time_budget"``;
    for one that raised (the exception carries this History as ``history``),
    ``"interrupted"`` (Ctrl-C, or any exception the callback raised: the run stopped at
    a step boundary and wrote ``last.safetensors``), ``"non_finite"`` (a non-finite
    loss, gradient or update: FloatingPointError) or ``"error"`` (anything else, such
    as a checkpoint directory refused or a checkpoint that cannot be resumed).

    The fields are the Rust core's ``History``'s (``_rustrnn.HISTORY_FIELDS``), which
    :func:`train` fills in one conversion, and the keys of the JSON checkpoints store.
    """

    steps: list[int] = field(default_factory=list)
    epochs: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)
    grad_norms: list[float] = field(default_factory=list)
    tokens_per_sec: list[float] = field(default_factory=list)
    eval_steps: list[int] = field(default_factory=list)
    valid_ppls: list[float] = field(default_factory=list)
    best_valid_ppl: float | None = None
    averaged_from: int | None = None
    stop_reason: StopReason | None = None

    @classmethod
    def from_json(cls, text: str) -> History:
        """Rebuilds a History from the JSON that checkpoints store (``to_dict`` as JSON).

        Args:
            text: the JSON document.
        """
        return cls(**json.loads(text))

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain Python lists and numbers (JSON-ready)."""
        return asdict(self)

    @property
    def interrupted(self) -> bool:
        """Whether training stopped on Ctrl-C (KeyboardInterrupt)."""
        return self.stop_reason == "interrupted"

    def __repr__(self) -> str:
        # The per-step lists run to thousands of entries: summarise them.
        last = f"{self.losses[-1]:.4f}" if self.losses else None
        best = f"{self.best_valid_ppl:.3f}" if self.best_valid_ppl is not None else None
        return (
            f"History(steps={len(self.losses)}, last_loss={last}, "
            f"evaluations={len(self.valid_ppls)}, best_valid_ppl={best}, "
            f"stop_reason={self.stop_reason!r})"
        )

    @property
    def evals(self) -> list[tuple[int, float]]:
        """``(step, valid_ppl)`` of every evaluation."""
        return list(zip(self.eval_steps, self.valid_ppls))

    def plot(self, fig=None):
        """Draws the training loss and validation log-perplexity, the learning rate and
        the throughput against the step, with matplotlib.

        Args:
            fig: a ``matplotlib.figure.Figure`` to draw into (default: a new one).

        Returns:
            The figure.
        """
        import matplotlib.pyplot as plt

        if fig is None:
            fig = plt.figure(figsize=(12, 3.5))
        ax_loss, ax_lr, ax_tps = fig.subplots(1, 3)
        ax_loss.plot(self.steps, self.losses, lw=0.8, label="train loss")
        if self.eval_steps:
            ax_loss.plot(
                self.eval_steps,
                [math.log(p) for p in self.valid_ppls],
                "o-",
                label="valid log(ppl)",
            )
        ax_loss.set_xlabel("step")
        ax_loss.set_ylabel("cross-entropy (nats)")
        ax_loss.legend()
        ax_lr.plot(self.steps, self.lrs)
        ax_lr.set_xlabel("step")
        ax_lr.set_ylabel("learning rate")
        if self.lrs and min(self.lrs) > 0:
            ax_lr.set_yscale("log")
        ax_tps.plot(self.steps, self.tokens_per_sec, lw=0.8)
        ax_tps.set_xlabel("step")
        ax_tps.set_ylabel("tokens / s")
        fig.tight_layout()
        return fig


def _looks_like_path(s: str) -> bool:
    return "\n" not in s and (os.sep in s or "/" in s or s.endswith((".txt", ".raw", ".tokens")))


def open_text_file(path: str | os.PathLike[str]) -> io.TextIOWrapper:
    """The regular UTF-8 file ``path``, open for reading as text.

    The file is opened without blocking and checked on the open descriptor, so a FIFO
    (or a socket, or a device such as ``/dev/zero``) is refused at once instead of
    blocking forever or never ending.

    Raises:
        IsADirectoryError: ``path`` is a directory.
        OSError: ``path`` is missing, unreadable or not a regular file.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, "is a directory, not a text file", str(path))
        if not stat.S_ISREG(mode):
            kind = "FIFO" if stat.S_ISFIFO(mode) else "special file"
            raise OSError(f"{os.fspath(path)}: not a regular file (a {kind}); refusing to read it")
        return os.fdopen(fd, encoding="utf-8")
    except BaseException:
        os.close(fd)
        raise


def read_text_file(path: str | os.PathLike[str]) -> str:
    """The contents of the regular UTF-8 file ``path`` (see :func:`open_text_file`).

    Raises:
        IsADirectoryError, OSError: as :func:`open_text_file`.
        UnicodeDecodeError: the file is not UTF-8.
    """
    with open_text_file(path) as f:
        return f.read()


def as_index_tensor(data) -> Tensor:
    """``data`` (a tensor or a sequence of ints) as int64 ids, refusing what
    ``torch.nn.Embedding`` refuses: float or bool ids raise its RuntimeError (torch's own,
    raised by its embedding) rather than being truncated. int32 is widened, as Embedding
    takes it."""
    t = data if isinstance(data, Tensor) else torch.as_tensor(data)
    if not isinstance(data, Tensor) and t.numel() == 0:
        return t.to(torch.long)
    if t.dtype not in (torch.long, torch.int32):
        # torch's check of the indices' dtype comes first, so an empty weight suffices.
        torch.embedding(torch.empty(0, 1), t.reshape(-1)[:1].cpu())
        raise RuntimeError(f"ids must be integers, got {t.dtype}")  # pragma: no cover
    return t.to(torch.long)


def as_ids(data: Data, vocab, what: str = "data") -> Tensor:
    """The 1-D LongTensor of ids of ``data``: text (encoded with ``vocab``), a path to
    a UTF-8 text file (str or os.PathLike), a 1-D LongTensor, or a sequence of ints.

    A str is a path when it looks like one (no line break; a slash or a text-file
    suffix): it must then name a regular file, so a directory raises
    IsADirectoryError and a missing file FileNotFoundError rather than the path itself
    being trained on."""
    if isinstance(data, os.PathLike) or (isinstance(data, str) and _looks_like_path(data)):
        path = os.fspath(data)
        if isinstance(data, os.PathLike) or os.path.lexists(path):
            return vocab.encode(read_text_file(path))
        if len(path) < 4096:
            raise FileNotFoundError(
                f"{what}: no such file {path!r} (to train on this string as text, add a newline)"
            )
    if isinstance(data, str):
        return vocab.encode(data)
    if isinstance(data, (Tensor, list, tuple)):
        ids = as_index_tensor(data)
        if ids.dim() != 1:
            shape = tuple(ids.shape)
            raise ValueError(
                f"{what} ids must be a 1-D LongTensor, got {ids.dtype} of shape {shape}"
            )
        return ids
    raise TypeError(
        f"{what} must be text, a file path or a 1-D LongTensor, got {type(data).__name__}"
    )


def _distributed() -> tuple[int, int]:
    d = torch.distributed
    if d.is_available() and d.is_initialized():
        return d.get_rank(), d.get_world_size()
    return 0, 1


class _ParameterGuard:
    """The Parameters a run started with, so that a callback replacing one (which the
    loop would then no longer train) is caught rather than ignored."""

    def __init__(self, model):
        self.slots = [
            (f"{prefix}.{name}" if prefix else name, module, name, p, p.shape, p.dtype, p.device)
            for prefix, module in model.named_modules()
            for name, p in module._parameters.items()
            if p is not None
        ]

    def check(self, step: int) -> None:
        for full, module, name, p, shape, dtype, device in self.slots:
            now = module._parameters.get(name)
            if now is not p or p.shape != shape or p.dtype != dtype or p.device != device:
                raise RuntimeError(
                    f"the callback replaced the model's Parameter '{full}' (after step {step}): "
                    "rustrnn.train updates the Parameters the model had when it started, so the "
                    "new one would stay untrained. Change Parameters in place instead "
                    "(with torch.no_grad(): p.copy_(new_value))"
                )


class _Hooks:
    """What the Rust loop calls (with the GIL) every step and evaluation."""

    def __init__(
        self,
        progress: bool,
        callback,
        device: torch.device,
        world: int,
        time_budget: float | None = None,
        guard: _ParameterGuard | None = None,
    ):
        self.progress = progress
        self.callback = callback
        self.device = device
        self.world = world
        self.budget_option = time_budget
        self.time_budget: float | None = None
        self.guard = guard
        self.bar = None
        self.t0 = time.perf_counter()
        self.tokens = 0
        self.total = 0
        self.done = 0

    def on_start(self, total: int, done: int) -> None:
        self.t0 = time.perf_counter()
        # Read only now: the Rust core has checked the option by then (a number, not NaN).
        budget = None if self.budget_option is None else float(self.budget_option)
        self.time_budget = budget if budget and math.isfinite(budget) else None
        self.total, self.done = total, done
        if self.progress:
            from tqdm.auto import tqdm

            # With a time budget the steps it allows are not known until steps have
            # been timed: no total (and no ETA) until then, see _fit_to_budget.
            self.bar = tqdm(
                total=None if self.time_budget is not None else total,
                initial=done,
                unit="step",
                desc="train",
                dynamic_ncols=True,
            )

    def _fit_to_budget(self, n: int) -> None:
        """The bar's total (hence its ETA) once ``n`` steps are done: the steps planned,
        or those the time budget leaves room for at the rate so far, whichever is fewer
        (at least one more while time is left, since the budget is checked before each
        step)."""
        if self.bar is None or self.time_budget is None:
            return
        elapsed = time.perf_counter() - self.t0
        steps = n - self.done
        if steps <= 0 or elapsed <= 0:
            return
        left = self.time_budget - elapsed
        reachable = n + (max(1, math.ceil(steps / elapsed * left)) if left > 0 else 0)
        self.bar.total = min(self.total, reachable)

    def finish(self, stop_reason: str) -> None:
        """Closes the bar at the step the run ended on (a time budget's end is the
        run's end, not a shortfall)."""
        if self.bar is not None and stop_reason == "time_budget":
            self.bar.total = self.bar.n
            self.bar.refresh()

    def on_step(self, m: dict[str, Any]) -> None:
        self.tokens += m["tokens"]
        m["ppl"] = math.exp(min(m["loss"], 700.0))
        m["event"] = "step"
        if self.bar is not None:
            rate = self.tokens * self.world / max(time.perf_counter() - self.t0, 1e-9)
            self.bar.set_postfix(
                loss=f"{m['loss']:.3f}",
                ppl=f"{m['ppl']:.1f}",
                tok_s=f"{rate:,.0f}",
                lr=f"{m['lr']:.3g}",
                refresh=False,
            )
            self._fit_to_budget(self.bar.n + 1)
            self.bar.update(1)
        self._call_back(m)

    def on_eval(self, m: dict[str, Any]) -> None:
        m["event"] = "eval"
        if self.bar is not None:
            note = " (best)" if m["improved"] else f"; lr {m['lr']:.3g}"
            self.bar.write(f"step {m['step']}: valid ppl {m['valid_ppl']:.2f}{note}")
        self._call_back(m)

    def _call_back(self, m: dict[str, Any]) -> None:
        if self.callback is not None:
            self.callback(m["step"], m)
            if self.guard is not None:
                self.guard.check(m["step"])

    def rng_state(self) -> list[tuple[str, Tensor]]:
        states = [("cpu", torch.get_rng_state())]
        if self.device.type == "cuda":
            states.append(("cuda", torch.cuda.get_rng_state(self.device)))
        return states

    def set_rng_state(self, states: list[tuple[str, Tensor]]) -> None:
        for name, t in states:
            if name == "cpu":
                torch.set_rng_state(t.cpu())
            elif name == "cuda" and self.device.type == "cuda":
                torch.cuda.set_rng_state(t.cpu(), self.device)

    def all_reduce(self, grads: list[Tensor]) -> None:
        flat = torch.cat([g.reshape(-1) for g in grads])
        torch.distributed.all_reduce(flat)
        flat.div_(self.world)
        offset = 0
        for g in grads:
            n = g.numel()
            g.copy_(flat[offset : offset + n].view_as(g))
            offset += n

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def train(
    model,
    train: Data,
    valid: Data | None = None,
    *,
    recipe: str = "plain",
    batch_size: int = DEFAULT,
    bptt: int = DEFAULT,
    epochs: int = 1,
    max_steps: int | None = None,
    time_budget: float | None = None,
    optimizer: str = DEFAULT,
    lr: float = DEFAULT,
    weight_decay: float = DEFAULT,
    momentum: float = 0.0,
    clip: float | None = DEFAULT,
    weight_drop: float = DEFAULT,
    dropout_input: float | None = DEFAULT,
    dropout_hidden: float | None = DEFAULT,
    dropout_output: float | None = DEFAULT,
    dropout_embedding: float = DEFAULT,
    alpha: float = DEFAULT,
    beta: float = DEFAULT,
    variable_bptt: bool = DEFAULT,
    nonmono: int = DEFAULT,
    lr_decay: float = 0.25,
    patience: int = 0,
    eval_every: int | None = None,
    seed: int | None = None,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    callback: Callable[[int, dict[str, Any]], None] | None = None,
) -> History:
    """Trains a :class:`rustrnn.LanguageModel` with truncated back-propagation through time.

    The data is cut into ``batch_size`` contiguous streams (PyTorch's word_language_model
    ``batchify``) read in windows of ``bptt`` tokens, each target the next token. The
    state at the end of one window is detached and carried into the next; it restarts
    from zeros at each epoch. Every step runs in Rust with the GIL released: forward,
    backward (the stack's own, the rest by libtorch autograd), gradient clipping by
    global L2 norm, and the optimizer (torch.optim's update rules) updating the model's
    Parameters in place.

    Args:
        model: the :class:`rustrnn.LanguageModel` to train (in place).
        train: text, a path to a UTF-8 text file, or a 1-D LongTensor of ids; text is
            encoded with ``model.vocab``.
        valid: the same kinds, or None. Its perplexity is measured (eval mode, no
            dropout) after each epoch and every ``eval_every`` steps.
        recipe: the defaults of every keyword below marked "recipe": ``"plain"``
            (pytorch/examples' word_language_model loop, with Adam) or ``"awd"``
            (AWD-LSTM's regularisation and NT-ASGD, Merity et al. 2018, with the published
            Penn Treebank settings: ``batch_size=20, bptt=70, optimizer="nt_asgd", lr=30,
            weight_decay=1.2e-6, clip=0.25, weight_drop=0.5, dropout_input=0.4,
            dropout_hidden=0.25, dropout_output=0.4, dropout_embedding=0.1, alpha=2,
            beta=1, variable_bptt=True, nonmono=5``; ``rustrnn.training.RECIPES``). A
            keyword given explicitly overrides its recipe's value. AWD-LSTM's model is
            ``LanguageModel(vocab, 400, 1150, 3, tie_weights=True)`` (the tie through a
            projection); the recipe sets only training options.
        batch_size: parallel streams ``B``. Recipe; plain: 32.
        bptt: window length ``T`` in tokens. Recipe; plain: 64.
        epochs: passes over ``train``. Default: 1.
        max_steps: stop after this many steps in all (resumed ones included).
        time_budget: stop after this many seconds (checked before each step); None or
            ``math.inf`` for no limit. The progress bar's total and ETA then follow the
            steps the budget leaves room for.
        optimizer: ``'adam'``, ``'adamw'``, ``'sgd'`` or ``'nt_asgd'`` (AWD-LSTM's
            non-monotonically triggered averaged SGD: SGD until a validation perplexity is
            worse than the best of those before the last ``nonmono``, then
            ``torch.optim.ASGD(t0=0, lambd=0)``; evaluation, ``best.safetensors`` and the
            model at the end hold the averaged weights; it needs ``valid`` to switch, and
            replaces the ``lr_decay`` plateau rule). Recipe; plain: ``'adam'``.
        lr: learning rate. Recipe; plain: 2e-3.
        weight_decay: L2 penalty (decoupled for ``'adamw'``). Recipe; plain: 0.
        momentum: SGD momentum. Default: 0.
        clip: max global gradient norm, or None (or ``math.inf``) for no clipping.
            Recipe; plain: 0.25.
        weight_drop: DropConnect on the recurrent stack's hidden-to-hidden matrices
            (``weight_hh_l*``): one mask per window, the gradient reaching the raw weights.
            Recipe; plain: 0.
        dropout_input: locked (variational) dropout on the embeddings' output: one mask
            per sequence, shared by every timestep; None keeps the model's own dropout
            there. Recipe; plain: None.
        dropout_hidden: locked dropout between recurrent layers (the stack then runs
            layer by layer); None keeps the stack's own dropout. Recipe; plain: None.
        dropout_output: locked dropout on the last layer's output, before the head;
            None keeps the model's own dropout. Recipe; plain: None.
        dropout_embedding: drops whole rows of the embedding (a dropped word is zero
            wherever it occurs in the window), the rest rescaled. Recipe; plain: 0.
        alpha: activation regularisation, ``alpha * mean(dropped_output**2)``.
            Recipe; plain: 0.
        beta: temporal activation regularisation, ``beta * mean((h[t] - h[t-1])**2)``
            on the last layer's output before dropout. Recipe; plain: 0.
        variable_bptt: window lengths drawn as AWD-LSTM draws them (``bptt`` with
            probability 0.95, else ``bptt / 2``; then Normal(that, 5), truncated, at least
            5), each step's learning rate scaled by its window's length over ``bptt``.
            Recipe; plain: False.
        nonmono: NT-ASGD's non-monotone interval. Recipe: 5.

        The masks are drawn from torch's default generator
        (:func:`rustrnn.functional.dropout_mask`, one draw each) in the order the forward
        pass meets them: embedding rows ``(V, 1)``, input ``(1, B, E)``, one per
        ``weight_hh`` matrix, one ``(1, B, H)`` after each layer but the last, output
        ``(1, B, H)``; the window length (a float64 ``torch.rand`` then ``torch.randn``)
        before them. The step's reported loss is the cross-entropy alone.
        lr_decay: when the validation perplexity does not improve on the best, the
            learning rate is multiplied by this (after ``patience`` such evaluations).
            Default: 0.25.
        patience: non-improving evaluations tolerated before a decay. Default: 0.
        eval_every: also evaluate every this many steps.
        seed: ``torch.manual_seed(seed)`` first (dropout draws from torch's generator).
        checkpoint_dir: write ``last.safetensors`` (after each evaluation, each epoch,
            and when training stops or is interrupted) and ``best.safetensors`` (best
            validation perplexity) there. Both load with
            :meth:`rustrnn.LanguageModel.load`. The directory is created if needed and
            checked (a writable directory) before the first step; one that already
            holds files (another run's checkpoints) is refused with FileExistsError
            unless ``resume`` or ``overwrite`` is set, so no run replaces another's
            checkpoints unasked.
        resume: continue from ``checkpoint_dir/last.safetensors`` when it exists (the
            weights, optimizer state, learning rate, RNG state, carried state, position
            and history are restored, so the losses continue exactly as an
            uninterrupted run's); start afresh when it does not.
        overwrite: start afresh in a ``checkpoint_dir`` that holds files (with
            ``resume`` too, a ``last.safetensors`` there is resumed from instead). The
            first checkpoint this run writes replaces ``last.safetensors``, and the
            replaced run's ``best.safetensors`` (and the ``model.safetensors`` the
            ``rustrnn train`` command saves) are removed then, so the two runs' files
            never mix; a run that fails before its first checkpoint changes nothing.
        progress: show a tqdm progress bar (loss, perplexity, tokens/s, lr).
        callback: ``callback(step, metrics)`` after every step (``metrics["event"] ==
            "step"``: loss, ppl, lr, grad_norm, tokens_per_sec, epoch, ...) and every
            evaluation (``"eval"``: valid_ppl, best_valid_ppl, lr, improved).

    Returns:
        The :class:`History` of the run (the resumed run's included).

    Raises:
        KeyboardInterrupt: Ctrl-C (or a callback raising it) stops training within one
            step; ``last.safetensors`` is written first when ``checkpoint_dir`` is set.
            The model stays usable (finite weights, Parameters unchanged otherwise) and
            the exception's ``history`` attribute holds the :class:`History` so far
            (``stop_reason == "interrupted"``). Any other exception from the callback
            is handled the same way and re-raised as is.
        FloatingPointError: the loss (or the gradient norm) is not finite; the message
            names the step. Training stops before that update; no checkpoint is written.
            Or an update made a weight non-finite (a learning rate far too high): the
            message names the step and the parameter, and says the weights are spoiled.
        TypeError: an option of the wrong type (a float ``batch_size``, a str ``lr``,
            ...); the message names it.
        ValueError: bad options, data too short for ``batch_size``, or a checkpoint
            that does not match the model, the data or the options.
        FileExistsError: ``checkpoint_dir`` holds files and neither ``resume`` nor
            ``overwrite`` is set.
        IsADirectoryError: ``train`` or ``valid`` names a directory.
        RuntimeError: float or bool ids (as ``torch.nn.Embedding`` raises), or a
            callback replaced one of the model's Parameters.
    """
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}: expected one of {tuple(RECIPES)}")
    given = dict(
        batch_size=batch_size,
        bptt=bptt,
        optimizer=optimizer,
        lr=lr,
        weight_decay=weight_decay,
        clip=clip,
        weight_drop=weight_drop,
        dropout_input=dropout_input,
        dropout_hidden=dropout_hidden,
        dropout_output=dropout_output,
        dropout_embedding=dropout_embedding,
        alpha=alpha,
        beta=beta,
        variable_bptt=variable_bptt,
        nonmono=nonmono,
    )
    chosen = {k: RECIPES[recipe][k] if v is DEFAULT else v for k, v in given.items()}
    vocab = model.vocab
    device = model.embedding.weight.device
    # Before the data moves there; the Rust core checks it again but cannot name
    # devices besides CPU and CUDA.
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"rustrnn.train needs the model on a CPU or CUDA device, got {device}")
    train_ids = as_ids(train, vocab, "train").to(device)
    valid_ids = None if valid is None else as_ids(valid, vocab, "valid").to(device)
    if seed is not None:
        torch.manual_seed(seed)
    rank, world = _distributed()
    if world > 1:
        with torch.no_grad():
            params = model.state_dict(keep_vars=True).values()
            for p in {id(t): t for t in params}.values():
                torch.distributed.broadcast(p, src=0)
    resume_from = None
    if resume:
        if checkpoint_dir is None:
            raise ValueError("resume=True needs checkpoint_dir")
        last = os.path.join(os.fspath(checkpoint_dir), "last.safetensors")
        if os.path.exists(last):
            resume_from = last

    # The types and the value rules are the Rust core's (TypeError, ValueError naming
    # the option); only the bools take Python's truthiness here.
    options = {
        **chosen,
        "variable_bptt": bool(chosen["variable_bptt"]),
        "epochs": epochs,
        "max_steps": max_steps,
        "time_budget": time_budget,
        "momentum": momentum,
        "lr_decay": lr_decay,
        "patience": patience,
        "eval_every": eval_every,
        "checkpoint_dir": checkpoint_dir,
        "rank": rank,
        "world_size": world,
        "resume": bool(resume),
        "overwrite": bool(overwrite),
    }
    guard = _ParameterGuard(model) if callback is not None else None
    hooks = _Hooks(progress and rank == 0, callback, device, world, time_budget, guard)
    try:
        fields = _rustrnn.train_lm(
            model, train_ids, valid_ids, options, resume_from, hooks, world > 1
        )
        history = History(**fields)
        hooks.finish(history.stop_reason)
    except BaseException as e:
        partial = getattr(e, "history", None)
        if isinstance(partial, dict):
            e.history = History(**partial)  # type: ignore[attr-defined]
        raise
    finally:
        hooks.close()
    return history


def evaluate(model, data: Data, *, batch_size: int = 10, bptt: int = 64) -> float:
    """Perplexity ``exp(mean cross-entropy)`` of ``model`` on ``data`` (eval mode, no
    dropout), read as :func:`train` reads its validation data: ``batch_size`` streams
    (fewer if the data is short) in windows of ``bptt``, the state carried across
    windows.

    Args:
        model: a :class:`rustrnn.LanguageModel`.
        data: text, a path to a UTF-8 file, or a 1-D LongTensor of ids.
        batch_size: parallel streams. Default: 10.
        bptt: window length. Default: 64.
    """
    ids = as_ids(data, model.vocab, "data").to(model.embedding.weight.device)
    return _rustrnn.evaluate_lm(model, ids, batch_size, bptt)
