"""Type stubs for ``rustrnn._rustrnn``, the compiled Rust core (pyo3 glue in src/python/).

Most users want the torch.nn face in :mod:`rustrnn` instead; the low-level pieces
(``RnnSpec``, ``Tape``, ``cell_param_specs``, ``cell_forward``, ``generate``, ``save_model``,
``load_model``)
are what those modules call. Checked against the built extension by
``python -m mypy.stubtest rustrnn._rustrnn`` (tests/test_stubs.py).
"""

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Literal, Protocol, TypedDict, final

import numpy as np
import numpy.typing as npt
from torch import Generator, Tensor
from typing_extensions import TypeAlias

_Path: TypeAlias = str | os.PathLike[str]
_Ids: TypeAlias = Tensor | npt.NDArray[np.integer[Any]] | Sequence[int]

__all__ = [
    "_guard_selftest",
    "HISTORY_FIELDS",
    "STOP_REASONS",
    "TORCH_VERSION",
    "dropout_mask",
    "linear_cross_entropy",
    "linear_cross_entropy_backward",
    "linear_cross_entropy_chunk_rows",
    "Optimizer",
    "RnnSpec",
    "Tape",
    "Vocab",
    "__version__",
    "cell_forward",
    "cell_param_specs",
    "get_rnn_engine",
    "set_rnn_engine",
    "check_dropout",
    "claim_checkpoint_dir",
    "clip_grad_norm",
    "cpu_features",
    "evaluate_lm",
    "generate",
    "beam_search",
    "load_model",
    "lm_stack_spec",
    "adaptive_cutoffs",
    "multinomial",
    "NGramModel",
    "sample",
    "process_logits",
    "save_model",
    "score_lines",
    "train_lm",
    "WordVectors",
]

__version__: str
TORCH_VERSION: str
"""The libtorch version the extension was compiled against (``import rustrnn`` checks it)."""
HISTORY_FIELDS: tuple[str, ...]
"""The fields of the core's training ``History``, in order: the keys of the dict
``train_lm`` returns, of ``rustrnn.History`` and of the history checkpoints store."""
STOP_REASONS: tuple[str, ...]
"""Every ``History.stop_reason`` the core writes: ``"epochs"``, ``"max_steps"``,
``"time_budget"``, ``"interrupted"``, ``"non_finite"``, ``"error"``."""

@final
class RnnSpec:
    """The configuration of a recurrent stack, validated as torch.nn.RNNBase does.

    Args:
        mode: 'LSTM', 'GRU', 'RNN_TANH' or 'RNN_RELU', as torch.nn.RNNBase spells it
            (ValueError otherwise).
        input_size, hidden_size, num_layers, bias, batch_first, dropout,
        bidirectional, proj_size: as for torch.nn.LSTM.
    """

    def __new__(
        cls,
        mode: str,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
    ) -> RnnSpec: ...
    def __reduce__(
        self,
    ) -> tuple[type[RnnSpec], tuple[str, int, int, int, bool, bool, float, bool, int]]:
        """``(RnnSpec, constructor arguments)``, for pickle, copy and torch.save."""
    def __eq__(self, value: object, /) -> bool: ...
    def __ne__(self, value: object, /) -> bool: ...
    __hash__: None  # type: ignore[assignment]
    @property
    def mode(self) -> str:
        """The cell type, by torch.nn.RNNBase's name (``'LSTM'``, ...)."""
    @property
    def arguments(self) -> tuple[str, int, int, int, bool, bool, float, bool, int]:
        """The constructor's arguments, in its order: what a copy is built from."""
    def param_specs(self) -> list[tuple[str, list[int]]]:
        """``(name, shape)`` of every parameter, in torch's ``_flat_weights_names`` order."""
    def check_host_allocation(self, element_size: int) -> None:
        """Raises RuntimeError if the parameters, at ``element_size`` bytes each, would not
        fit in this machine's memory."""
    def extra_repr(self) -> str:
        """The arguments that differ from torch.nn's defaults, as torch.nn.RNNBase.extra_repr."""
    def forward(
        self,
        input: Tensor,
        hx: Tensor | None,
        cx: Tensor | None,
        weights: Sequence[Tensor],
        train: bool,
        keep_tape: bool,
        batch_sizes: Sequence[int] | None = None,
    ) -> tuple[Tensor, Tensor, Tensor | None, Tape | None]:
        """Runs the stack: ``(output, h_n, c_n or None, tape or None)``; with
        ``batch_sizes``, ``input`` is a PackedSequence's data and the output is too."""

