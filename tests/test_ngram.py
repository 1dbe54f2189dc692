"""rustrnn.NGramLM against a plain-Python Kneser-Ney written from Chen & Goodman's formulas,
hand-computed ARPA files, and (when installed) KenLM reading rustrnn's ARPA files."""

from __future__ import annotations

import argparse
import math
import random
from collections import Counter

import hostile_probe
import pytest
import torch
from rustrnn import NGramLM, Vocab
from rustrnn._cli_ngram import add_parser, run
from rustrnn.corpus import default_corpus

LN10 = math.log(10)

# ---------------------------------------------------------------------------
# The reference: interpolated (modified) Kneser-Ney and add-k from the formulas.

FALLBACK = (0.5, 1.0, 1.5)  # KenLM's --discount_fallback


class Reference:
    """p(w | context) of an interpolated model, computed from the counts by recursion.

    Sentences are ``<s> w1 .. wm </s>``. For Kneser-Ney (Chen & Goodman 1998, sec. 3.5 and
    4.1.6), the count of an n-gram is its raw count at the highest order and when it begins
    with ``<s>``, else the number of distinct words before it; discounts per order come from
    the counts of counts n1..n4 (Y = n1/(n1+2 n2), D_k = k - (k+1) Y n_(k+1)/n_k), and

        p(w | c) = (a(cw) - D(a(cw))) / sum_x a(cx) + gamma(c) p(w | c'),
        gamma(c) = sum_x D(a(cx)) / sum_x a(cx),

    ending in the uniform distribution over every word but ``<s>``. add-k:
    p(w | c) = (a(cw) + k V p(w | c')) / (sum_x a(cx) + k V) with raw counts.
    """

    def __init__(self, sentences, order, words, smoothing="modified_kneser_ney", k=1.0):
        self.order, self.smoothing, self.k = order, smoothing, k
        self.V = [w for w in words if w != "<s>"]
        raw = [Counter() for _ in range(order + 1)]
        for s in sentences:
            s = ["<s>"] + list(s) + ["</s>"]
            for i in range(1, len(s)):
                for n in range(1, min(order, i + 1) + 1):
                    raw[n][tuple(s[i - n + 1 : i + 1])] += 1
        if smoothing == "add_k":
            self.a = raw
        else:
            self.a = [None] * (order + 1)
            self.a[order] = raw[order]
            for n in range(order - 1, 0, -1):
                a = Counter()
                for g in raw[n + 1]:
                    a[g[1:]] += 1
                for g in raw[n]:
                    if g[0] == "<s>":
                        a[g] = raw[n][g]
                self.a[n] = a
        self.discounts = [None] + [self._discounts(n) for n in range(1, order + 1)]

    def _discounts(self, n):
        t = Counter(c for g, c in self.a[n].items() if g != ("<s>",))
        if self.smoothing == "kneser_ney":
            if t[1] == 0 or t[2] == 0:
                return (FALLBACK[0],) * 3
            return (t[1] / (t[1] + 2 * t[2]),) * 3
        if self.smoothing == "add_k":
            return (0.0, 0.0, 0.0)
        if any(t[i] == 0 for i in range(1, 5)):
            return FALLBACK
        y = t[1] / (t[1] + 2 * t[2])
        d = tuple(j - (j + 1) * y * t[j + 1] / t[j] for j in (1, 2, 3))
        if any(not 0 <= d[j - 1] <= j for j in (1, 2, 3)):
            return FALLBACK
        return d

    def D(self, n, c):
        return 0.0 if c == 0 else self.discounts[n][min(c, 3) - 1]

    def p(self, w, context=()):
        context = tuple(context)[-(self.order - 1) :] if self.order > 1 else ()
        n = len(context) + 1
        if n == 1:
            lower = 1.0 / len(self.V)
        else:
            lower = self.p(w, context[1:])
        ext = {g[-1]: c for g, c in self.a[n].items() if g[:-1] == context and g != ("<s>",)}
        total = sum(ext.values())
        if self.smoothing == "add_k":
            kv = self.k * len(self.V)
            return (ext.get(w, 0) + kv * lower) / (total + kv)
        if total == 0:
            return lower
        gamma = sum(self.D(n, c) for c in ext.values()) / total
        c = ext.get(w, 0)
        return (c - self.D(n, c)) / total + gamma * lower


