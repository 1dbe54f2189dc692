"""Word vectors with gensim's ``KeyedVectors`` queries, evaluation and file formats.

A :class:`WordVectors` holds one float32 vector per key (a copy: a model's vectors as
they were when it was made). Every query runs in Rust (``src/vectors/``): one
matrix-vector product over the rows and a partial sort, so 100 K x 300 vectors answer
in milliseconds. The names, arguments and results are gensim 4's, so code written for
``gensim.models.KeyedVectors`` runs on it; the vectors are torch tensors.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Dict, List, NamedTuple, Optional, Tuple, Union

import torch
from torch import Tensor

from . import _rustrnn

Key = str
VectorLike = Union[Tensor, Sequence[float], Any]  # Any: a numpy array
Term = Union[Key, VectorLike]
PathLike = Union[str, "os.PathLike[str]"]


class Correlation(NamedTuple):
    """A correlation coefficient and its two-sided p-value (as scipy's result, it
    unpacks as ``(statistic, pvalue)``)."""

    statistic: float
    pvalue: float


def _vector(v) -> Tensor:
    """A query vector as a float tensor (numpy arrays and lists included); the width is
    checked in Rust."""
    if isinstance(v, Tensor):
        return v if v.is_floating_point() else v.float()
    return torch.as_tensor(v, dtype=torch.float32)


def _term(x) -> Union[str, Tensor]:
    return x if isinstance(x, str) else _vector(x)


def _ensure_list(value) -> list:
    """gensim's rule: None is no terms; one key or one 1-D vector is a list of one; a
    2-D array is its rows."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, Tensor) or hasattr(value, "__array__"):
        t = _vector(value)
        return [t] if t.dim() == 1 else list(t)
    return list(value)


def _weighted(positive, negative) -> List[Tuple[Union[str, Tensor], float]]:
    """Terms with their weights: +1 for positive and -1 for negative ones unless a
    ``(term, weight)`` pair gives one."""
    terms = []
    for items, default in ((_ensure_list(positive), 1.0), (_ensure_list(negative), -1.0)):
        for item in items:
            if isinstance(item, tuple):
                term, weight = item
                terms.append((_term(term), float(weight)))
            else:
                terms.append((_term(item), default))
    return terms