@final
class Tape:
    """Activations a forward call kept for its backward pass (made by RnnSpec.forward)."""

    def backward(
        self,
        d_output: Tensor,
        d_hn: Tensor | None,
        d_cn: Tensor | None,
        need_input_grad: bool,
    ) -> tuple[Tensor | None, Tensor, Tensor | None, list[Tensor]]:
        """Back-propagates: ``(d_input or None, d_hx, d_cx or None, [d_weight, ...])``."""

@final
class Vocab:
    """A token <-> id map at character or word level (``Vocab.build`` / ``Vocab.load``)."""

    @staticmethod
    def build(
        text: str,
        level: Literal["char", "word"] = "char",
        min_freq: int = 1,
        max_size: int | None = None,
        lower: bool = False,
        specials: Sequence[str] = ("<unk>", "<eos>"),
    ) -> Vocab:
        """Counts the tokens of ``text`` and numbers them (specials first, then by frequency)."""
    @staticmethod
    def load(path: _Path) -> Vocab:
        """Reads a vocabulary written by :meth:`save`."""
    def save(self, path: _Path) -> None:
        """Writes the vocabulary as versioned JSON, atomically."""
    def to_json(self) -> str:
        """The JSON document :meth:`save` writes, as a str."""
    @staticmethod
    def from_json(text: str) -> Vocab:
        """Reads the document :meth:`to_json` returns."""
    def __reduce__(self) -> tuple[Callable[[str], Vocab], tuple[str]]:
        """``(Vocab.from_json, (self.to_json(),))``, for pickle, copy and torch.save."""
    def encode(self, text: str) -> Tensor:
        """The ids of ``text``'s tokens: a LongTensor ``(T)``."""
    def decode(self, ids: _Ids) -> str:
        """The text of ``ids`` (a tensor of any shape, flattened, or a sequence of ints)."""
    def one_hot(self, ids: _Ids) -> Tensor:
        """One-hot float32 rows ``(*, len(self))`` of ``ids``."""
    def tokenize(self, text: str) -> list[str]:
        """The tokens of ``text`` before lookup."""
    def token(self, id: int) -> str:
        """The token of ``id``."""
    def tokens(self) -> list[str]:
        """Every token in id order, the specials first."""
    @property
    def level(self) -> str:
        """'char' or 'word'."""
    @property
    def lower(self) -> bool:
        """Whether text is lower-cased before counting and encoding."""
    @property
    def specials(self) -> list[str]:
        """The special tokens, in id order."""
    @property
    def unk_id(self) -> int | None:
        """The id of ``<unk>``, or None."""
    @property
    def eos_id(self) -> int | None:
        """The id of ``<eos>``, or None."""
    def __len__(self) -> int: ...
    def __getitem__(self, key: str, /) -> int: ...
    def __contains__(self, key: object, /) -> bool: ...
    def __iter__(self) -> Iterator[str]: ...
    def __eq__(self, value: object, /) -> bool: ...
    def __ne__(self, value: object, /) -> bool: ...
    __hash__: None  # type: ignore[assignment]

def cell_param_specs(
    mode: str, input_size: int, hidden_size: int, bias: bool
) -> list[tuple[str, list[int]]]:
    """``(name, shape)`` of a cell's parameters in torch.nn.RNNCellBase's order, for
    ``mode`` 'LSTM', 'GRU', 'RNN_TANH' or 'RNN_RELU'. Sizes of 0 are taken; a negative
    one, or a parameter past 2**63 elements, is torch.empty's RuntimeError, and
    ``gates * hidden_size`` past a 64-bit size its TypeError."""

def get_rnn_engine() -> str:
    """The stacks' engine preference: 'auto' or 'libtorch' (see rustrnn.backends)."""