def toy_sentences(seed=0, n=80, words=tuple("abcdefgh")):
    rng = random.Random(seed)
    weights = [1 / (i + 1) for i in range(len(words))]
    return [rng.choices(words, weights, k=rng.randint(1, 9)) for _ in range(n)]


@pytest.fixture(scope="module")
def toy():
    sents = toy_sentences()
    text = "\n".join(" ".join(s) for s in sents) + "\n"
    vocab = Vocab.build(text, level="word")
    return sents, text, vocab


# ---------------------------------------------------------------------------
# Against the reference


@pytest.mark.parametrize("smoothing", ["modified_kneser_ney", "kneser_ney", "add_k"])
@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_probabilities_equal_the_reference(toy, order, smoothing):
    sents, text, vocab = toy
    k = 0.5 if smoothing == "add_k" else None
    lm = NGramLM.fit(text, vocab, order=order, smoothing=smoothing, k=k)
    words = lm.words()
    ref = Reference(sents, order, words, smoothing, k=0.5)
    if smoothing != "add_k":
        for got, want in zip(lm.discounts, ref.discounts[1:]):
            assert got == pytest.approx(want, abs=1e-12)
    # Every history seen in the corpus, and some never seen.
    rng = random.Random(order)
    contexts = {()}
    for s in sents:
        for i in range(len(s)):
            contexts.add(tuple(s[max(0, i - order + 1) : i + 1]))
    contexts |= {tuple(rng.choices("abcdefgh", k=rng.randint(1, 4))) for _ in range(10)}
    for ctx in sorted(contexts):
        got = lm.next_log_probs(" ".join(ctx)).exp()
        want = [0.0 if w == "<s>" else ref.p(w, ("<s>",) + ctx) for w in words]
        assert got.tolist() == pytest.approx(want, abs=1e-9), ctx


def test_char_level_equals_the_reference():
    text = "abracadabra\nbanana bandana\ncabana\n\nab ba\n"
    vocab = Vocab.build(text, level="char")
    lm = NGramLM.fit(text, vocab, order=3)
    words = lm.words()
    assert " " in words and "\n" not in words  # "\n" is </s>
    ref = Reference([list(line) for line in text.splitlines()], 3, words)
    for ctx in ["", "a", "ab", "b ", "zz", "ana"]:
        got = lm.next_log_probs(ctx).exp()
        want = [0.0 if w == "<s>" else ref.p(w, ("<s>",) + tuple(ctx)) for w in words]
        assert got.tolist() == pytest.approx(want, abs=1e-9), ctx


def test_scores_are_the_distribution_at_each_step(toy):
    _, text, vocab = toy
    lm = NGramLM.fit(text, vocab, order=3)
    line = "a b zz c a"
    fs = lm.full_scores(line)
    assert [t.token for t in fs] == ["a", "b", "zz", "c", "a", "</s>"]
    assert [t.oov for t in fs] == [False, False, True, False, False, False]
    history = ""
    for t in fs:
        dist = lm.next_log_probs(history)
        word = "<unk>" if t.oov else t.token
        assert t.log_prob == pytest.approx(dist[lm.words().index(word)].item(), abs=1e-12)
        history += " " + (t.token if t.token != "</s>" else "")
    total = sum(t.log_prob for t in fs)
    assert lm.score(line) == pytest.approx(total, abs=1e-12)
    assert lm.score(line, log10=True) == pytest.approx(total / LN10, abs=1e-12)
    assert lm.score([line, "a"]).tolist() == pytest.approx([total, lm.score("a")])
    # No <s>: the first word is scored from no context; no </s>: one token fewer.
    assert len(lm.full_scores(line, eos=False)) == 5
    assert lm.full_scores("a", bos=False)[0].log_prob == pytest.approx(
        lm.next_log_probs("", bos=False)[lm.words().index("a")].item()
    )


