"""rustrnn.WordVectors against gensim's KeyedVectors on the same vectors: every query
(same neighbours in the same order, scores to 1e-5), the word2vec/GloVe files in both
directions, and the word-pair and analogy evaluations on small made-up files."""

import math

import pytest
import rustrnn
import torch

gensim_kv = pytest.importorskip("gensim.models.keyedvectors")
KeyedVectors = gensim_kv.KeyedVectors

V, D = 3000, 40


@pytest.fixture(scope="module")
def pair():
    g = torch.Generator().manual_seed(0)
    vec = torch.randn(V, D, generator=g)
    vec[7] *= 5.0  # norms differ, so unit scaling matters
    keys = [f"w{i}" for i in range(V)]
    kv = KeyedVectors(D)
    kv.add_vectors(keys, vec.numpy())
    return rustrnn.WordVectors(vec, keys), kv


def same_neighbours(ours, theirs):
    assert [k for k, _ in ours] == [k for k, _ in theirs]
    for (_, a), (_, b) in zip(ours, theirs):
        assert a == pytest.approx(b, abs=1e-5)


QUERIES = [
    dict(positive=["w1"]),
    dict(positive="w7", topn=3),
    dict(positive=["w1", "w2"], negative=["w3"], topn=5),
    dict(positive=[("w1", 2.0), "w2"], negative=[("w3", -0.5)], topn=7),
    dict(positive=["w4"], negative="w5", topn=4, restrict_vocab=500),
    dict(positive=["w4"], topn=6, clip_start=100, clip_end=900),
    dict(positive=["w10", "w11", "w12"], topn=1),
    dict(positive=["w1"], topn=V + 10),
]


@pytest.mark.parametrize("q", QUERIES, ids=repr)
def test_most_similar_equals_gensim(pair, q):
    wv, kv = pair
    same_neighbours(wv.most_similar(**q), kv.most_similar(**q))


def test_most_similar_takes_vectors_and_can_return_every_score(pair):
    wv, kv = pair
    v = kv.vectors[20] + kv.vectors[21]
    same_neighbours(wv.most_similar(positive=[v, "w3"], topn=5), kv.most_similar([v, "w3"], topn=5))
    same_neighbours(wv.similar_by_vector(v, topn=5), kv.similar_by_vector(v, topn=5))
    same_neighbours(wv.similar_by_key("w9", topn=5), kv.similar_by_key("w9", topn=5))
    ours = wv.most_similar(positive=["w1"], negative=["w2"], topn=None)
    theirs = kv.most_similar(positive=["w1"], negative=["w2"], topn=None)
    assert torch.allclose(ours, torch.as_tensor(theirs), atol=1e-5)
    assert wv.most_similar("w1", topn=0) == kv.most_similar("w1", topn=0) == []


@pytest.mark.parametrize(
    "q",
    [dict(positive=["w1", "w2"], negative=["w3"]), dict(positive="w7", topn=4)],
    ids=repr,
)
def test_most_similar_cosmul_equals_gensim(pair, q):
    wv, kv = pair
    same_neighbours(wv.most_similar_cosmul(**q), kv.most_similar_cosmul(**q))


def test_similarities_distances_ranks_equal_gensim(pair):
    wv, kv = pair
    words = ["w1", "w2", "w3", "w7", "w100"]
    assert wv.doesnt_match(words) == kv.doesnt_match(words)
    assert wv.doesnt_match(words + ["not-a-key"]) == kv.doesnt_match(words)
    assert wv.similarity("w1", "w7") == pytest.approx(float(kv.similarity("w1", "w7")), abs=1e-6)
    assert wv.distance("w1", "w7") == pytest.approx(float(kv.distance("w1", "w7")), abs=1e-6)
    a, b = ["w1", "w2", "missing"], ["w7", "w9"]
    assert wv.n_similarity(a, b) == pytest.approx(float(kv.n_similarity(a, b)), abs=1e-6)
    assert torch.allclose(wv.distances("w3"), torch.as_tensor(kv.distances("w3")), atol=1e-5)
    ours, theirs = wv.distances("w3", ["w1", "w7"]), kv.distances("w3", ["w1", "w7"])
    assert torch.allclose(ours, torch.as_tensor(theirs), atol=1e-6)
    for x, y in [("w1", "w2"), ("w7", "w1"), ("w5", "w5")]:
        assert wv.rank(x, y) == kv.rank(x, y)
    assert wv.closer_than("w1", "w2") == kv.closer_than("w1", "w2")
    mean = wv.get_mean_vector(["w1", "w7"], weights=[1.0, 3.0])
    assert torch.allclose(mean, torch.as_tensor(kv.get_mean_vector(["w1", "w7"], [1.0, 3.0])))
    assert torch.equal(wv["w5"], torch.as_tensor(kv["w5"]))
    assert torch.equal(wv[["w5", "w6"]], torch.as_tensor(kv[["w5", "w6"]]))


