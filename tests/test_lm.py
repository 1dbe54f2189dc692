"""LanguageModel against the same computation written in plain torch from the same weights."""

import math
import random

import pytest
import rustrnn
import torch
import torch.nn.functional as F

TEXT = (
    "the cat sat on the mat.\nthe dog sat on the log.\n"
    "a cat and a dog met on the mat; the cat ran.\n"
) * 3


@pytest.fixture(scope="module")
def vocab():
    return rustrnn.Vocab.build(TEXT, level="char")


def plain_torch_copy(model):
    """nn.Embedding + torch.nn.{LSTM,GRU,RNN} + nn.Linear with the model's weights."""
    cfg = model.config
    emb = torch.nn.Embedding(len(model.vocab), cfg["embed_size"])
    kind = cfg["cell"]
    if kind == "lstm":
        rnn = torch.nn.LSTM(cfg["embed_size"], cfg["hidden_size"], cfg["num_layers"])
    elif kind == "gru":
        rnn = torch.nn.GRU(cfg["embed_size"], cfg["hidden_size"], cfg["num_layers"])
    else:
        rnn = torch.nn.RNN(
            cfg["embed_size"], cfg["hidden_size"], cfg["num_layers"], nonlinearity=kind[4:]
        )
    head = torch.nn.Linear(cfg["hidden_size"], len(model.vocab))
    emb.load_state_dict(model.embedding.state_dict())
    rnn.load_state_dict(model.rnn.state_dict())
    head.load_state_dict(model.head.state_dict())
    return emb.double(), rnn.double(), head.double()


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh", "rnn_relu"])
def test_log_prob_and_perplexity_match_plain_torch(vocab, cell):
    model = rustrnn.LanguageModel(vocab, 16, 24, 2, cell=cell, dropout=0.3).double()
    emb, rnn, head = plain_torch_copy(model)
    text = "the cat sat on the log."
    total, per_token = model.log_prob(text)
    ids = vocab.encode(text)
    context = torch.cat([torch.tensor([vocab["\n"]]), ids[:-1]])  # read after a line break
    with torch.no_grad():
        out, _ = rnn(emb(context).unsqueeze(1))
        ref = F.log_softmax(head(out.squeeze(1)), dim=-1).gather(1, ids.unsqueeze(1)).squeeze(1)
    assert per_token.shape == (len(text),)
    torch.testing.assert_close(per_token, ref, rtol=1e-5, atol=1e-5)
    assert total.item() == pytest.approx(ref.sum().item(), abs=1e-5)
    assert model.perplexity(text) == pytest.approx(math.exp(-ref.mean().item()), rel=1e-5)
    assert model.training, "scoring must restore the training mode"


def test_forward_shapes_and_state(vocab):
    model = rustrnn.LanguageModel(vocab, 8, 12, 2)
    ids = torch.randint(0, len(vocab), (7, 3))
    logits, (h, c) = model(ids)
    assert logits.shape == (7, 3, len(vocab))
    assert h.shape == c.shape == (2, 3, 12)
    logits1, _ = model(ids[:, 0])
    assert logits1.shape == (7, len(vocab))
    model.eval()
    # Carrying the state across two halves equals one pass over the whole.
    full, _ = model(ids)
    first, state = model(ids[:4])
    second, _ = model(ids[4:], state)
    torch.testing.assert_close(torch.cat([first, second]), full)


def test_natural_text_scores_better_than_shuffled_after_training(vocab):
    torch.manual_seed(0)
    model = rustrnn.LanguageModel(vocab, 16, 32, 1, dropout=0.0)
    rustrnn.train(
        model,
        TEXT,
        batch_size=4,
        bptt=16,
        epochs=100,
        max_steps=80,
        lr=0.02,
        seed=0,
        progress=False,
    )
    natural = "the cat sat on the mat."
    chars = list(natural)
    random.Random(0).shuffle(chars)  # seeded: the same shuffle in every process
    shuffled = "".join(chars)
    assert shuffled != natural
    assert model.log_prob(natural)[0] > model.log_prob(shuffled)[0]