def test_log_prob_reads_a_stream_like_the_language_model(toy):
    _, text, vocab = toy
    lm = NGramLM.fit(text, vocab, order=3)
    total, per_token = lm.log_prob("a b\nc")
    # a, b, <eos> (the line break, which is </s>), c: no </s> after the last line.
    assert per_token.shape == (4,) and per_token.dtype == torch.float64
    assert per_token[:3].sum().item() == pytest.approx(lm.score("a b"))
    assert per_token[3].item() == pytest.approx(lm.full_scores("c")[0].log_prob)
    ids = vocab.encode("a b\nc")
    assert torch.equal(lm.log_prob(ids)[1], per_token)
    assert lm.log_prob(ids.tolist())[0].item() == pytest.approx(total.item())
    assert lm.perplexity("a b\nc") == pytest.approx(math.exp(-per_token.mean().item()))
    with pytest.raises(ValueError, match="empty"):
        lm.log_prob("")


def test_evaluate_follows_kenlm(toy):
    _, text, vocab = toy
    lm = NGramLM.fit(text, vocab, order=3)
    lines = ["a b c", "a zz b", "yy"]
    ev = lm.evaluate(lines)
    scores = [s for line in lines for s in lm.full_scores(line)]
    assert ev.tokens == len(scores) == 3 + 1 + 3 + 1 + 1 + 1
    assert ev.oovs == 2
    total = sum(s.log_prob for s in scores)
    oov_total = sum(s.log_prob for s in scores if s.oov)
    assert ev.log_prob == pytest.approx(total)
    assert ev.perplexity_including_oovs == pytest.approx(math.exp(-total / ev.tokens))
    assert ev.perplexity_excluding_oovs == pytest.approx(math.exp(-(total - oov_total) / 8))
    assert ev.bits_per_token == pytest.approx(-total / ev.tokens / math.log(2))
    assert lm.evaluate("\n".join(lines) + "\n").log_prob == pytest.approx(total)


# ---------------------------------------------------------------------------
# A proper distribution


@pytest.mark.parametrize("level", ["char", "word"])
@pytest.mark.parametrize("smoothing", ["modified_kneser_ney", "kneser_ney", "add_k"])
def test_every_distribution_sums_to_one(level, smoothing):
    text = default_corpus()[:30_000]
    vocab = Vocab.build(text, level=level)
    tokens = [t for t in vocab.tokens() if t not in ("<eos>", "\n")]
    rng = random.Random(0)
    sep = "" if level == "char" else " "
    for order in range(1, 9):
        lm = NGramLM.fit(text, vocab, order=order, smoothing=smoothing)
        # Random contexts, and real ones (whose long n-grams exist).
        starts = [rng.randrange(len(text) - 200) for _ in range(8)]
        real = [text[s : s + rng.randint(1, 60)].split("\n")[-1] for s in starts]
        random_ = [sep.join(rng.choices(tokens, k=rng.randint(0, 8))) for _ in range(8)]
        for ctx in real + random_:
            for bos in (True, False):
                lp = lm.next_log_probs(ctx, bos=bos)
                assert lp.exp().sum().item() == pytest.approx(1.0, abs=1e-6), (order, ctx)
                assert lp[lm.words().index("<s>")].item() == -math.inf


# ---------------------------------------------------------------------------
# ARPA files


def test_arpa_round_trip(toy, tmp_path):
    _, text, vocab = toy
    for level, corpus in [("word", text), ("char", "a b  c\n\tab\nba c\n")]:
        v = vocab if level == "word" else Vocab.build(corpus, level="char")
        lm = NGramLM.fit(corpus, v, order=4)
        path = tmp_path / f"{level}.arpa"
        lm.save_arpa(path)
        back = NGramLM.load_arpa(path)
        assert back.vocab.level == level and back.order == 4 and back.counts == lm.counts
        assert back.smoothing is None
        probe = ["a b c a", "b zz a c"] if level == "word" else ["a b\tc", "ab  ba"]
        for line in probe:
            assert back.full_scores(line) == lm.full_scores(line)
        assert torch.equal(back.next_log_probs(probe[0]), lm.next_log_probs(probe[0]))
        # Saving the loaded model writes the same file.
        again = tmp_path / "again.arpa"
        back.save_arpa(again)
        body = path.read_text().split("\\data\\")[1]
        assert again.read_text().split("\\data\\")[1] == body
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