def set_rnn_engine(name: str) -> str:
    """Sets the stacks' engine preference ('auto' or 'libtorch', else ValueError) and
    returns the one it replaces."""

def cell_forward(
    mode: str,
    input: Tensor,
    hx: Tensor | None,
    cx: Tensor | None,
    weights: Sequence[Tensor],
) -> tuple[Tensor, Tensor | None]:
    """One step of a cell, differentiated by torch's autograd: ``(h', c' or None)``;
    ``mode`` as for :func:`cell_param_specs`."""

def generate(
    model: _LanguageModel,
    prompt: Tensor,
    max_tokens: int,
    num_samples: int,
    stop: Sequence[int],
    stop_strings: Sequence[str],
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    greedy: bool,
    generator: Generator | None,
    *,
    min_p: float | None = None,
    typical_p: float | None = None,
    repetition_penalty: float = 1.0,
    frequency_penalty: float = 0.0,
    presence_penalty: float = 0.0,
    no_repeat_ngram_size: int = 0,
) -> tuple[Tensor, list[int]]:
    """Generates ``num_samples`` continuations of ``prompt`` in one batch, without the GIL:
    ``(ids (num_samples, steps), lengths)``."""

def beam_search(
    model: _LanguageModel,
    prompt: Tensor,
    max_tokens: int,
    stop: Sequence[int],
    num_beams: int,
    length_penalty: float,
    early_stopping: bool,
    num_return_sequences: int,
) -> list[tuple[list[int], float]]:
    """Beam search after ``prompt``: the best continuations, ``[(ids, log P(ids | prompt))]``,
    best first, batched over the beams without the GIL."""

def score_lines(
    model: _LanguageModel,
    contexts: Sequence[Sequence[int]],
    targets: Sequence[Sequence[int]],
) -> list[list[float]]:
    """The natural-log probability of every target of every line, the lines batched
    together (sorted by length, packed), without the GIL; one list per line, in order."""

def _guard_selftest(message: str) -> None:
    """Panics inside the pyo3 guard: a RuntimeError naming the function (for the tests)."""

def save_model(path: _Path, model: _LanguageModel) -> None:
    """Writes a model checkpoint (a ``.safetensors`` file) atomically: the config, Vocab and
    tensors of ``model`` (a LanguageModel, or anything with ``config``, ``vocab`` and
    ``state_dict()``)."""

def load_model(path: _Path) -> tuple[str, dict[str, Any], Vocab, str, list[tuple[str, Tensor]]]:
    """Reads and validates a checkpoint: ``(kind, config, vocab, dtype, tensors)``."""

def lm_stack_spec(config: dict[str, Any]) -> RnnSpec:
    """The recurrent stack of a language model of ``config`` (``LanguageModel.config``),
    validated by the core's rules."""

def adaptive_cutoffs(vocab_size: int, cutoffs: Sequence[int] | None = None) -> list[int]:
    """The adaptive head's cutoffs for ``vocab_size`` tokens: ``cutoffs`` checked as torch
    checks them (its ValueError), or the default split when None (2,000, 10,000, 50,000,
    ... up to ``vocab_size / 2``; one cutoff at ``max(1, vocab_size // 4)`` under 4,000)."""

def dropout_mask(input: Tensor, p: float) -> Tensor:
    """A dropout mask shaped like ``input``: ``1 / (1 - p)`` with probability ``1 - p``, else 0."""

def linear_cross_entropy(
    input: Tensor,
    weight: Tensor,
    target: Tensor,
    bias: Tensor | None = None,
    reduction: str = "mean",
    ignore_index: int = -100,
    needs: tuple[bool, bool, bool] = (False, False, False),
    *,
    chunk_rows: int | None = None,
) -> tuple[Tensor, Tensor | None, Tensor | None, Tensor | None]:
    """``cross_entropy(linear(input, weight, bias), target)`` a chunk of rows at a time
    (``chunk_rows``; None: the measured default); with ``needs`` (input, weight, bias),
    the loss's gradients in the same pass: ``(loss, d_input, d_weight, d_bias)``, each
    gradient None unless asked for."""