def test_tie_weights(vocab):
    model = rustrnn.LanguageModel(vocab, 12, 12, tie_weights=True)
    assert model.projection is None  # one width: no projection (test_tied_projection)
    assert model.head.weight is model.embedding.weight
    n_params = sum(p.numel() for p in model.parameters())
    untied = rustrnn.LanguageModel(vocab, 12, 12)
    assert n_params == sum(p.numel() for p in untied.parameters()) - len(vocab) * 12


def test_bad_constructor_arguments(vocab):
    with pytest.raises(ValueError, match="cell"):
        rustrnn.LanguageModel(vocab, cell="transformer")
    with pytest.raises(ValueError, match="cell"):
        rustrnn.LanguageModel(vocab, cell="RNN_TANH")  # the config's names only
    with pytest.raises(ValueError, match="dropout"):
        rustrnn.LanguageModel(vocab, dropout=2.0)
    with pytest.raises(ValueError, match="dropout"):
        rustrnn.LanguageModel(vocab, dropout=float("nan"))
    with pytest.raises(TypeError, match="embed_size"):
        rustrnn.LanguageModel(vocab, embed_size="8")
    with pytest.raises(ValueError, match="num_layers"):
        rustrnn.LanguageModel(vocab, num_layers=0)


@pytest.mark.parametrize("layers, between", [(1, 0.0), (3, 0.4)])
def test_dropout_between_layers_only_with_several(vocab, layers, between):
    model = rustrnn.LanguageModel(vocab, 8, 8, layers, cell="gru", dropout=0.4)
    assert model.rnn.dropout == between and model.drop.p == 0.4
    assert isinstance(model.rnn, rustrnn.GRU) and model.rnn.num_layers == layers


def test_word_vectors(vocab):
    model = rustrnn.LanguageModel(vocab, 10, 12)
    emb = model.embeddings()
    assert emb.shape == (len(vocab), 10) and not emb.requires_grad
    a, b = "c", "d"
    ref = F.cosine_similarity(emb[vocab[a]], emb[vocab[b]], dim=0).item()
    assert model.similarity(a, b) == pytest.approx(ref)
    near = model.similar("c", k=5)
    assert len(near) == 5 and all(tok != "c" for tok, _ in near)
    scores = F.cosine_similarity(emb, emb[vocab["c"]].unsqueeze(0), dim=1)
    scores[vocab["c"]] = -2
    expected = [vocab.token(int(i)) for i in scores.topk(5).indices]
    assert [tok for tok, _ in near] == expected
    assert [s for _, s in near] == sorted((s for _, s in near), reverse=True)
    with pytest.raises(IndexError):
        model.similarity(0, len(vocab))


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh", "rnn_relu"])
def test_greedy_generation_equals_a_plain_torch_argmax_loop(vocab, cell):
    model = rustrnn.LanguageModel(vocab, 16, 24, 2, cell=cell).double().eval()
    emb, rnn, head = plain_torch_copy(model)
    prompt = "the c"
    texts, ids = model.generate(prompt, 30, greedy=True, return_ids=True)
    with torch.no_grad():
        out, state = rnn(emb(vocab.encode(prompt)).unsqueeze(1))
        logits = head(out[-1, 0])
        expected = []
        for _ in range(30):
            nxt = int(logits.argmax())
            expected.append(nxt)
            out, state = rnn(emb(torch.tensor([[nxt]])), state)
            logits = head(out[0, 0])
    assert ids[0].tolist() == expected
    assert texts[0] == vocab.decode(torch.tensor(expected))
    assert model.generate(prompt, 30, greedy=True) == texts


def test_sampled_generation_differs_and_repeats_under_a_seed(vocab):
    model = rustrnn.LanguageModel(vocab, 16, 24, 2)
    torch.manual_seed(5)
    a = model.generate("the ", 40, num_samples=6)
    torch.manual_seed(5)
    b = model.generate("the ", 40, num_samples=6)
    assert a == b
    assert len(set(a)) > 1, "six sampled continuations were all identical"
    c = model.generate("the ", 40, num_samples=6)
    assert c != a
    g = torch.Generator().manual_seed(11)
    d = model.generate("the ", 20, generator=g)
    g.manual_seed(11)
    assert model.generate("the ", 20, generator=g) == d