OTHER_TOOLKIT = """Some toolkit's banner, free text before the data section.

\\data\\
ngram 1=6
ngram 2=5
ngram 3=2

\\1-grams:
-0.8\t</s>
-99\t<s>\t-0.3
-1.0\ta\t-0.2
-0.9\tb\t-0.25
-1.2\tc\t-0.1
-2.0\t<unk>

\\2-grams:
-0.2\t<s> a\t-0.05
-0.4\ta b\t-0.15
-0.3\tb </s>
-0.5\ta </s>
-0.6\tc a

\\3-grams:
-0.1\t<s> a b
-0.35\t<s> b a

\\end\\
"""


def test_another_toolkits_arpa_scores_as_computed_by_hand(tmp_path):
    path = tmp_path / "other.arpa"
    path.write_text(OTHER_TOOLKIT.replace("\n", "\r\n"))  # CRLF too
    lm = NGramLM.load_arpa(path)
    assert lm.order == 3 and lm.counts == [6, 5, 2] and lm.vocab.level == "word"

    def by_hand(*terms):
        return sum(terms) * LN10

    # <s> a b </s>: p(a|<s>), p(b|<s> a), p(</s>|a b) = b(a b) + p(</s>|b).
    assert lm.score("a b") == pytest.approx(by_hand(-0.2, -0.1, -0.15, -0.3))
    assert [(s.ngram_order, s.oov) for s in lm.full_scores("a b")] == [
        (2, False),
        (3, False),
        (2, False),
    ]
    # <s> b a </s>: "<s> b" and "b a" are missing (a pruned file), "<s> b a" is not:
    # p(b|<s>) = b(<s>) + p(b); p(a|<s> b) = -0.35 (the trigram); p(</s>|b a) = p(</s>|a).
    assert lm.score("b a") == pytest.approx(by_hand(-0.3, -0.9, -0.35, -0.5))
    # An unknown word is <unk>; <unk> has no backoff.
    fs = lm.full_scores("zebra c")
    assert [s.oov for s in fs] == [True, False, False]
    assert sum(s.log_prob for s in fs) == pytest.approx(by_hand(-0.3, -2.0, -1.2, -0.1, -0.8))
    assert lm.score("c a", bos=False, eos=False) == pytest.approx(by_hand(-1.2, -0.6))
    assert lm.score("c a", bos=False, eos=False, log10=True) == pytest.approx(-1.8)


MALFORMED = [
    ("no data section at all\n", 1, "\\data\\"),
    ("\\data\\\nngram 1=x\n", 2, "ngram N=COUNT"),
    ("\\data\\\nngram 1=2\nngram 3=1\n", 3, "2-grams"),
    ("\\data\\\nngram 1=1\n\n\\2-grams:\n", 4, "\\1-grams:"),
    ("\\data\\\nngram 1=2\n\n\\1-grams:\n-1\t<s>\nabc\tb\n\\end\\\n", 6, "probability"),
    ("\\data\\\nngram 1=2\n\n\\1-grams:\n-1\t<s>\n-1\tb c d\n\\end\\\n", 6, "1 word"),
    ("\\data\\\nngram 1=1\n\n\\1-grams:\n-1\ta\t-0.5\n\\end\\\n", 5, "highest order"),
    ("\\data\\\nngram 1=3\n\n\\1-grams:\n-1\ta\n-1\tb\n\n\\end\\\n", 8, "declares 3"),
    ("\\data\\\nngram 1=2\n\n\\1-grams:\n-1\ta\n-1\ta\n\\end\\\n", 6, "twice"),
    (
        "\\data\\\nngram 1=1\nngram 2=1\n\n\\1-grams:\n-1\ta\t0\n\n\\2-grams:\n-1\ta q\n\\end\\\n",
        9,
        "'q' is not among the 1-grams",
    ),
    ("\\data\\\nngram 1=1\n\n\\1-grams:\n-1\ta\n", 5, "\\end\\"),
    ("\\data\\\nngram 1=1\n\n\\1-grams:\n-1\ta\t-nan\n\\end\\\n", 5, "backoff weight"),
]


