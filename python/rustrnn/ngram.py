"""An n-gram language model: P(w_i | w_{i-N+1} .. w_{i-1}) from counts, smoothed.

Counting, estimation (interpolated modified Kneser-Ney as KenLM's ``lmplz`` estimates it,
Kneser-Ney with one discount, add-k), ARPA files, scoring and generation run in Rust with
the GIL released. The conventions are KenLM's, with two differences spelled out below:
natural logs by default, and rustrnn's tokenization.

Sentences and special tokens:

* A sentence is a line. ``<s>`` begins its context and ``</s>`` ends it; ``<s>`` is never
  predicted, ``</s>`` is (it is the probability that the line ends there).
* The :class:`~rustrnn.Vocab` tokenizes: ``level="char"`` (every character, the space
  included) or ``"word"`` (words and punctuation). Its ``<unk>`` is ARPA's ``<unk>``, which
  every unknown token becomes and which has its own probability; its ``<eos>`` is ``</s>``
  (at word level the Vocab emits it for each line break; at char level the character
  ``"\\n"`` is ``</s>``). So the vocabulary must have the specials ``<unk>`` and ``<eos>``
  (``Vocab.build``'s default).
* Logs: ``score``, ``full_scores`` and ``log_prob`` return natural logs, like
  :class:`~rustrnn.LanguageModel`; KenLM returns log10. Pass ``log10=True`` to get
  KenLM's numbers, or divide by ``math.log(10)``. ARPA files hold log10, as they must.
"""

from __future__ import annotations

from typing import List, NamedTuple, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from . import _rustrnn
from .lm import Evaluation, perplexity_of, stop_rule

SMOOTHINGS = ("modified_kneser_ney", "kneser_ney", "add_k")
TextOrIds = Union[str, Tensor, Sequence[int]]

__all__ = ["NGramLM", "NGramScore", "SMOOTHINGS"]


class NGramScore(NamedTuple):
    """One token's score, as :meth:`NGramLM.full_scores` returns it (KenLM's
    ``full_scores`` tuple with the token in front; natural log unless ``log10=True``)."""

    token: str
    log_prob: float
    ngram_order: int
    oov: bool