def linear_cross_entropy_backward(
    input: Tensor,
    weight: Tensor,
    target: Tensor,
    bias: Tensor | None,
    grad_output: Tensor,
    ignore_index: int,
    needs: tuple[bool, bool, bool],
    *,
    chunk_rows: int | None = None,
) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """The gradients of ``sum(grad_output * losses)`` for ``reduction="none"``'s per-row
    losses: ``(d_input, d_weight, d_bias)``, each None unless asked for."""

def linear_cross_entropy_chunk_rows(rows: int, classes: int) -> int:
    """The rows of one chunk ``linear_cross_entropy`` computes at a time."""

def check_dropout(p: float) -> None:
    """Raises torch's ValueError unless ``p`` is in [0, 1] ("dropout probability has to be
    between 0 and 1, but got {p}"), and TypeError unless it is a real number."""

def cpu_features() -> dict[str, str | None]:
    """The instruction set the fused float32 kernels and dropout run on.

    ``{"isa": ..., "detected": ..., "requested": ...}``: the level in use, the best this
    CPU supports (``"portable"``, ``"avx2"`` or ``"avx512"``), and ``RUSTRNN_CPU`` as set
    (None when unset), which caps the level. Raises ValueError when ``RUSTRNN_CPU`` names
    no level; warns (RuntimeWarning) when it names one this CPU lacks.
    """

def multinomial(
    input: Tensor,
    num_samples: int,
    replacement: bool = False,
    *,
    generator: Generator | None = None,
) -> Tensor:
    """Draws category indices from rows of non-negative weights (torch.multinomial's contract)."""

def sample(
    logits: Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    greedy: bool = False,
    generator: Generator | None = None,
    *,
    min_p: float | None = None,
    typical_p: float | None = None,
    repetition_penalty: float = 1.0,
    frequency_penalty: float = 0.0,
    presence_penalty: float = 0.0,
    no_repeat_ngram_size: int = 0,
    previous: Tensor | None = None,
) -> Tensor:
    """Next-token ids from logits, through the decoding chain in transformers' order:
    penalties on ``previous`` (repetition, frequency, presence, no repeated n-grams), then
    temperature, top-k, top-p, min-p and typical; or greedy (argmax of the penalized
    logits)."""

def process_logits(
    logits: Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    *,
    min_p: float | None = None,
    typical_p: float | None = None,
    repetition_penalty: float = 1.0,
    frequency_penalty: float = 0.0,
    presence_penalty: float = 0.0,
    no_repeat_ngram_size: int = 0,
    previous: Tensor | None = None,
) -> Tensor:
    """The logits ``sample`` draws from, after the decoding chain; removed tokens ``-inf``."""

@final
class Optimizer:
    """An optimizer with torch.optim's update rule, updating tensors in place.

    Args:
        method: 'sgd', 'adam' or 'adamw'.
        params: the tensors to update (in place, without autograd).
        lr: learning rate.
        weight_decay: L2 penalty (decoupled for 'adamw').
        momentum: SGD momentum (dampening 0, no Nesterov).
        betas, eps: Adam's coefficients.
    """

    def __new__(
        cls,
        method: str,
        params: Sequence[Tensor],
        lr: float,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        betas: tuple[float, float] = ...,  # (0.9, 0.999)
        eps: float = 1e-8,
    ) -> Optimizer: ...
    def step(self, grads: Sequence[Tensor]) -> None:
        """One update from ``grads`` (one per parameter, same shapes)."""
    @property
    def lr(self) -> float:
        """The learning rate; assigning it takes effect at the next step."""
    @lr.setter
    def lr(self, value: float) -> None: ...

def clip_grad_norm(grads: Sequence[Tensor], max_norm: float) -> float:
    """Scales ``grads`` in place to a global L2 norm of at most ``max_norm``
    (as ``torch.nn.utils.clip_grad_norm_``); returns the norm before clipping."""

def claim_checkpoint_dir(path: _Path, allow_existing: bool) -> None:
    """Creates ``path`` and checks it is a writable directory; refuses one that already
    holds files (``FileExistsError``) unless ``allow_existing``."""