@pytest.mark.parametrize("content,line,needle", MALFORMED)
def test_malformed_arpa_is_a_value_error_naming_the_line(tmp_path, content, line, needle):
    path = tmp_path / "bad.arpa"
    path.write_text(content)
    with pytest.raises(ValueError) as e:
        NGramLM.load_arpa(path)
    msg = str(e.value)
    assert "bad.arpa" in msg and f"line {line}:" in msg and needle in msg, msg


def test_char_level_arpa_of_another_toolkit(tmp_path):
    path = tmp_path / "chars.arpa"
    path.write_text(
        "\\data\\\nngram 1=4\n\n\\1-grams:\n-0.5\t</s>\n-99\t<s>\n-0.5\tab\n-1\t<unk>\n\n\\end\\\n"
    )
    with pytest.raises(ValueError, match="line 7: .*'ab' is not a single character"):
        NGramLM.load_arpa(path, level="char")
    assert NGramLM.load_arpa(path).score("ab", bos=False) == pytest.approx(-1.0 * LN10)


def test_missing_file_and_bad_arguments(tmp_path, toy):
    _, text, vocab = toy
    with pytest.raises(FileNotFoundError):
        NGramLM.load_arpa(tmp_path / "missing.arpa")
    for order in (0, 9):
        with pytest.raises(ValueError, match="order must be between 1 and 8"):
            NGramLM.fit(text, vocab, order=order)
    with pytest.raises(ValueError, match="smoothing must be"):
        NGramLM.fit(text, vocab, smoothing="witten_bell")
    with pytest.raises(ValueError, match="only used by smoothing='add_k'"):
        NGramLM.fit(text, vocab, k=0.5)
    with pytest.raises(ValueError, match="k must be a positive"):
        NGramLM.fit(text, vocab, smoothing="add_k", k=0.0)
    with pytest.raises(ValueError, match="<unk>"):
        NGramLM.fit(text, Vocab.build(text, level="word", specials=["<eos>"]))
    with pytest.raises(IndexError):
        NGramLM.fit([0, 1, 999], vocab)
    with pytest.raises(ValueError, match="no text"):
        NGramLM.fit("", vocab)


def test_fit_from_lines_ids_and_text_agree(toy):
    _, text, vocab = toy
    a = NGramLM.fit(text, vocab, order=3)
    b = NGramLM.fit(iter(text.splitlines(keepends=True)), vocab, order=3)
    c = NGramLM.fit(vocab.encode(text), vocab, order=3)
    d = NGramLM.fit(text.splitlines(), vocab, order=3)  # items without "\n" are lines too
    for other in (b, c, d):
        assert other.counts == a.counts
        assert other.score("a b c d") == a.score("a b c d")


# ---------------------------------------------------------------------------
# KenLM reads rustrnn's ARPA files and scores as rustrnn does


def test_kenlm_agrees(tmp_path, toy):
    kenlm = pytest.importorskip("kenlm")
    _, text, vocab = toy
    lines = ["a b c d", "a a zz b", "h g f e d c b a", "b"]
    for order in (2, 3, 5):
        lm = NGramLM.fit(text, vocab, order=order)
        path = tmp_path / f"word{order}.arpa"
        lm.save_arpa(path)
        km = kenlm.Model(str(path))
        for line in lines:
            for bos, eos in [(True, True), (False, True), (True, False)]:
                assert km.score(line, bos=bos, eos=eos) == pytest.approx(
                    lm.score(line, bos=bos, eos=eos, log10=True), abs=1e-4
                )
            ours = lm.full_scores(line, log10=True)
            theirs = list(km.full_scores(line))
            assert [(o, v) for _, o, v in theirs] == [(s.ngram_order, s.oov) for s in ours]
            assert [p for p, _, _ in theirs] == pytest.approx([s.log_prob for s in ours], abs=1e-4)
    # Char level: KenLM splits on whitespace, so it reads the ARPA spelling of each char.
    corpus = default_corpus()[:20_000]
    lm = NGramLM.fit(corpus, Vocab.build(corpus, level="char"), order=4)
    lm.save_arpa(tmp_path / "char.arpa")
    km = kenlm.Model(str(tmp_path / "char.arpa"))
    for line in ["The list of", "x = [1, 2]"]:
        spelled = " ".join("<U+0020>" if c == " " else c for c in line)
        assert km.score(spelled) == pytest.approx(lm.score(line, log10=True), abs=1e-4)