def test_bad_queries_raise_gensims_classes(pair):
    wv, kv = pair
    with pytest.raises(KeyError, match="nope"):
        wv.most_similar(positive=["nope"])
    with pytest.raises(KeyError):
        kv.most_similar(positive=["nope"])
    with pytest.raises(ValueError, match="no input"):
        wv.most_similar(positive=[])
    with pytest.raises(ValueError, match=r"shape \[40\]"):
        wv.similar_by_vector(torch.zeros(3))
    with pytest.raises(ValueError, match="empty list"):
        wv.doesnt_match(["nope"])
    with pytest.raises(ZeroDivisionError):
        wv.n_similarity([], ["w1"])


@pytest.mark.parametrize("binary", [False, True])
def test_files_written_here_load_in_gensim_and_back(pair, tmp_path, binary):
    wv, kv = pair
    ours = tmp_path / "ours.vec"
    wv.save_word2vec_format(ours, binary=binary)
    loaded = KeyedVectors.load_word2vec_format(ours, binary=binary)
    assert loaded.index_to_key == wv.index_to_key
    assert torch.equal(torch.as_tensor(loaded.vectors), wv.vectors)
    theirs = tmp_path / "theirs.vec"
    kv.save_word2vec_format(theirs, binary=binary)
    back = rustrnn.WordVectors.load_word2vec_format(theirs, binary=binary)
    assert back.index_to_key == kv.index_to_key
    assert torch.equal(back.vectors, torch.as_tensor(kv.vectors))
    limited = rustrnn.WordVectors.load_word2vec_format(theirs, binary=binary, limit=10)
    assert (
        limited.index_to_key
        == KeyedVectors.load_word2vec_format(theirs, binary=binary, limit=10).index_to_key
    )


def test_glove_files_have_no_header(pair, tmp_path):
    wv, kv = pair
    path = tmp_path / "glove.txt"
    wv.save_word2vec_format(path, write_header=False)
    assert not path.read_text().split("\n", 1)[0].split(" ")[0].isdigit()
    theirs = KeyedVectors.load_word2vec_format(path, no_header=True)
    ours = rustrnn.WordVectors.load_word2vec_format(path, no_header=True)
    assert ours.index_to_key == theirs.index_to_key
    assert torch.equal(ours.vectors, torch.as_tensor(theirs.vectors))


@pytest.mark.parametrize(
    "content, message",
    [
        ("2 3\na 1 2 3\nb 1 2\n", "line 3: expected 3 values"),
        ("2 3\na 1 2 x\n", "line 2: 'x' is not a number"),
        ("3 2\na 1 2\nb 3 4\n", "promises 3 vectors"),
        ("two three\n", "line 1: expected the header"),
        ("1 99999999999\na 1\n", "width"),
    ],
)
def test_malformed_files_are_value_errors_naming_the_line(tmp_path, content, message):
    path = tmp_path / "bad.txt"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        rustrnn.WordVectors.load_word2vec_format(path)


def test_keys_with_whitespace_are_refused_not_written_garbled(tmp_path):
    wv = rustrnn.WordVectors(torch.ones(2, 3), ["a b", "c"])
    with pytest.raises(ValueError, match="'a b'"):
        wv.save_word2vec_format(tmp_path / "x.txt")
    assert not (tmp_path / "x.txt").exists()