class _LanguageModel(Protocol):
    """What a binding taking a language model reads: ``rustrnn.LanguageModel``'s config,
    Vocab and tensors by name (``state_dict(keep_vars=True)``, the Parameters)."""

    config: dict[str, Any]
    vocab: Vocab
    def state_dict(self, *, keep_vars: bool = ...) -> Any: ...

class _TrainOptions(TypedDict):
    """``rustrnn.train``'s options under its keyword names (TypeError naming a wrong one)."""

    batch_size: int
    bptt: int
    epochs: int
    max_steps: int | None
    time_budget: float | None
    optimizer: str
    lr: float
    weight_decay: float
    momentum: float
    clip: float | None
    lr_decay: float
    patience: int
    eval_every: int | None
    checkpoint_dir: _Path | None
    rank: int
    world_size: int
    resume: bool
    overwrite: bool

class _History(TypedDict):
    """The core's ``History``, field by field (``HISTORY_FIELDS``)."""

    steps: list[int]
    epochs: list[int]
    losses: list[float]
    lrs: list[float]
    grad_norms: list[float]
    tokens_per_sec: list[float]
    eval_steps: list[int]
    valid_ppls: list[float]
    best_valid_ppl: float | None
    stop_reason: str | None

def train_lm(
    model: _LanguageModel,
    train: Tensor,
    valid: Tensor | None,
    options: _TrainOptions,
    resume: _Path | None,
    hooks: Any,
    distributed: bool,
) -> _History:
    """Runs the training loop (see :func:`rustrnn.train`): the history's fields. An
    exception raised once the run started carries them as ``history``."""

def evaluate_lm(
    model: _LanguageModel,
    ids: Tensor,
    batch_size: int,
    bptt: int,
) -> float:
    """Perplexity ``exp(mean cross-entropy)`` of a language model on 1-D ids, in eval mode."""

_TextOrIds: TypeAlias = str | Tensor | Sequence[int]

@final
class NGramModel:
    """A backoff n-gram model in Rust (``rustrnn.NGramLM`` wraps it): log10 probabilities
    and backoffs per n-gram, and the Vocab that reads text into its words."""

    @staticmethod
    def fit(
        source: str | Tensor | Iterable[str],
        vocab: Vocab,
        order: int = 3,
        smoothing: str = "modified_kneser_ney",
        k: float | None = None,
    ) -> NGramModel:
        """Counts the n-grams of text, ids or an iterable of lines and estimates a model."""
    @staticmethod
    def load_arpa(path: _Path, level: str | None = None, lower: bool | None = None) -> NGramModel:
        """Reads an ARPA file (ValueError naming the line when malformed)."""
    def save_arpa(self, path: _Path) -> None:
        """Writes the model as an ARPA file, atomically."""
    def stream_scores(self, text_or_ids: _TextOrIds, log10: bool = False) -> Tensor:
        """Each token's log-probability, the text read as one stream after a line break."""
    def score(
        self, lines: Sequence[_TextOrIds], bos: bool = True, eos: bool = True, log10: bool = False
    ) -> list[float]:
        """Each line's log-probability as sentences (``<s>``/``</s>`` with bos/eos)."""
    def full_scores(
        self, line: _TextOrIds, bos: bool = True, eos: bool = True, log10: bool = False
    ) -> list[tuple[str, float, int, bool]]:
        """``(token, log_prob, ngram_order, oov)`` of every scored token."""
    def evaluate(
        self, lines: Sequence[_TextOrIds], bos: bool = True, eos: bool = True
    ) -> tuple[int, int, float, float]:
        """``(tokens, oovs, log_prob, oov_log_prob)`` over the lines (natural logs)."""
    def next_log_probs(self, context: _TextOrIds, bos: bool = True) -> Tensor:
        """The natural-log distribution ``(len(words()),)`` of the next word."""
    def generate(
        self,
        prompt: _TextOrIds,
        max_tokens: int,
        num_samples: int = 1,
        stop: Sequence[int] = ...,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        greedy: bool = False,
        generator: Generator | None = None,
    ) -> list[list[int]]:
        """Samples continuations (vocabulary ids) with rustrnn's sampler."""
    @property
    def order(self) -> int:
        """The order N."""
    @property
    def smoothing(self) -> str | None:
        """How it was estimated; None for a model read from an ARPA file."""
    @property
    def k(self) -> float | None:
        """add-k's k, or None."""
    @property
    def discounts(self) -> list[tuple[float, float, float]]:
        """Kneser-Ney's ``(D1, D2, D3+)`` per order."""
    @property
    def counts(self) -> list[int]:
        """The number of n-grams of each order."""
    def words(self) -> list[str]:
        """The model's words by id: ``<unk>``, ``<s>``, ``</s>``, then the others."""
    def vocab(self) -> Vocab:
        """The Vocab that reads text into the model's words (a new object)."""