# ---------------------------------------------------------------------------
# Generation


def test_generate_is_seeded_and_draws_only_what_the_model_allows(toy):
    _, text, vocab = toy
    lm = NGramLM.fit(text, vocab, order=3)
    torch.manual_seed(0)
    a = lm.generate("a b", 30, num_samples=3)
    torch.manual_seed(0)
    assert lm.generate("a b", 30, num_samples=3) == a
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert lm.generate("a", 20, generator=g1) == lm.generate("a", 20, generator=g2)
    # top_k=2: every token is one of the two most likely after its own context.
    texts, ids = lm.generate("a", 40, top_k=2, num_samples=2, return_ids=True)
    for seq in ids:
        history = vocab.encode("a").tolist()
        for i in seq.tolist():
            dist = lm.next_log_probs(history)
            word = lm.words().index(vocab.token(i) if i != vocab.eos_id else "</s>")
            assert dist[word].item() > -math.inf
            assert word in dist.topk(2).indices.tolist()
            history.append(i)
    # Greedy is the argmax at each step; stop ends a sample at (and keeps) the token.
    (greedy,) = lm.generate("a", 10, greedy=True, return_ids=True)[1]
    history = vocab.encode("a").tolist()
    for i in greedy.tolist():
        best = lm.words()[lm.next_log_probs(history).argmax().item()]
        assert (vocab.token(i) if i != vocab.eos_id else "</s>") == best
        history.append(i)
    out = lm.generate("a", 200, stop="<eos>", return_ids=True)[1][0]
    assert out[-1].item() == vocab.eos_id and (out[:-1] != vocab.eos_id).all()
    with pytest.raises(ValueError):
        lm.generate("a", 5, temperature=0.0)


def test_char_generation_decodes_line_breaks():
    text = "ab\nba\n" * 20
    lm = NGramLM.fit(text, Vocab.build(text, level="char"), order=2)
    torch.manual_seed(1)
    (out,) = lm.generate("", 50)
    assert set(out) <= set("ab\n") and "\n" in out


# ---------------------------------------------------------------------------
# The command line


