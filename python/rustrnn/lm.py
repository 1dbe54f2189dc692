"""A recurrent language model: P(w1..wm) = prod_i P(w_i | w_1..w_{i-1}).

Embedding -> dropout -> rustrnn stack -> dropout -> head: a linear layer to vocabulary
logits, or an adaptive softmax (``torch.nn.AdaptiveLogSoftmaxWithLoss``). The recurrent
stack's forward and backward run in Rust; generation runs the whole token loop in Rust
with the GIL released.
"""

from __future__ import annotations

import math
import operator
from typing import List, NamedTuple, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from . import _rustrnn, checkpoint
from .nn import GRU, LSTM, RNN, Dropout
from .vectors import WordVectors

TextOrIds = Union[str, Tensor, Sequence[int]]


def _stack(spec: _rustrnn.RnnSpec) -> nn.Module:
    """The stack module of the RnnSpec the Rust core configured for a language model
    (``lm_stack_spec``: its rules, such as dropout between layers only when there are
    several, are written there only)."""
    mode, input_size, hidden_size, layers, bias, batch_first, dropout, bidir, proj = spec.arguments
    kw = dict(bias=bias, batch_first=batch_first, dropout=dropout, bidirectional=bidir)
    if mode == "LSTM":
        return LSTM(input_size, hidden_size, layers, proj_size=proj, **kw)
    if mode == "GRU":
        return GRU(input_size, hidden_size, layers, **kw)
    nonlinearity = "relu" if mode == "RNN_RELU" else "tanh"
    return RNN(input_size, hidden_size, layers, nonlinearity=nonlinearity, **kw)


def stop_rule(stop) -> Tuple[List[int], List[str]]:
    """``(ids, strings)`` of a ``generate`` call's ``stop`` (one item or a list): ints
    are token ids, strs come back as given (LanguageModel matches them on the decoded
    text, NGramLM reads each as one token). Floats and bools are refused, not truncated."""
    if stop is None:
        return [], []
    single = (
        isinstance(stop, str)
        or not hasattr(stop, "__iter__")
        or (isinstance(stop, Tensor) and stop.dim() == 0)
    )
    ids: List[int] = []
    strings: List[str] = []
    for s in [stop] if single else list(stop):
        if isinstance(s, str):
            strings.append(s)
            continue
        try:
            if isinstance(s, bool):
                raise TypeError
            ids.append(operator.index(s))
        except TypeError:
            raise TypeError(
                "stop must be a str, an int token id, or a list of them; got "
                f"{type(s).__name__} {s!r}"
            ) from None
    return ids, strings


class TokenScore(NamedTuple):
    """One token's score, as :meth:`LanguageModel.full_scores` returns it."""

    token: str
    log_prob: float
    oov: bool


def perplexity_of(mean_nll: float) -> float:
    """``exp(mean_nll)``: a model that gives the text (next to) no probability has an
    infinite perplexity, as ``torch.exp`` says, rather than an OverflowError."""
    try:
        return math.exp(mean_nll)
    except OverflowError:
        return math.inf


class Evaluation:
    """Totals of :meth:`LanguageModel.evaluate`, with KenLM's definitions.

    Attributes:
        tokens: scored tokens (a line's end counts when eos).
        oovs: scored tokens that were out of the vocabulary.
        log_prob: the natural-log probability of all of them.
        perplexity_including_oovs: ``exp(-log_prob / tokens)``.
        perplexity_excluding_oovs: the same without the OOV tokens' terms and count.
        bits_per_token: ``-log_prob / tokens / ln 2``.
    """

    def __init__(self, tokens: int, oovs: int, log_prob: float, oov_log_prob: float) -> None:
        self.tokens = tokens
        self.oovs = oovs
        self.log_prob = log_prob
        self._oov_log_prob = oov_log_prob

    @property
    def perplexity_including_oovs(self) -> float:
        return perplexity_of(-self.log_prob / self.tokens) if self.tokens else math.nan

    @property
    def perplexity_excluding_oovs(self) -> float:
        n = self.tokens - self.oovs
        return perplexity_of(-(self.log_prob - self._oov_log_prob) / n) if n else math.nan

    @property
    def bits_per_token(self) -> float:
        return -self.log_prob / self.tokens / math.log(2) if self.tokens else math.nan

    def __repr__(self) -> str:
        return (
            f"Evaluation(tokens={self.tokens}, oovs={self.oovs}, log_prob={self.log_prob:.4f}, "
            f"perplexity_including_oovs={self.perplexity_including_oovs:.4f}, "
            f"perplexity_excluding_oovs={self.perplexity_excluding_oovs:.4f}, "
            f"bits_per_token={self.bits_per_token:.4f})"
        )