def _count(name: str, value) -> Optional[int]:
    """gensim's optional counts: None or a non-negative int (0 and below count as none)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int or None, got {type(value).__name__}")
    return max(value, 0)


class WordVectors:
    """Keys (words) and their vectors, queried as gensim's ``KeyedVectors``.

    Args:
        vectors: ``(len(keys), dim)``, any floating dtype (copied to float32 on the CPU).
        vocab: a :class:`rustrnn.Vocab` (its tokens in id order are the keys), or a
            sequence of unique keys.

    Example::

        wv = model.vectors()                      # a LanguageModel's embedding
        wv.most_similar(positive=["king", "woman"], negative=["man"], topn=5)
        wv.save_word2vec_format("vectors.txt")    # loads in gensim, fastText, word2vec
    """

    def __init__(self, vectors: Tensor, vocab) -> None:
        keys = vocab.tokens() if isinstance(vocab, _rustrnn.Vocab) else list(vocab)
        self._core = _rustrnn.WordVectors(keys, vectors)

    @classmethod
    def _wrap(cls, core: _rustrnn.WordVectors) -> "WordVectors":
        wv = cls.__new__(cls)
        wv._core = core
        return wv

    # -------------------------------------------------------------- the table
    @property
    def index_to_key(self) -> List[str]:
        """The keys in row order."""
        return self._core.keys

    @property
    def key_to_index(self) -> Dict[str, int]:
        """Each key's row."""
        return {k: i for i, k in enumerate(self._core.keys)}

    @property
    def vectors(self) -> Tensor:
        """A copy of the ``(len, dim)`` float32 vectors."""
        return self._core.vectors

    @property
    def vector_size(self) -> int:
        return self._core.dim

    def __len__(self) -> int:
        return len(self._core)

    def __contains__(self, key) -> bool:
        return isinstance(key, str) and self._core.index(key) is not None

    def __getitem__(self, key_or_keys) -> Tensor:
        """The vector of a key, or the stacked vectors of a list of keys."""
        if isinstance(key_or_keys, str):
            return self._core.get_vector(key_or_keys)
        return torch.stack([self._core.get_vector(k) for k in key_or_keys])

    def __repr__(self) -> str:
        return f"WordVectors({len(self)} keys, dim={self.vector_size})"

    def get_index(self, key: str) -> int:
        """The row of ``key``; KeyError if it has none."""
        i = self._core.index(key)
        if i is None:
            raise KeyError(f"Key '{key}' not present")
        return i

    def has_index_for(self, key) -> bool:
        return key in self

    def get_vector(self, key: str, norm: bool = False) -> Tensor:
        """A copy of the vector of ``key``, scaled to unit length when ``norm``."""
        return self._core.get_vector(key, norm)

    def get_mean_vector(
        self, keys, weights=None, pre_normalize=True, post_normalize=False, ignore_missing=True
    ) -> Tensor:
        """The weighted mean of the keys' (or vectors') vectors over the sum of the weights'
        magnitudes, as gensim's; keys without a vector are skipped unless
        ``ignore_missing=False`` (KeyError)."""
        keys = _ensure_list(keys)
        if weights is None:
            weights = [1.0] * len(keys)
        weights = [float(w) for w in weights]
        if len(weights) != len(keys):
            raise ValueError("keys and weights array must have same number of elements")
        terms = [(_term(k), w) for k, w in zip(keys, weights)]
        return self._core.mean(terms, pre_normalize, post_normalize, ignore_missing)

    # ---------------------------------------------------------------- queries
    def most_similar(
        self,
        positive=None,
        negative=None,
        topn: Optional[int] = 10,
        clip_start: int = 0,
        clip_end: Optional[int] = None,
        restrict_vocab: Optional[int] = None,
    ):
        """The ``topn`` keys most similar (cosine) to the unit-scaled weighted mean of the
        unit-scaled positive and negative terms (3CosAdd: ``positive=["king", "woman"],
        negative=["man"]`` answers king - man + woman). The query's own keys are left out.

        Args:
            positive, negative: a key, a vector, or a list of keys, vectors and
                ``(key_or_vector, weight)`` pairs (weights default to +1 and -1).
            topn: how many; None (or 0, with gensim's falsy rule) gives every row's
                similarity as a tensor instead.
            clip_start, clip_end: search rows ``clip_start:clip_end`` only.
            restrict_vocab: search the first ``restrict_vocab`` rows only (overrides the
                clip bounds).

        Returns:
            ``[(key, similarity), ...]``, best first, or a tensor (``topn=None``).

        Raises:
            KeyError: a key without a vector.
            ValueError: no terms, or a vector of the wrong width.
        """
        if isinstance(topn, int) and not isinstance(topn, bool) and topn < 1:
            return []
        terms = _weighted(positive, negative)
        return self._core.most_similar(
            terms,
            _count("topn", topn) if topn else None,
            _count("clip_start", clip_start) or 0,
            _count("clip_end", clip_end) or None,
            _count("restrict_vocab", restrict_vocab) or None,
        )

    def most_similar_cosmul(
        self, positive=None, negative=None, topn: Optional[int] = 10, restrict_vocab=None
    ):
        """Analogies by 3CosMul (Levy and Goldberg 2014): the product of the cosines
        (shifted to [0, 1]) to the positive terms over the product of those to the
        negative ones. Keys are unit-scaled, vectors taken as given; the query's keys are
        left out. Unlike gensim 4.4, which ignores it here, ``restrict_vocab`` limits the
        search as in :meth:`most_similar`.

        Raises:
            ValueError: no positive term.
        """
        if isinstance(topn, int) and not isinstance(topn, bool) and topn < 1:
            return []
        pos = [_term(t) for t in _ensure_list(positive)]
        neg = [_term(t) for t in _ensure_list(negative)]
        return self._core.most_similar_cosmul(
            pos,
            neg,
            _count("topn", topn) if topn else None,
            _count("restrict_vocab", restrict_vocab) or None,
        )

    def similar_by_vector(self, vector, topn: Optional[int] = 10, restrict_vocab=None):
        """The keys most similar to ``vector``."""
        return self.most_similar(
            positive=[_vector(vector)], topn=topn, restrict_vocab=restrict_vocab
        )

    def similar_by_key(self, key: str, topn: Optional[int] = 10, restrict_vocab=None):
        """The keys most similar to ``key`` (itself left out)."""
        return self.most_similar(positive=[key], topn=topn, restrict_vocab=restrict_vocab)

    similar_by_word = similar_by_key

    def doesnt_match(self, words: Sequence[str]) -> str:
        """The key farthest from the mean of the others' unit vectors; keys without a
        vector are ignored.

        Raises:
            ValueError: none of the keys has a vector.
        """
        return self._core.doesnt_match(list(words))

    def similarity(self, w1: str, w2: str) -> float:
        """The cosine similarity of two keys' vectors."""
        return self._core.similarity(w1, w2)

    def n_similarity(self, ws1: Sequence[str], ws2: Sequence[str]) -> float:
        """The cosine similarity of the means of two sets of keys' vectors.

        Raises:
            ZeroDivisionError: either set is empty (as gensim).
        """
        ws1, ws2 = list(ws1), list(ws2)
        if not (ws1 and ws2):
            raise ZeroDivisionError("At least one of the passed list is empty.")
        return self._core.n_similarity(ws1, ws2)

    def distance(self, w1: str, w2: str) -> float:
        """``1 - similarity(w1, w2)``."""
        return 1 - self.similarity(w1, w2)

    def distances(self, word_or_vector, other_words: Sequence[str] = ()) -> Tensor:
        """``1 - cosine`` from a key's (or a vector's) vector to each of ``other_words``,
        or to every row when none are given."""
        return self._core.distances(_term(word_or_vector), list(other_words))

    def closer_than(self, key1: str, key2: str) -> List[str]:
        """The keys closer to ``key1`` than ``key2`` is."""
        return self._core.closer_than(key1, key2)

    def rank(self, key1: str, key2: str) -> int:
        """The rank of ``key2`` among the keys by closeness to ``key1`` (1 = closest)."""
        return self._core.rank(key1, key2)

    @staticmethod
    def cosine_similarities(vector_1, vectors_all) -> Tensor:
        """The cosine of ``vector_1`` ``(dim,)`` with each row of ``vectors_all``."""
        v, m = _vector(vector_1), _vector(vectors_all)
        return (m @ v) / (torch.linalg.vector_norm(m, dim=1) * torch.linalg.vector_norm(v))

    # ------------------------------------------------------------- evaluation
    def evaluate_word_pairs(
        self,
        pairs: PathLike,
        delimiter: str = "\t",
        restrict_vocab: int = 300000,
        case_insensitive: bool = True,
        dummy4unknown: bool = False,
    ) -> Tuple[Correlation, Correlation, float]:
        """Correlation of the vectors' cosines with human similarity scores, as gensim's:
        a file of ``word1<delimiter>word2<delimiter>score`` lines (WordSim-353,
        SimLex-999; ``#`` lines are comments).

        Args:
            restrict_vocab: only the first keys take part.
            case_insensitive: compare upper-cased (the first key of each spelling).
            dummy4unknown: score a pair with a word without a vector as 0 instead of
                leaving it out.

        Returns:
            ``(pearson, spearman, oov_ratio)``: two :class:`Correlation` s and the
            percentage of pairs with a word without a vector.

        Raises:
            ValueError: no pair could be scored.
            OSError: the file cannot be read.
        """
        p, s, oov = self._core.evaluate_word_pairs(
            os.fspath(pairs), delimiter, restrict_vocab, case_insensitive, dummy4unknown
        )
        return Correlation(*p), Correlation(*s), oov

    def evaluate_word_analogies(
        self,
        analogies: PathLike,
        restrict_vocab: int = 300000,
        case_insensitive: bool = True,
        dummy4unknown: bool = False,
    ) -> Tuple[float, List[Dict[str, Any]]]:
        """Analogy accuracy, as gensim's, over a file in ``questions-words.txt``'s format
        (``: section`` lines, then ``a b c d`` meaning a is to b as c is to d): a question
        is right when the best 3CosAdd answer to b - a + c among the first
        ``restrict_vocab`` keys, other than a, b and c, is d.

        Returns:
            ``(accuracy, sections)``: each section a dict with ``section``, ``correct`` and
            ``incorrect`` (lists of the four words), the last one "Total accuracy".

        Raises:
            ValueError: a question before any section header, or no questions.
        """
        score, sections, _oov = self._core.evaluate_word_analogies(
            os.fspath(analogies), restrict_vocab, case_insensitive, dummy4unknown
        )
        return score, [
            {"section": n, "correct": [tuple(q) for q in c], "incorrect": [tuple(q) for q in i]}
            for n, c, i in sections
        ]

    # ------------------------------------------------------------------ files
    def save_word2vec_format(
        self, fname: PathLike, binary: bool = False, write_header: bool = True
    ) -> None:
        """Writes the word2vec text format (or binary, float32 little-endian), atomically;
        ``write_header=False`` writes GloVe's text format. gensim, fastText and word2vec
        read either.

        Raises:
            ValueError: a key that holds whitespace (the format cannot hold it).
            OSError: the file cannot be written.
        """
        self._core.save_word2vec_format(os.fspath(fname), bool(binary), bool(write_header))

    @classmethod
    def load_word2vec_format(
        cls,
        fname: PathLike,
        binary: bool = False,
        limit: Optional[int] = None,
        no_header: bool = False,
    ) -> "WordVectors":
        """Reads a word2vec text or binary file (gensim's, fastText's ``.vec``, word2vec's
        ``.bin``), or with ``no_header`` GloVe's text format. A key given twice keeps its
        first vector.

        Args:
            limit: read only the first ``limit`` vectors.

        Raises:
            ValueError: a malformed file (the message names the file and line).
            OSError: the file cannot be read.
        """
        core = _rustrnn.WordVectors.load_word2vec_format(
            os.fspath(fname), bool(binary), _count("limit", limit) or None, bool(no_header)
        )
        return cls._wrap(core)