@pytest.fixture
def cased(tmp_path):
    """Vectors with mixed-case duplicates and a structure that makes some analogies hold."""
    g = torch.Generator().manual_seed(3)
    keys = ["king", "queen", "man", "woman", "King", "paris", "france", "rome", "italy"]
    keys += [f"x{i}" for i in range(60)]
    vec = torch.randn(len(keys), 16, generator=g)
    gender, capital = torch.randn(16, generator=g), torch.randn(16, generator=g)
    vec[1] = vec[0] + 2 * gender
    vec[3] = vec[2] + 2 * gender
    vec[5] = vec[6] + 2 * capital
    vec[7] = vec[8] + 2 * capital
    kv = KeyedVectors(16)
    kv.add_vectors(keys, vec.numpy())
    return rustrnn.WordVectors(vec, keys), kv, tmp_path


PAIRS = """# word1\tword2\tscore
king\tqueen\t8.5
Man\tWOMAN\t8.3
paris\tfrance\t7.0
rome\titaly\t7.1
king\tx3\t1.0
x1\tx2\t0.5
x4\tunknown\t3.0
x5\tx6\t0.5
not a valid line
x7\tx8\tnot-a-number
KING\tx9\t2.0
"""

ANALOGIES = """: gender
man woman king queen
Man Woman King Queen
man woman x1 x2
man woman zebra lion
: capitals
france paris italy rome
italy rome france paris
x3 x4 x5
"""


@pytest.mark.parametrize("case_insensitive", [True, False])
@pytest.mark.parametrize("dummy4unknown", [False, True])
@pytest.mark.parametrize("restrict_vocab", [300000, 40])
def test_word_pairs_equal_gensim(cased, case_insensitive, dummy4unknown, restrict_vocab):
    wv, kv, tmp = cased
    path = tmp / "pairs.tsv"
    path.write_text(PAIRS)
    kw = dict(
        restrict_vocab=restrict_vocab,
        case_insensitive=case_insensitive,
        dummy4unknown=dummy4unknown,
    )
    (pr, pp), (sr, sp), oov = wv.evaluate_word_pairs(path, **kw)
    gp, gs, goov = kv.evaluate_word_pairs(path, **kw)
    assert pr == pytest.approx(gp.statistic, abs=1e-6) and pp == pytest.approx(gp.pvalue, abs=1e-6)
    assert sr == pytest.approx(gs.statistic, abs=1e-6) and sp == pytest.approx(gs.pvalue, abs=1e-6)
    assert oov == pytest.approx(goov)


@pytest.mark.parametrize("case_insensitive", [True, False])
@pytest.mark.parametrize("dummy4unknown", [False, True])
def test_word_analogies_equal_gensim(cased, case_insensitive, dummy4unknown):
    wv, kv, tmp = cased
    path = tmp / "questions-words.txt"
    path.write_text(ANALOGIES)
    kw = dict(case_insensitive=case_insensitive, dummy4unknown=dummy4unknown)
    score, sections = wv.evaluate_word_analogies(path, **kw)
    gscore, gsections = kv.evaluate_word_analogies(path, **kw)
    assert score == pytest.approx(gscore)
    assert sections == gsections
    assert score > 0  # the built-in analogies hold, so the test compares something


def test_analogies_need_a_section_first(cased):
    wv, _, tmp = cased
    path = tmp / "bad.txt"
    path.write_text("a b c d\n")
    with pytest.raises(ValueError, match="section"):
        wv.evaluate_word_analogies(path)