class NGramLM:
    """A word- or character-level backoff n-gram language model (what an ARPA file holds).

    Make one with :meth:`fit` or :meth:`load_arpa`. The model is a proper distribution:
    after any context the probabilities of its :meth:`words` (``<s>`` excluded) sum to 1.

    Attributes:
        vocab: the :class:`rustrnn.Vocab` that reads text into the model's words; ids given
            to and returned by the methods are this vocabulary's.
    """

    def __init__(self, model: _rustrnn.NGramModel, vocab=None) -> None:
        self._model = model
        self.vocab = vocab if vocab is not None else model.vocab()

    # ----------------------------------------------------------------- building
    @classmethod
    def fit(
        cls,
        text_or_ids,
        vocab,
        order: int = 3,
        smoothing: str = "modified_kneser_ney",
        *,
        k: Optional[float] = None,
    ) -> "NGramLM":
        """Counts the n-grams of a text and estimates the model.

        Counting streams: memory holds the distinct n-grams, never the text's ids, and an
        iterable (an open file) is read as it goes.

        Args:
            text_or_ids: text (its lines are the sentences), a 1-D sequence of the
                vocabulary's ids (``<eos>`` ends a sentence), or an iterable of str such as
                an open file (each item one or more whole lines).
            vocab: the :class:`rustrnn.Vocab` to tokenize with; it needs the specials
                ``<unk>`` and ``<eos>``.
            order: N, from 1 to 8. Default: 3.
            smoothing: ``'modified_kneser_ney'`` (interpolated, three discounts per order
                from the counts of counts, as KenLM's lmplz), ``'kneser_ney'`` (one
                discount per order) or ``'add_k'``.
            k: add-k's pseudo-count, > 0 (default 1); only with ``smoothing='add_k'``.

        Raises:
            ValueError: a bad order, smoothing or k; a vocabulary without ``<unk>`` and
                ``<eos>``; no text.
        """
        if not isinstance(text_or_ids, (str, Tensor)) and _looks_like_ids(text_or_ids):
            text_or_ids = torch.as_tensor(list(text_or_ids), dtype=torch.long)
        model = _rustrnn.NGramModel.fit(text_or_ids, vocab, order, smoothing, k)
        return cls(model, vocab)

    @classmethod
    def load_arpa(
        cls, path, *, level: Optional[str] = None, lower: Optional[bool] = None
    ) -> "NGramLM":
        """Reads an ARPA file, rustrnn's or another toolkit's (SRILM, KenLM, ...).

        Args:
            path: str or os.PathLike.
            level: ``'char'`` or ``'word'``: how text is split into the file's words.
                Default: what a rustrnn file says, else ``'word'``.
            lower: lower-case text before scoring. Default: what a rustrnn file says,
                else False.

        Raises:
            ValueError: a malformed file (the message names the file and the line).
            OSError: the file cannot be read.
        """
        return cls(_rustrnn.NGramModel.load_arpa(path, level, lower))

    def save_arpa(self, path) -> None:
        """Writes a standard ARPA file (log10 probabilities and backoff weights),
        atomically. A ``# rustrnn.ngram`` comment line first records the tokenization, so
        :meth:`load_arpa` reads the model back as it was; other toolkits skip it."""
        self._model.save_arpa(path)

    # -------------------------------------------------------------- properties
    @property
    def order(self) -> int:
        """N: the longest n-grams."""
        return self._model.order

    @property
    def smoothing(self) -> Optional[str]:
        """How the model was estimated, or None when read from an ARPA file."""
        return self._model.smoothing

    @property
    def k(self) -> Optional[float]:
        """add-k's k, else None."""
        return self._model.k

    @property
    def discounts(self) -> List[Tuple[float, float, float]]:
        """Kneser-Ney's ``(D1, D2, D3+)`` per order (one value thrice for ``'kneser_ney'``;
        KenLM's fallback 0.5, 1, 1.5 where the counts of counts cannot give them)."""
        return self._model.discounts

    @property
    def counts(self) -> List[int]:
        """The number of n-grams of each order (the ARPA header's counts)."""
        return self._model.counts

    def words(self) -> List[str]:
        """The model's words by id: ``<unk>``, ``<s>``, ``</s>``, then the other tokens;
        :meth:`next_log_probs` is indexed by them."""
        return self._model.words()

    def __repr__(self) -> str:
        s = f"NGramLM(order={self.order}, level='{self.vocab.level}'"
        if self.smoothing != "modified_kneser_ney":
            s += f", smoothing={self.smoothing!r}"
        if self.k is not None:
            s += f", k={self.k:g}"
        return s + f", counts={self.counts})"

    # ----------------------------------------------------------------- scoring
    def log_prob(self, text_or_ids: TextOrIds) -> Tuple[Tensor, Tensor]:
        """log P(w1..wm) and the per-token log-probabilities log P(w_i | w_<i).

        As :meth:`LanguageModel.log_prob`: the text is read after a line break (``<s>``
        begins the context), each line break is ``</s>`` and is scored, the next line
        begins with ``<s>`` again; nothing is added after the last token.

        Args:
            text_or_ids: text, tokenized with :attr:`vocab`, or a 1-D sequence of its ids.

        Returns:
            ``(total, per_token)``: a 0-d float64 tensor and a ``(m,)`` one (natural log).
        """
        per_token = self._model.stream_scores(text_or_ids)
        if per_token.numel() == 0:
            raise ValueError("cannot score an empty sequence")
        return per_token.sum(), per_token

    def perplexity(self, text_or_ids: TextOrIds) -> float:
        """exp(-mean log P(w_i | w_<i)) over the tokens of :meth:`log_prob`."""
        _, per_token = self.log_prob(text_or_ids)
        return perplexity_of(-per_token.mean().item())

    def score(self, lines, *, bos: bool = True, eos: bool = True, log10: bool = False):
        """log P of sentences, as KenLM's ``Model.score`` (but natural log by default).

        Args:
            lines: one line (a str) or a list of lines (str or 1-D id sequences). A str
                holding several lines is the sum over them.
            bos: begin each sentence with ``<s>``.
            eos: end each sentence with ``</s>``, whose probability is added.
            log10: return log10, KenLM's unit (``log10 = ln / math.log(10)``).

        Returns:
            A float for one str; for a list, a float64 tensor ``(len(lines),)``, as
            :meth:`LanguageModel.score` returns.
        """
        if isinstance(lines, str):
            return self._model.score([lines], bos, eos, log10)[0]
        if isinstance(lines, Tensor):
            raise TypeError("lines must be a str or a list of lines; use [ids] for one id line")
        return torch.tensor(self._model.score(list(lines), bos, eos, log10), dtype=torch.float64)

    def full_scores(
        self, line: TextOrIds, *, bos: bool = True, eos: bool = True, log10: bool = False
    ) -> List[NGramScore]:
        """One :class:`NGramScore` ``(token, log_prob, ngram_order, oov)`` per scored token,
        like KenLM's ``full_scores``: ``ngram_order`` is the length of the longest n-gram the
        model had (1 for a unigram), ``oov`` whether the token became ``<unk>``. With eos the
        last record is ``</s>``. Tokens are spelled as the vocabulary splits the text."""
        return [NGramScore(*t) for t in self._model.full_scores(line, bos, eos, log10)]

    def evaluate(self, text_or_lines, *, bos: bool = True, eos: bool = True) -> Evaluation:
        """Totals over many lines with KenLM's definitions (its ``query`` summary).

        Args:
            text_or_lines: text (its lines) or a list of lines (str or id sequences).
            bos, eos: as for :meth:`score`.

        Returns:
            An :class:`~rustrnn.lm.Evaluation` (the type :meth:`LanguageModel.evaluate`
            returns): ``tokens`` (each ``</s>`` and ``<unk>`` counted), ``oovs``, the total
            ``log_prob`` (natural log), ``perplexity_including_oovs`` =
            ``exp(-log_prob / tokens)``, ``perplexity_excluding_oovs`` (the ``<unk>``
            tokens' terms and count left out) and ``bits_per_token``.
        """
        lines = [text_or_lines] if isinstance(text_or_lines, str) else list(text_or_lines)
        return Evaluation(*self._model.evaluate(lines, bos, eos))

    def next_log_probs(self, context: TextOrIds = "", *, bos: bool = True) -> Tensor:
        """log p(w | context) of every word ``w`` of :meth:`words` (``<s>``: -inf): a
        float64 tensor ``(len(words()),)`` whose ``exp`` sums to 1.

        Args:
            context: text or ids, read after a line break when ``bos``.
            bos: begin the context with ``<s>``.
        """
        return self._model.next_log_probs(context, bos)

    # ---------------------------------------------------------------- generate
    def _stop_ids(self, stop) -> List[int]:
        """``generate``'s ``stop`` as ids: parsed as :class:`~rustrnn.LanguageModel`'s
        (ints are ids), but a str here is one token of the vocabulary."""
        ids, tokens = stop_rule(stop)
        for s in tokens:
            if s not in self.vocab:
                raise ValueError(f"stop token {s!r} is not in the vocabulary")
            ids.append(self.vocab[s])
        return ids

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
    ):
        """Continues ``prompt`` by drawing each next token from the model's distribution.

        Each step takes the whole next-token distribution of every sample (as
        :meth:`next_log_probs`) and draws from it with rustrnn's multinomial sampler
        (:func:`rustrnn.sample`), in Rust with the GIL released. Words of probability 0
        (``<s>``) are never drawn. A drawn ``</s>`` is a line break, after which the
        context begins again with ``<s>``.

        Args:
            prompt: text or a 1-D sequence of ids, read after a line break.
            max_tokens: tokens to generate per sample.
            temperature, top_k, top_p, greedy: as for :func:`rustrnn.sample`.
            num_samples: continuations to draw at once.
            stop: a token or id (or a list of them) that ends a continuation; it is kept.
            generator: a CPU ``torch.Generator`` for the draws (default: torch's global
                one, so ``torch.manual_seed`` makes the output repeat).
            return_ids: also return the generated ids.

        Returns:
            A list of ``num_samples`` strings (the continuations, without the prompt), or
            ``(strings, ids)`` with ``ids`` a list of 1-D LongTensors.
        """
        out = self._model.generate(
            prompt,
            max_tokens,
            num_samples,
            self._stop_ids(stop),
            float(temperature),
            top_k,
            top_p,
            greedy,
            generator,
        )
        seqs = [torch.tensor(s, dtype=torch.long) for s in out]
        texts = [self.vocab.decode(s) for s in seqs]
        return (texts, seqs) if return_ids else texts


def _looks_like_ids(x) -> bool:
    """Whether ``x`` is a sequence of ints (not an iterable of lines)."""
    if not isinstance(x, (list, tuple)):
        return hasattr(x, "dtype") and hasattr(x, "shape")  # a numpy array
    return len(x) > 0 and all(isinstance(i, int) and not isinstance(i, bool) for i in x[:1])