_Term = str | Tensor

@final
class WordVectors:
    """Keys and their float32 vectors, queried with gensim's semantics
    (``rustrnn.WordVectors`` wraps it and takes gensim's flexible arguments)."""

    def __new__(cls, keys: Sequence[str], vectors: Tensor) -> WordVectors: ...
    def __len__(self) -> int: ...
    @property
    def keys(self) -> list[str]:
        """The keys in row order."""
    @property
    def vectors(self) -> Tensor:
        """A copy of the ``(len, dim)`` float32 vectors."""
    @property
    def dim(self) -> int:
        """The width of each vector."""
    def index(self, key: str) -> int | None:
        """The row of ``key``, or None."""
    def get_vector(self, key: str, norm: bool = False) -> Tensor:
        """A copy of the vector of ``key`` (unit length when ``norm``)."""
    def mean(
        self,
        terms: Sequence[tuple[_Term, float]],
        pre_normalize: bool,
        post_normalize: bool,
        ignore_missing: bool,
    ) -> Tensor:
        """gensim's ``get_mean_vector`` over ``(term, weight)`` pairs."""
    def most_similar(
        self,
        terms: Sequence[tuple[_Term, float]],
        topn: int | None,
        start: int,
        end: int | None,
        restrict_vocab: int | None,
    ) -> list[tuple[str, float]] | Tensor:
        """3CosAdd: the ``topn`` best ``(key, similarity)``, or every similarity."""
    def most_similar_cosmul(
        self,
        positive: Sequence[_Term],
        negative: Sequence[_Term],
        topn: int | None,
        restrict_vocab: int | None,
    ) -> list[tuple[str, float]] | Tensor:
        """3CosMul of the positive over the negative terms."""
    def doesnt_match(self, words: Sequence[str]) -> str:
        """The key that fits least with the others."""
    def similarity(self, a: str, b: str) -> float:
        """Cosine similarity of two keys."""
    def n_similarity(self, a: Sequence[str], b: Sequence[str]) -> float:
        """Cosine similarity of the means of two sets of keys."""
    def distances(self, term: _Term, others: Sequence[str]) -> Tensor:
        """``1 - cosine`` from a key or vector to ``others`` (every row when empty)."""
    def closer_than(self, a: str, b: str) -> list[str]:
        """The keys closer to ``a`` than ``b`` is."""
    def rank(self, a: str, b: str) -> int:
        """1 + the number of keys closer to ``a`` than ``b`` is."""
    def evaluate_word_pairs(
        self,
        path: _Path,
        delimiter: str,
        restrict_vocab: int,
        case_insensitive: bool,
        dummy4unknown: bool,
    ) -> tuple[tuple[float, float], tuple[float, float], float]:
        """``((pearson, p), (spearman, p), oov_percent)`` over a word-pair file."""
    def evaluate_word_analogies(
        self, path: _Path, restrict_vocab: int, case_insensitive: bool, dummy4unknown: bool
    ) -> tuple[float, list[tuple[str, list[list[str]], list[list[str]]]], float]:
        """``(accuracy, [(section, correct, incorrect), ...], oov_percent)``."""
    def save_word2vec_format(self, path: _Path, binary: bool, write_header: bool) -> None:
        """Writes the word2vec text or binary format, atomically."""
    @staticmethod
    def load_word2vec_format(
        path: _Path, binary: bool, limit: int | None, no_header: bool
    ) -> WordVectors:
        """Reads a word2vec text or binary file (GloVe's with ``no_header``)."""