def test_a_models_vectors_and_loading_pretrained_ones(tmp_path):
    vocab = rustrnn.Vocab.build("the cat sat on the mat\n" * 3, level="word")
    torch.manual_seed(0)
    model = rustrnn.LanguageModel(
        vocab, embed_size=6, hidden_size=6, num_layers=1, tie_weights=True
    )
    wv = model.vectors()
    assert wv.index_to_key == vocab.tokens()
    assert torch.equal(wv.vectors, model.embedding.weight.detach())
    before = model.embedding.weight.detach().clone()
    pretrained = rustrnn.WordVectors(torch.arange(18.0).view(3, 6), ["cat", "zebra", "mat"])
    assert model.load_vectors(pretrained, freeze=True) == 2
    w = model.embedding.weight.detach()
    assert torch.equal(w[vocab["cat"]], torch.arange(6.0))
    assert torch.equal(w[vocab["mat"]], torch.arange(12.0, 18.0))
    untouched = [i for i, t in enumerate(vocab.tokens()) if t not in ("cat", "mat")]
    assert torch.equal(w[untouched], before[untouched])
    assert torch.equal(model.head.weight.detach(), w)  # tied
    assert not model.embedding.weight.requires_grad
    path = tmp_path / "v.txt"
    pretrained.save_word2vec_format(path)
    assert model.load_vectors(path) == 2
    with pytest.raises(ValueError, match=r"3 wide.*embed_size is 6"):
        model.load_vectors(rustrnn.WordVectors(torch.ones(1, 3), ["cat"]))


def test_frozen_pretrained_embedding_is_not_trained():
    text = "the cat sat on the mat\n" * 20
    vocab = rustrnn.Vocab.build(text, level="word")
    torch.manual_seed(0)
    model = rustrnn.LanguageModel(vocab, embed_size=6, hidden_size=8, num_layers=1)
    model.load_vectors(rustrnn.WordVectors(torch.ones(1, 6), ["cat"]), freeze=True)
    before = model.embedding.weight.detach().clone()
    head = model.head.weight.detach().clone()
    rustrnn.train(model, text, batch_size=2, bptt=4, epochs=1, lr=0.5, progress=False)
    assert torch.equal(model.embedding.weight.detach(), before)
    assert not torch.equal(model.head.weight.detach(), head)


def test_gensim_keyed_vectors_load_into_a_model():
    vocab = rustrnn.Vocab.build("a b c\n", level="word")
    model = rustrnn.LanguageModel(vocab, embed_size=4, hidden_size=4, num_layers=1)
    kv = KeyedVectors(4)
    kv.add_vectors(["b", "q"], [[1.0, 2, 3, 4], [5.0, 6, 7, 8]])
    assert model.load_vectors(kv) == 1
    assert torch.equal(model.embedding.weight.detach()[vocab["b"]], torch.tensor([1.0, 2, 3, 4]))
    assert not math.isnan(model.vectors().similarity("a", "b"))


# ------------------------------------------------------------------- command line
def _cli(*args, cwd):
    import hostile_probe

    return hostile_probe.cli(*args, timeout=300, cwd=cwd)


def test_cli_writes_vectors_gensim_reads_and_answers_analogies(cased):
    wv, kv, tmp = cased
    vocab = rustrnn.Vocab.build(" ".join(wv.index_to_key) + "\n", level="word")
    model = rustrnn.LanguageModel(vocab, embed_size=16, hidden_size=16, num_layers=1)
    model.load_vectors(wv)
    model.save(tmp / "m.safetensors")
    for binary in (False, True):
        out = tmp / f"v{int(binary)}"
        r = _cli("vectors", "m.safetensors", "--out", str(out), *(["--binary"] * binary), cwd=tmp)
        assert r.returncode == 0, r.stderr
        loaded = KeyedVectors.load_word2vec_format(out, binary=binary)
        assert loaded.index_to_key == vocab.tokens()
        assert torch.allclose(torch.as_tensor(loaded.vectors), model.embedding.weight.detach())
    r = _cli("similar", "m.safetensors", "man", "-woman", "+queen", "--topn", "3", cwd=tmp)
    assert r.returncode == 0, r.stderr
    want = model.vectors().most_similar(positive=["man", "queen"], negative=["woman"], topn=3)
    got = [line.split("\t") for line in r.stdout.splitlines()]
    assert [w for w, _ in got] == [w for w, _ in want]
    assert [float(s) for _, s in got] == pytest.approx([s for _, s in want], abs=1e-4)
    assert got[0][0] == "king"  # the built-in analogy: man - woman + queen = king
    r = _cli("similar", "m.safetensors", "zebra", cwd=tmp)
    assert r.returncode == 2 and "zebra" in r.stderr and len(r.stderr.strip().splitlines()) == 1