def test_cli_writes_an_arpa_file(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sat\nthe dog sat\n" * 10)
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    out = tmp_path / "model.arpa"
    args = parser.parse_args(["ngram", str(corpus), "--order", "3", "--out", str(out)])
    assert run(args) == 0
    lm = NGramLM.load_arpa(out)
    assert lm.order == 3 and "cat" in lm.words()


@pytest.mark.parametrize("level", ["char", "word"])
def test_long_text_reads_as_its_ids(level):
    # Text is encoded in chunks of whole lines; ids are read as they are.
    text = default_corpus()[:200_000]
    vocab = Vocab.build(text, level=level)
    lm = NGramLM.fit(text, vocab, order=4)
    assert lm.counts == NGramLM.fit(vocab.encode(text), vocab, order=4).counts
    assert torch.equal(lm.log_prob(text)[1], lm.log_prob(vocab.encode(text))[1])
    # A char vocabulary without "\n" (text of one line) still breaks lines.
    one_line = Vocab.build("abcab", level="char")
    small = NGramLM.fit("abcab\nba", one_line, order=2)
    assert small.counts == NGramLM.fit(["abcab", "ba"], one_line, order=2).counts
    assert small.full_scores("ab\nba")[2].token == "</s>"


def _rustrnn_cli(*args, stdin=None):
    return hostile_probe.cli(*args, timeout=300, input=stdin)


def test_cli_score_perplexity_and_generate_take_an_arpa_file(tmp_path):
    from rustrnn.cli import _joined

    train = "the cat sat\nthe dog sat\na cat ran\n" * 10
    lm = NGramLM.fit(train, Vocab.build(train, level="word"), order=3)
    named, sniffed = tmp_path / "model.arpa", tmp_path / "model.lm"
    lm.save_arpa(named)
    lm.save_arpa(sniffed)  # no .arpa suffix: recognised by its \data\ header
    text = "the cat ran\nthe zebra sat\n\n"
    (tmp_path / "in.txt").write_text(text)
    lines = text.splitlines()

    for model in (named, sniffed):
        out = _rustrnn_cli("score", str(model), str(tmp_path / "in.txt"), "--per-token")
        assert out.returncode == 0, out.stderr
        rows = [r.split("\t") for r in out.stdout.splitlines()]
        for row, line, want in zip(rows, lines, lm.score(lines).tolist()):
            records = lm.full_scores(line)
            assert float(row[0]) == pytest.approx(want, rel=1e-6, abs=1e-6)
            assert row[1:4] == [str(len(records)), str(sum(r.oov for r in records)), line]
        summary = dict(r for r in rows[len(lines) :])
        result = lm.evaluate(lines)
        assert float(summary["Perplexity excluding OOVs:"]) == pytest.approx(
            result.perplexity_excluding_oovs, rel=1e-4
        )
        assert summary["OOVs:"] == "1" and summary["Tokens:"] == str(result.tokens)

    stdin = _rustrnn_cli("score", str(named), "-", "--no-eos", stdin="the cat\n")
    assert stdin.returncode == 0, stdin.stderr
    assert float(stdin.stdout.split("\t")[0]) == pytest.approx(
        lm.score("the cat", eos=False), rel=1e-6
    )

    ppl = _rustrnn_cli("perplexity", str(sniffed), str(tmp_path / "in.txt"))
    assert ppl.returncode == 0, ppl.stderr
    assert float(ppl.stdout) == pytest.approx(lm.perplexity(text), rel=1e-4)

    gen = _rustrnn_cli(
        "generate", str(named), "--prompt", "the", "--max-tokens", "8", "--seed", "5"
    )
    assert gen.returncode == 0, gen.stderr
    torch.manual_seed(5)
    (want,) = lm.generate("the", 8)
    assert gen.stdout == _joined(lm.vocab, "the", want) + "\n"


@pytest.mark.parametrize(
    "content, needle",
    [
        ("\\data\\\nngram 1=2\n\n\\1-grams:\n-1.0\tthe\n", "line"),
        ("not an arpa file\n", "arpa"),
    ],
)
def test_cli_a_malformed_arpa_file_is_one_line_with_status_2(tmp_path, content, needle):
    bad = tmp_path / "bad.arpa"
    bad.write_text(content)
    for args in (["score", str(bad), "-"], ["perplexity", str(bad), "-"], ["generate", str(bad)]):
        out = _rustrnn_cli(*args, stdin="the cat\n")
        assert out.returncode == 2, (args, out.stdout, out.stderr)
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr
        assert needle in out.stderr.lower() and "Traceback" not in out.stderr


def test_generate_stop_ids_are_ints_as_for_the_neural_model():
    text = "ab\nba\n" * 20
    lm = NGramLM.fit(text, Vocab.build(text, level="char"), order=2)
    for bad in (2.7, True, [lm.vocab["a"], 1.5]):
        with pytest.raises(TypeError, match="stop must be"):
            lm.generate("a", 5, stop=bad)
    with pytest.raises(ValueError, match="not in the vocabulary"):
        lm.generate("a", 5, stop="zz")
    torch.manual_seed(0)
    (ids,) = lm.generate("a", 200, stop=[lm.vocab["b"]], return_ids=True)[1]
    assert ids[-1].item() == lm.vocab["b"] and (ids[:-1] != lm.vocab["b"]).all()
