"""Beam search against exhaustive search on a small model and vocabulary, against greedy
decoding with one beam, and the one conditioning rule: the log-probability beam search
reports for a continuation is log_prob(prompt + continuation) - log_prob(prompt)."""

import itertools

import pytest
import rustrnn
import torch


def _model(cell="lstm", dtype=torch.float64, level="word"):
    text = "a b c\nb c a\nc a b\n" if level == "word" else "abc\nbca\ncab\n"
    vocab = rustrnn.Vocab.build(text * 5, level=level)
    torch.manual_seed(1)
    m = rustrnn.LanguageModel(vocab, embed_size=6, hidden_size=6, num_layers=2, cell=cell)
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(8)  # sharper distributions, so the ranking is not a near tie
    return m.to(dtype).eval()


def _log_p(model, prompt, seq):
    """log P(seq | prompt) by the model's forward (log_prob reads after a line break)."""
    ids = torch.tensor(prompt + list(seq))
    return (model.log_prob(ids)[0] - model.log_prob(torch.tensor(prompt))[0]).item()


def _exhaustive(model, prompt, length, stop, length_penalty):
    """Every hypothesis beam search can return: a stop only at the end, else `length`
    tokens; ranked by log P / len ** length_penalty."""
    vocab = len(model.vocab)
    hyps = []
    for n in range(1, length + 1):
        for seq in itertools.product(range(vocab), repeat=n):
            if any(t in stop for t in seq[:-1]):
                continue
            if n < length and seq[-1] not in stop:
                continue
            lp = _log_p(model, prompt, seq)
            hyps.append((lp / n**length_penalty, list(seq), lp))
    hyps.sort(key=lambda h: -h[0])
    return hyps


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("length_penalty", [1.0, 0.0, -0.5])
def test_beam_search_equals_exhaustive_search_when_the_beam_holds_everything(cell, length_penalty):
    model = _model(cell)
    prompt = model.vocab.encode("a b").tolist()
    stop = [model.vocab["c"]]
    want = _exhaustive(model, prompt, 3, stop, length_penalty)
    _, ids, lps = model.generate(
        prompt,
        3,
        num_beams=len(model.vocab) ** 3,
        num_return_sequences=4,
        length_penalty=length_penalty,
        stop=stop,
        return_ids=True,
        return_log_probs=True,
    )
    assert [i.tolist() for i in ids] == [h[1] for h in want[:4]]
    assert lps == pytest.approx([h[2] for h in want[:4]], abs=1e-9)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_one_beam_is_greedy(dtype):
    model = _model(dtype=dtype)
    stop = [model.vocab["<eos>"]] if "<eos>" in model.vocab else []
    greedy = model.generate("a", 12, greedy=True, stop=stop, return_ids=True)[1][0]
    beam = model.generate("a", 12, num_beams=1, stop=stop, return_ids=True, return_log_probs=True)
    assert torch.equal(beam[1][0], greedy)


@pytest.mark.parametrize("level", ["word", "char"])
def test_reported_log_probs_follow_log_prob_of_the_texts(level):
    model = _model(level=level)
    prompt = "a b" if level == "word" else "ab"
    texts, ids, lps = model.generate(
        prompt, 5, num_beams=3, num_return_sequences=3, return_ids=True, return_log_probs=True
    )
    p = model.vocab.encode(prompt)
    for seq, lp in zip(ids, lps):
        whole = model.log_prob(torch.cat([p, seq]))[0] - model.log_prob(p)[0]
        assert lp == pytest.approx(whole.item(), abs=1e-6)
    assert lps[0] >= max(lps[1:])
    if level == "word":  # the texts read back as the same words
        sep = " "
        for text, lp in zip(texts, lps):
            whole = model.log_prob(prompt + sep + text)[0] - model.log_prob(prompt)[0]
            assert lp == pytest.approx(whole.item(), abs=1e-6)


def test_beam_search_refuses_sampling_options_and_bad_counts():
    model = _model()
    with pytest.raises(ValueError, match="top_k"):
        model.generate("a", 3, num_beams=2, top_k=3)
    with pytest.raises(ValueError, match="num_return_sequences"):
        model.generate("a", 3, num_beams=2, num_return_sequences=3)
    with pytest.raises(ValueError, match="num_beams"):
        model.generate("a", 3, num_beams=0)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh", "rnn_relu"])
def test_float32_models_search_as_float64_ones(cell):
    """float32 CPU models search on the fused kernels, float64 ones on libtorch ops: the
    same continuations in the same order, log-probabilities equal to float32's accuracy."""
    vocab = rustrnn.Vocab.build("the cat sat on the mat\nthe dog ate the hat\n" * 3, level="char")
    torch.manual_seed(2)
    double = rustrnn.LanguageModel(vocab, 8, 24, 2, cell=cell).double().eval()
    with torch.no_grad():
        for p in double.parameters():
            p.mul_(3)
    single = rustrnn.LanguageModel(vocab, 8, 24, 2, cell=cell).eval()
    single.load_state_dict(double.state_dict())
    stop = [vocab["\n"]]
    for early_stopping in (False, True):
        kw = dict(
            num_beams=5,
            num_return_sequences=3,
            length_penalty=0.5,
            early_stopping=early_stopping,
            stop=stop,
            return_ids=True,
            return_log_probs=True,
        )
        _, ids32, lps32 = single.generate("the ", 15, **kw)
        _, ids64, lps64 = double.generate("the ", 15, **kw)
        assert [i.tolist() for i in ids32] == [i.tolist() for i in ids64]
        assert lps32 == pytest.approx(lps64, abs=1e-4)