def test_first_sampled_token_follows_the_model_distribution(vocab):
    """Chi-square over 20,000 first tokens against softmax(logits / T), at significance 1e-4."""
    torch.manual_seed(0)
    model = rustrnn.LanguageModel(vocab, 8, 16, 1).eval()
    temperature = 0.7
    with torch.no_grad():
        logits, _ = model(vocab.encode("the ").unsqueeze(1))
        probs = F.softmax(logits[-1, 0].double() / temperature, dim=-1)
    n = 20000
    _, ids = model.generate("the ", 1, num_samples=n, temperature=temperature, return_ids=True)
    counts = torch.bincount(torch.cat(ids), minlength=len(vocab)).double()
    expected = probs * n
    keep = expected >= 5
    other_obs = counts[~keep].sum()
    other_exp = expected[~keep].sum()
    chi2 = (((counts[keep] - expected[keep]) ** 2) / expected[keep]).sum()
    dof = int(keep.sum()) - 1
    if other_exp > 0:
        chi2 += (other_obs - other_exp) ** 2 / other_exp
        dof += 1
    # Wilson-Hilferty: the 1e-4 upper quantile of chi2(dof) is about
    # dof * (1 - 2/(9 dof) + 3.719 * sqrt(2/(9 dof)))^3.
    bound = dof * (1 - 2 / (9 * dof) + 3.719 * math.sqrt(2 / (9 * dof))) ** 3
    assert chi2.item() < bound, f"chi2={chi2.item():.1f} with {dof} dof exceeds {bound:.1f}"


def test_stop_tokens_and_unknown_prompt_characters(vocab):
    model = rustrnn.LanguageModel(vocab, 8, 16, 1)
    torch.manual_seed(2)
    texts, ids = model.generate("the ", 200, num_samples=4, stop=["."], return_ids=True)
    stop = vocab["."]
    for t, i in zip(texts, ids):
        assert t == vocab.decode(i) and len(i) <= 200
        hits = (i == stop).nonzero().flatten().tolist()
        assert hits in ([], [len(i) - 1]), "generation went on past the stop token"
        if not hits:
            assert len(i) == 200
    # "Z" and "é" are not in the vocabulary: they follow the <unk> rule.
    unk = torch.tensor([vocab.unk_id, vocab.unk_id])
    assert model.generate("Zé", 5, greedy=True) == model.generate(unk, 5, greedy=True)


def test_generation_argument_errors(vocab):
    model = rustrnn.LanguageModel(vocab, 8, 16, 1)
    for kwargs in ({"temperature": 0.0}, {"top_k": 0}, {"top_p": 1.5}, {"num_samples": 0}):
        with pytest.raises(ValueError):
            model.generate("the", 5, **kwargs)
    with pytest.raises(ValueError):
        model.generate("the", -1)
    with pytest.raises(IndexError):
        model.generate(torch.tensor([len(vocab)]), 3)


def test_word_level_log_prob_reads_after_eos():
    vocab = rustrnn.Vocab.build(TEXT, level="word")
    model = rustrnn.LanguageModel(vocab, 8, 12, 1).double()
    emb, rnn, head = plain_torch_copy(model)
    text = "the dog sat on the mat ."
    ids = vocab.encode(text)
    context = torch.cat([torch.tensor([vocab.eos_id]), ids[:-1]])
    with torch.no_grad():
        out, _ = rnn(emb(context).unsqueeze(1))
        ref = F.log_softmax(head(out.squeeze(1)), dim=-1).gather(1, ids.unsqueeze(1)).squeeze(1)
    total, per_token = model.log_prob(text)
    torch.testing.assert_close(per_token, ref, rtol=1e-5, atol=1e-5)
    assert len(per_token) == len(vocab.tokenize(text))


def test_ctrl_c_stops_a_long_generation(vocab):
    """A signal handler raising KeyboardInterrupt (what Ctrl-C does) ends the Rust loop."""
    import signal

    model = rustrnn.LanguageModel(vocab, 8, 16, 1)

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 0.3)
    try:
        with pytest.raises(KeyboardInterrupt):
            model.generate("the ", 50_000_000)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert model.generate("the ", 5, greedy=True), "the model must stay usable"


def _float32_copy(model):
    emb, rnn, head = plain_torch_copy(model)
    return emb.float(), rnn.float(), head.float()