def _shift_packed(ids: PackedSequence, first: int) -> PackedSequence:
    """Every sequence moved one step later, ``first`` at its start and its last token
    dropped: the same lengths, so the same packing. Step t's rows continue step t-1's
    first rows, which in the packed data sit ``batch_sizes[t-1]`` rows earlier."""
    data = torch.empty_like(ids.data)
    sizes = ids.batch_sizes.tolist()
    data[: sizes[0]] = first
    start = sizes[0]
    prev_start = 0
    for size in sizes[1:]:
        data[start : start + size] = ids.data[prev_start : prev_start + size]
        prev_start, start = start, start + size
    return ids._replace(data=data)


class LanguageModel(nn.Module):
    """A word- or character-level recurrent language model.

    Args:
        vocab: the :class:`rustrnn.Vocab` whose ids the model reads and predicts.
        embed_size: width of the word vectors. Default: 128.
        hidden_size: width of the recurrent state. Default: 256.
        num_layers: recurrent layers. Default: 2.
        cell: ``'lstm'``, ``'gru'``, ``'rnn_tanh'`` or ``'rnn_relu'``. Default: ``'lstm'``.
        dropout: dropout on the embeddings, between layers and before the head. Default: 0.2.
        tie_weights: share the embedding and head matrices (needs the full head). When
            ``embed_size != hidden_size`` the stack's output first goes through
            ``self.projection``, an ``nn.Linear(hidden_size, embed_size, bias=False)``, to the
            embedding's width (AWD-LSTM ties its 400-wide embedding to a 1150-wide stack the
            same way, there by a last layer of embedding width).
        head: ``'full'``, a linear layer (``nn.Linear(hidden_size, V)``) to every token's
            logit; or ``'adaptive'``, an adaptive softmax (Grave et al. 2017):
            ``self.head`` is a ``torch.nn.AdaptiveLogSoftmaxWithLoss(hidden_size, V,
            cutoffs, div_value=div_value)`` (torch's default ``head_bias=False``), with
            torch's initialisation. Training, scoring and generation all use the
            distribution it defines. Default: ``'full'``.
        cutoffs: the adaptive head's cluster boundaries, torch's ``cutoffs``: ids ``[0,
            cutoffs[0])`` form the shortlist the head scores directly, the rest are cut
            into clusters at each cutoff. The vocabulary's ids put the specials first,
            then the tokens by decreasing frequency (ties by the token), so the cuts are
            by frequency. Default (None): 2,000, 10,000, 50,000, ... (each five times the
            last) up to ``V / 2``; a vocabulary under 4,000 tokens gets one cutoff at
            ``max(1, V // 4)`` (see :func:`rustrnn._rustrnn.adaptive_cutoffs`).
            ``config["cutoffs"]`` holds the ones chosen.
        div_value: the adaptive head's ``div_value``: cluster ``i`` (from 0) projects the
            state to ``floor(hidden_size / div_value ** (i + 1))`` units. Default: 4.0.

    Shape:
        ``forward(ids (T, B) or (T), state)`` returns ``logits (T, B, V) or (T, V)`` and the
        final state of the stack. With the adaptive head they are log-probabilities
        (``head.log_prob``), which are logits of the same distribution: ``log_softmax``
        leaves them as they are (to rounding) and ``F.cross_entropy`` of them is the
        model's loss.
    """

    def __init__(
        self,
        vocab,
        embed_size: int = 128,
        hidden_size: int = 256,
        num_layers: int = 2,
        cell: str = "lstm",
        dropout: float = 0.2,
        tie_weights: bool = False,
        head: str = "full",
        cutoffs: Optional[Sequence[int]] = None,
        div_value: float = 4.0,
    ) -> None:
        super().__init__()
        self.vocab = vocab
        if head == "adaptive":
            cutoffs = _rustrnn.adaptive_cutoffs(len(vocab), cutoffs)  # the default, or checked
        self.config = dict(
            embed_size=embed_size,
            hidden_size=hidden_size,
            num_layers=num_layers,
            cell=cell,
            dropout=float(dropout),  # torch's coercions; the rules are Rust's (ValueError)
            tie_weights=bool(tie_weights),
            head=head,
            cutoffs=cutoffs,
            div_value=float(div_value),
        )
        spec = _rustrnn.lm_stack_spec(self.config)
        self.embedding = nn.Embedding(len(vocab), embed_size)
        self.drop = Dropout(dropout)
        self.rnn = _stack(spec)
        if tie_weights and embed_size != hidden_size:
            self.projection = nn.Linear(hidden_size, embed_size, bias=False)
        else:
            self.projection = None
        if self._adaptive:
            self.head = nn.AdaptiveLogSoftmaxWithLoss(
                hidden_size, len(vocab), cutoffs, div_value=self.config["div_value"]
            )
        else:
            self.head = nn.Linear(embed_size if tie_weights else hidden_size, len(vocab))
        if tie_weights:
            self.head.weight = self.embedding.weight
        self.reset_parameters()

    @property
    def _adaptive(self) -> bool:
        return self.config["head"] == "adaptive"

    def reset_parameters(self) -> None:
        """The word_language_model initialisation: U(-0.1, 0.1) embeddings and head, zero
        bias; an adaptive head and the projection get torch's own (their
        ``reset_parameters``)."""
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        if self.projection is not None:
            self.projection.reset_parameters()
        if self._adaptive:
            self.head.reset_parameters()
        else:
            if not self.config["tie_weights"]:
                nn.init.uniform_(self.head.weight, -0.1, 0.1)
            nn.init.zeros_(self.head.bias)
        self.rnn.reset_parameters()

    def extra_repr(self) -> str:
        s = f"vocab_size={len(self.vocab)}"
        if self._adaptive:
            s += f", head='adaptive', cutoffs={self.config['cutoffs']}"
            if self.config["div_value"] != 4.0:
                s += f", div_value={self.config['div_value']}"
        return s

    def _scores(self, x: Tensor) -> Tensor:
        """The head on ``(..., H)``: logits, or the adaptive head's log-probabilities."""
        if self.projection is not None:
            x = self.projection(x)
        if self._adaptive:
            flat = self.head.log_prob(x.reshape(-1, x.size(-1)))
            return flat.view(*x.shape[:-1], self.head.n_classes)
        return self.head(x)

    def forward(self, ids: Union[Tensor, PackedSequence], state=None):
        """Logits for the next token at every position (log-probabilities with the
        adaptive head: logits of the same distribution).

        Args:
            ids: ``(T, B)`` or ``(T,)`` token ids, or a
                :class:`~torch.nn.utils.rnn.PackedSequence` of id sequences of different
                lengths (``pack_sequence([ids_1, ids_2, ...], enforce_sorted=False)``).
            state: the stack's state from a previous call (carried across windows), or None.

        Returns:
            ``(logits, state)``: ``(T, B, V)`` (``(T, V)`` unbatched), or a PackedSequence
            of ``(N, V)`` logits laid out as ``ids``; and the final state (each
            sequence's own, in the caller's order, for packed input).
        """
        if isinstance(ids, PackedSequence):
            x = ids._replace(data=self.drop(self.embedding(ids.data)))
            out, state = self.rnn(x, state)
            return out._replace(data=self._scores(self.drop(out.data))), state
        x = self.drop(self.embedding(ids))
        out, state = self.rnn(x, state)
        return self._scores(self.drop(out)), state

    def to_torch(self) -> nn.Module:
        """This model in plain torch, with a copy of the weights: a
        :class:`rustrnn.export.TorchLanguageModel` made of ``nn.Embedding``, the torch.nn
        stack (:meth:`rustrnn.LSTM.to_torch`), the projection if any, and ``nn.Linear`` (or the
        ``nn.AdaptiveLogSoftmaxWithLoss``), under the same state_dict names, whose
        ``forward(ids, state)`` returns the same logits (log-probabilities) and state. It needs no
        rustrnn to run, and ``torch.export.export`` takes it."""
        from .export import language_model_to_torch

        return language_model_to_torch(self)

    # ------------------------------------------------------------ checkpoints
    def save(self, path) -> None:
        """Writes the weights, config and vocabulary to one ``.safetensors`` file,
        atomically; see :func:`rustrnn.checkpoint.save`.

        Raises:
            OSError: the file cannot be written.
        """
        checkpoint.save(path, self)

    @classmethod
    def load(cls, path, map_location=None) -> "LanguageModel":
        """Reads a file written by :meth:`save` (or a training checkpoint of
        :func:`rustrnn.train`), validating the whole file first.

        Args:
            path: the ``.safetensors`` file.
            map_location: device for the parameters (default: CPU).

        Returns:
            The model in eval mode, with the dtype it was saved in. Torch's global RNG
            is left as it was (building the module draws initial weights).

        Raises:
            OSError: the file cannot be read.
            ValueError: the file is empty, truncated, not a rustrnn checkpoint, or its
                tensors are missing, extra, misshaped or of the wrong dtype (the
                message names the file).
        """
        saved = checkpoint.read(path)
        with torch.random.fork_rng(devices=[]):
            model = cls(saved.vocab, **saved.config)
        model.to(dtype=saved.dtype)
        model.load_state_dict(saved.tensors, strict=True)
        if map_location is not None:
            model.to(map_location)
        return model.eval()

    # ----------------------------------------------------------------- scoring
    def _ids(self, text_or_ids: TextOrIds) -> Tensor:
        if isinstance(text_or_ids, str):
            ids = self.vocab.encode(text_or_ids)
        else:
            ids = torch.as_tensor(text_or_ids, dtype=torch.long)
        if ids.dim() != 1:
            raise ValueError(f"expected a 1-D sequence of ids, got shape {tuple(ids.shape)}")
        return ids.to(self.embedding.weight.device)

    def _boundary_id(self) -> Optional[int]:
        """The token a scored text is read after: a line break, which is ``<eos>`` at word
        level and the character ``"\\n"`` at char level (where ``<eos>`` never occurs in
        training text)."""
        if self.vocab.level == "char" and "\n" in self.vocab:
            return self.vocab["\n"]
        return self.vocab.eos_id

    def _scored(self, ids: Tensor) -> Tuple[Tensor, Tensor]:
        """Context and targets: the sequence is read after a line break (see
        :meth:`_boundary_id`), so every token is scored; without one in the vocabulary the
        first token only conditions the rest."""
        boundary = self._boundary_id()
        if boundary is not None:
            context = torch.cat([ids.new_tensor([boundary]), ids[:-1]])
            return context, ids
        if ids.numel() < 2:
            raise ValueError("without a line-break token in the vocabulary, scoring needs 2 tokens")
        return ids[:-1], ids[1:]

    def log_prob(self, text_or_ids: Union[TextOrIds, PackedSequence]):
        """log P(w1..wm) and the per-token log-probabilities log P(w_i | w_<i).

        Returns:
            ``(total, per_token)``: a 0-d tensor and a ``(m,)`` tensor (``(m-1,)`` when
            the vocabulary has no line-break token), computed in eval mode without gradients.
            For a PackedSequence of id sequences: ``(totals, per_token)`` with ``totals``
            of shape ``(B,)`` in the caller's order and ``per_token`` a PackedSequence laid
            out as the input (each sequence read after a line break, so this needs a
            line-break token in the vocabulary).

        Args:
            text_or_ids: text, encoded with the model's vocabulary, or a 1-D sequence of ids;
                or a PackedSequence of id sequences, scored together in one forward pass.
        """
        if isinstance(text_or_ids, PackedSequence):
            return self._log_prob_packed(text_or_ids)
        if not isinstance(text_or_ids, str):
            from .training import as_index_tensor

            text_or_ids = as_index_tensor(text_or_ids)  # float ids raise as nn.Embedding does
        ids = self._ids(text_or_ids)
        if ids.numel() == 0:
            raise ValueError("cannot score an empty sequence")
        context, targets = self._scored(ids)
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                logits, _ = self(context.unsqueeze(1))
                logp = F.log_softmax(logits.squeeze(1).double(), dim=-1)
                per_token = logp.gather(1, targets.unsqueeze(1)).squeeze(1)
        finally:
            self.train(was_training)
        return per_token.sum(), per_token

    def _log_prob_packed(self, packed: PackedSequence) -> Tuple[Tensor, PackedSequence]:
        boundary = self._boundary_id()
        if boundary is None:
            raise ValueError("scoring packed sequences needs a line-break token in the vocabulary")
        if packed.data.dtype != torch.long:
            raise TypeError(f"packed ids must be int64, got {packed.data.dtype}")
        device = self.embedding.weight.device
        targets = packed.to(device)
        # Each sequence's context is the boundary then its own tokens but the last, so
        # every sequence keeps its length and the packing (batch sizes, order) stays.
        context = _shift_packed(targets, boundary)
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                logits, _ = self(context)
                logp = F.log_softmax(logits.data.double(), dim=-1)
                per_token = logp.gather(1, targets.data.unsqueeze(1)).squeeze(1)
        finally:
            self.train(was_training)
        per_token = targets._replace(data=per_token)
        padded, _ = pad_packed_sequence(per_token, batch_first=True)
        return padded.sum(1), per_token

    def perplexity(self, text_or_ids: TextOrIds) -> float:
        """exp(-mean log P(w_i | w_<i)) over the scored tokens."""
        _, per_token = self.log_prob(text_or_ids)
        return perplexity_of(-per_token.mean().item())

    # ------------------------------------------------------ scoring many lines
    def _line(self, line: Union[str, Tensor, Sequence[int]], bos: bool, eos: bool):
        """``(context, targets, tokens, oov)`` of one line: what it is read from, what it
        predicts (its tokens, then the line break with eos), their spellings and which
        were out of vocabulary. With bos the line is read after a line break, as
        :meth:`log_prob` reads text; without, its first token only conditions the rest."""
        vocab = self.vocab
        if isinstance(line, str):
            spelled = vocab.tokenize(line)
            ids = vocab.encode(line).tolist()
            unk = vocab.unk_id
            oov = [i == unk and t != "<unk>" for t, i in zip(spelled, ids)]
        else:
            ids = self._ids(line).tolist()
            spelled = [vocab.token(i) for i in ids]
            oov = [False] * len(ids)
        boundary = self._boundary_id()
        if (bos or eos) and boundary is None:
            raise ValueError("bos and eos need a line-break token in the vocabulary")
        context = ([boundary] if bos else []) + ids
        targets = ids + ([boundary] if eos else [])
        if eos:
            spelled, oov = spelled + [vocab.token(boundary)], oov + [False]
        if not bos:
            # The first token has nothing to be predicted from.
            targets, spelled, oov = targets[1:], spelled[1:], oov[1:]
        return context[: len(targets)], targets, spelled, oov

    def _score_lines(self, lines, bos: bool, eos: bool):
        if isinstance(lines, (str, Tensor)):
            raise TypeError(
                "lines must be a list of lines (str or id sequences), got a single "
                f"{type(lines).__name__}; use [line]"
            )
        parsed = [self._line(line, bos, eos) for line in lines]
        scores = _rustrnn.score_lines(self, [p[0] for p in parsed], [p[1] for p in parsed])
        return parsed, scores

    def score(self, lines, *, bos: bool = True, eos: bool = True) -> Tensor:
        """log P of each line, many lines batched together (sorted by length, packed) in
        Rust without the GIL, as KenLM's ``Model.score`` (natural log, not log10).

        Args:
            lines: a list of lines, each a str (encoded with the model's vocabulary) or a
                1-D sequence of ids.
            bos: read each line after a line break (the boundary the model saw in
                training), so its first token is scored; without, the first token only
                conditions the rest.
            eos: add the probability of the line break that ends the line.

        Returns:
            A float64 tensor ``(len(lines),)`` in the lines' order; a line with nothing
            to score gives 0.
        """
        _, scores = self._score_lines(lines, bos, eos)
        return torch.tensor([math.fsum(s) for s in scores], dtype=torch.float64)

    def full_scores(self, line, *, bos: bool = True, eos: bool = True) -> List["TokenScore"]:
        """One :class:`TokenScore` ``(token, log_prob, oov)`` per scored token of
        ``line``, like KenLM's ``full_scores`` (natural log; ``oov``: the token was not in
        the vocabulary and was read as ``<unk>``). ``bos`` and ``eos`` as for
        :meth:`score`; with eos the last record is the line break."""
        (parsed,), (scores,) = self._score_lines([line], bos, eos)
        return [
            TokenScore(token, logp, oov) for token, logp, oov in zip(parsed[2], scores, parsed[3])
        ]

    def evaluate(self, text_or_lines, *, bos: bool = True, eos: bool = True) -> "Evaluation":
        """Totals over many lines, with KenLM's out-of-vocabulary accounting.

        Args:
            text_or_lines: text (split into lines) or a list of lines.
            bos, eos: as for :meth:`score`.

        Returns:
            An :class:`Evaluation`: scored ``tokens`` (line breaks included with eos),
            ``oovs`` among them, the total ``log_prob`` (natural log), perplexity including
            and excluding OOVs (KenLM's ``query`` definitions) and ``bits_per_token``.
        """
        lines = text_or_lines.splitlines() if isinstance(text_or_lines, str) else text_or_lines
        parsed, scores = self._score_lines(list(lines), bos, eos)
        tokens = sum(len(s) for s in scores)
        log_prob = math.fsum(x for s in scores for x in s)
        oov_flags = [f for p in parsed for f in p[3]]
        oov_log_prob = math.fsum(x for p, s in zip(parsed, scores) for x, f in zip(s, p[3]) if f)
        return Evaluation(tokens, sum(oov_flags), log_prob, oov_log_prob)

    # ------------------------------------------------------------ word vectors
    def embeddings(self) -> Tensor:
        """The word vectors: a detached ``(V, E)`` tensor, row i for token id i."""
        return self.embedding.weight.detach()

    def vectors(self) -> WordVectors:
        """The word vectors as a :class:`rustrnn.WordVectors` (gensim's ``KeyedVectors``
        queries, evaluation and files): a float32 copy of the embedding matrix (which is
        the head's weight too when ``tie_weights``), keyed by the vocabulary's tokens."""
        return WordVectors(self.embedding.weight.detach(), self.vocab)

    def load_vectors(self, vectors, *, binary: bool = False, freeze: bool = False) -> int:
        """Copies pretrained vectors into the embedding (and so into a tied head) for every
        vocabulary token they have; the other rows keep their values.

        Args:
            vectors: a :class:`rustrnn.WordVectors`, a gensim ``KeyedVectors`` (anything
                with ``index_to_key`` and ``vectors``), or the path of a word2vec text
                file (``binary=True``: a binary one).
            binary: the file's format, for a path.
            freeze: stop training the embedding (``requires_grad=False``; a tied head is
                the same tensor, so it is frozen too). :func:`rustrnn.train` skips frozen
                parameters.

        Returns:
            How many of the vocabulary's tokens got a vector.

        Raises:
            ValueError: the vectors' width is not the model's ``embed_size``.
        """
        if isinstance(vectors, WordVectors):
            wv = vectors
        elif hasattr(vectors, "index_to_key") and hasattr(vectors, "vectors"):
            wv = WordVectors(torch.as_tensor(vectors.vectors), list(vectors.index_to_key))
        else:
            wv = WordVectors.load_word2vec_format(vectors, binary=binary)
        embed_size = self.config["embed_size"]
        if wv.vector_size != embed_size:
            raise ValueError(
                f"the vectors are {wv.vector_size} wide, but the model's embed_size is {embed_size}"
            )
        pairs = [(i, wv.get_index(t)) for i, t in enumerate(self.vocab.tokens()) if t in wv]
        weight = self.embedding.weight
        if pairs:
            ids = torch.tensor([p[0] for p in pairs], device=weight.device)
            rows = torch.tensor([p[1] for p in pairs])
            with torch.no_grad():
                weight[ids] = wv.vectors[rows].to(device=weight.device, dtype=weight.dtype)
        if freeze:
            weight.requires_grad_(False)
        return len(pairs)

    def _vector(self, token: Union[str, int]) -> Tensor:
        idx = self.vocab[token] if isinstance(token, str) else int(token)
        if not 0 <= idx < len(self.vocab):
            raise IndexError(f"token id {idx} is outside the vocabulary of size {len(self.vocab)}")
        return self.embeddings()[idx]

    def similarity(self, a: Union[str, int], b: Union[str, int]) -> float:
        """Cosine similarity of two tokens' word vectors."""
        return F.cosine_similarity(self._vector(a), self._vector(b), dim=0).item()

    def similar(self, token: Union[str, int], k: int = 10) -> List[Tuple[str, float]]:
        """The k tokens whose vectors are nearest (by cosine) to ``token``'s, with scores."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        query = self._vector(token)
        idx = self.vocab[token] if isinstance(token, str) else int(token)
        scores = F.cosine_similarity(self.embeddings(), query.unsqueeze(0), dim=1)
        scores[idx] = -math.inf
        k = min(k, len(self.vocab) - 1)
        values, ids = scores.topk(k)
        return [(self.vocab.token(int(i)), float(v)) for v, i in zip(values, ids)]

    # --------------------------------------------------------------- generate
    @staticmethod
    def _check_prompt_ids(prompt) -> None:
        """Integer ids only, as ``torch.nn.Embedding`` takes them (same class and message):
        float ids are refused, not truncated."""
        if isinstance(prompt, str):
            return
        t = prompt if isinstance(prompt, Tensor) else torch.as_tensor(prompt)
        if t.numel() and t.dtype not in (torch.long, torch.int):
            raise RuntimeError(
                "Expected tensor for argument #1 'indices' to have one of the following scalar "
                f"types: Long, Int; but got {t.type()} instead (while checking arguments for "
                "embedding)"
            )

    def generate(
        self,
        prompt: TextOrIds,
        max_tokens: int,
        *,
        temperature: float = 1.0,
        top_k: Optional[int] = None,
        top_p: Optional[float] = None,
        greedy: bool = False,
        num_samples: int = 1,
        stop=None,
        generator: Optional[torch.Generator] = None,
        return_ids: bool = False,
        min_p: Optional[float] = None,
        typical_p: Optional[float] = None,
        repetition_penalty: float = 1.0,
        frequency_penalty: float = 0.0,
        presence_penalty: float = 0.0,
        no_repeat_ngram_size: int = 0,
        num_beams: int = 1,
        length_penalty: float = 1.0,
        early_stopping: bool = False,
        num_return_sequences: int = 1,
        return_log_probs: bool = False,
    ):
        """Continues ``prompt`` by drawing each next token from the model's distribution.

        The prompt primes the state, read as :meth:`log_prob` reads a text: after a line
        boundary (``"\\n"`` at char level, ``<eos>`` at word level), so an empty prompt
        starts a new line. Then the whole token loop runs in Rust with the GIL released
        and no autograd graph. ``num_samples`` continuations are one batch. The
        output grows as tokens come, so ``max_tokens`` may be far more than a run reaches
        before ``stop`` or Ctrl-C (``KeyboardInterrupt``) ends it.

        Args:
            prompt: text (encoded with the vocabulary; unknown tokens follow its ``<unk>``
                rule) or a 1-D sequence of integer ids.
            max_tokens: tokens to generate per sample, at most.
            temperature, top_k, top_p, greedy: as for :func:`rustrnn.sample`.
            min_p, typical_p, repetition_penalty, frequency_penalty, presence_penalty,
                no_repeat_ngram_size: the rest of :func:`rustrnn.sample`'s decoding chain,
                in transformers' order (penalties, temperature, top-k, top-p, min-p,
                typical); the penalties look at the prompt and the continuation so far.
            num_samples: continuations to draw at once.
            stop: what ends a continuation (the token that ends it is kept): a str, matched
                on the continuation's decoded text, so it may span tokens or lie inside one
                (like Hugging Face's ``stop_strings``; a special's spelling such as
                ``"<eos>"`` also stops at that token); an int, a token id; or a list of
                them.
            generator: a ``torch.Generator`` for the draws, on the CPU or on the model's
                device (a CUDA generator for a model on CUDA draws there, with no copy
                per token). Default: torch's global one of the model's device, so
                ``torch.manual_seed`` makes the output repeat.
            return_ids: also return the generated ids.
            num_beams: above 1, beam search instead of sampling (transformers'
                ``num_beams``): the continuations of highest ``log P / len **
                length_penalty`` (``len`` counting the stop token), batched over the
                beams in Rust. It takes no sampling options and no stop strings.
            length_penalty: above 0 favours longer continuations, below 0 shorter ones.
            early_stopping: stop as soon as ``num_beams`` continuations have ended,
                rather than when no running beam can beat them.
            num_return_sequences: how many of the best to return (beam search).
            return_log_probs: also return each continuation's ``log P(continuation |
                prompt)`` (beam search), which equals ``log_prob(prompt +
                continuation)`` minus ``log_prob(prompt)``.

        Returns:
            A list of ``num_samples`` strings (the continuations, without the prompt), or
            ``(strings, ids)`` with ``ids`` a list of 1-D LongTensors.

        Raises:
            RuntimeError: float ids (as ``torch.nn.Embedding``); an embedding, stack and
                head that do not fit together (as ``forward`` raises); memory that cannot
                be had for ``num_samples`` rows or the tokens so far.
            IndexError: a prompt or stop id outside the vocabulary.
            ValueError: a bad option value (``max_tokens < 0``, ``num_samples < 1``, ...),
                an empty stop string.
            TypeError: a count that is not an int.
        """
        self._check_prompt_ids(prompt)
        ids = self._ids(prompt).cpu()
        boundary = self._boundary_id()
        if boundary is not None:
            ids = torch.cat([ids.new_tensor([boundary]), ids])
        stop_ids, stop_strings = stop_rule(stop)
        if num_beams != 1 or num_return_sequences != 1 or return_log_probs:
            sampling = dict(
                temperature=temperature != 1.0,
                top_k=top_k is not None,
                top_p=top_p is not None,
                greedy=greedy,
                num_samples=num_samples != 1,
                stop_strings=bool(stop_strings),
                min_p=min_p is not None,
                typical_p=typical_p is not None,
                penalties=(
                    repetition_penalty,
                    frequency_penalty,
                    presence_penalty,
                    no_repeat_ngram_size,
                )
                != (1.0, 0.0, 0.0, 0),
            )
            given = [k for k, v in sampling.items() if v]
            if given:
                raise ValueError(
                    f"beam search (num_beams={num_beams}) takes none of {', '.join(given)}"
                )
            hyps = _rustrnn.beam_search(
                self,
                ids,
                max_tokens,
                stop_ids,
                num_beams,
                float(length_penalty),
                bool(early_stopping),
                num_return_sequences,
            )
            seqs = [torch.tensor(h, dtype=torch.long) for h, _ in hyps]
            texts = [self.vocab.decode(s) for s in seqs]
            result = (texts, seqs) if return_ids else (texts,)
            if return_log_probs:
                result += ([lp for _, lp in hyps],)
            return result if len(result) > 1 else result[0]
        out, lengths = _rustrnn.generate(
            self,
            ids,
            max_tokens,
            num_samples,
            stop_ids,
            stop_strings,
            float(temperature),
            top_k,
            top_p,
            greedy,
            generator,
            min_p=min_p,
            typical_p=typical_p,
            repetition_penalty=float(repetition_penalty),
            frequency_penalty=float(frequency_penalty),
            presence_penalty=float(presence_penalty),
            no_repeat_ngram_size=no_repeat_ngram_size,
        )
        seqs = [out[i, : lengths[i]].cpu() for i in range(num_samples)]
        texts = [self.vocab.decode(s) for s in seqs]
        return (texts, seqs) if return_ids else texts