def _reference_tokens(model, prompt, steps, rows, uniforms=None, temperature=1.0):
    """The next-token rule in plain torch, float32, one row at a time.

    Greedy without ``uniforms``; otherwise token = the first id whose running sum of
    exp((logits - max) / T) exceeds u * total. Returns the ids and the smallest margin
    that separated each decision (top-2 gap, or distance of u * total to a boundary):
    float32 kernels that round differently may only disagree where it is tiny.
    """
    emb, rnn, head = _float32_copy(model)
    ids, margin = [], float("inf")
    with torch.no_grad():
        for r in range(rows):
            # generate reads the prompt after a line break, as log_prob reads a text
            context = torch.cat([torch.tensor([model._boundary_id()]), model._ids(prompt)])
            out, state = rnn(emb(context).unsqueeze(1))
            logits = head(out[-1, 0])
            seq = []
            for t in range(steps):
                if uniforms is None:
                    top2 = logits.topk(2).values
                    margin = min(margin, float(top2[0] - top2[1]))
                    nxt = int(logits.argmax())
                else:
                    w = ((logits - logits.max()) / temperature).exp().double()
                    cum = w.cumsum(0)
                    target = float(uniforms[t, r]) * float(cum[-1])
                    nxt = int((cum > target).nonzero()[0])
                    margin = min(margin, float((cum - target).abs().min() / cum[-1]))
                seq.append(nxt)
                out, state = rnn(emb(torch.tensor([[nxt]])), state)
                logits = head(out[0, 0])
            ids.append(seq)
    return ids, margin


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh", "rnn_relu"])
@pytest.mark.parametrize("hidden", [24, 48])
def test_float32_generation_follows_plain_torch(vocab, cell, hidden):
    """float32 CPU models generate on the fused kernels: greedy ids and, for the same
    uniforms, sampled ids equal a plain-torch float32 loop (5 rows: a full row tile and
    a remainder; hidden sizes that are not whole kernel blocks)."""
    torch.manual_seed(3)
    model = rustrnn.LanguageModel(vocab, 12, hidden, 2, cell=cell).eval()
    prompt, steps, rows = "the c", 25, 5
    _, got = model.generate(prompt, steps, greedy=True, num_samples=rows, return_ids=True)
    want, margin = _reference_tokens(model, prompt, steps, 1)
    assert margin > 1e-5, "two logits tied within rounding; pick another seed"
    assert all(g.tolist() == want[0] for g in got)
    g = torch.Generator().manual_seed(7)
    _, got = model.generate(
        prompt, steps, num_samples=rows, generator=g, temperature=0.8, return_ids=True
    )
    uniforms = torch.rand(steps, rows, generator=g.manual_seed(7), dtype=torch.float64)
    want, margin = _reference_tokens(model, prompt, steps, rows, uniforms, 0.8)
    assert margin > 1e-5, "a draw fell within rounding of a boundary; pick another seed"
    assert [s.tolist() for s in got] == want


def test_generation_reports_non_finite_logits(vocab):
    model = rustrnn.LanguageModel(vocab, 8, 16, 1)
    with torch.no_grad():
        model.head.bias[3] = float("nan")
    with pytest.raises(RuntimeError, match="nan"):
        model.generate("the ", 5)
    with pytest.raises(RuntimeError, match="nan"):
        model.double().generate("the ", 5)
    # A nan inside the recurrence reaches the logits too (the gate functions keep it).
    model = rustrnn.LanguageModel(vocab, 8, 16, 1)
    with torch.no_grad():
        model.rnn.weight_hh_l0[0, 0] = float("nan")
    with pytest.raises(RuntimeError, match="nan"):
        model.generate("the ", 5)


def test_generate_counts_are_checked_once_in_rust(vocab):
    model = rustrnn.LanguageModel(vocab, 8, 8, 1)
    with pytest.raises(ValueError, match="max_tokens must be >= 0, got -1"):
        model.generate("the", -1)
    with pytest.raises(ValueError, match="num_samples must be >= 1, got 0"):
        model.generate("the", 3, num_samples=0)
    with pytest.raises(TypeError):
        model.generate("the", 2.5)
    assert model.generate("the", 0) == [""]
