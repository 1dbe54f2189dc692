"""The decoding chain (penalties, temperature, top-k, top-p, min-p, typical) against
Hugging Face transformers' LogitsProcessors on the same logits: the same surviving
tokens with the same renormalized probabilities, draws whose frequencies fit them
(chi-square), and the frequency/presence penalties against a plain-torch recomputation."""

import math

import pytest
import rustrnn
import torch

lp = pytest.importorskip("transformers.generation.logits_process")

V = 40
TIED_ROWS = (6, 7)  # rows(): six random rows, then a tie for the top and all equal


def hf_chain(
    scores,
    previous,
    *,
    temperature=1.0,
    top_k=None,
    top_p=None,
    min_p=None,
    typical_p=None,
    repetition_penalty=1.0,
    no_repeat_ngram_size=0,
):
    """transformers' processors in generate()'s order (utils._get_logits_processor)."""
    procs = []
    if repetition_penalty != 1.0:
        procs.append(lp.RepetitionPenaltyLogitsProcessor(repetition_penalty))
    if no_repeat_ngram_size:
        procs.append(lp.NoRepeatNGramLogitsProcessor(no_repeat_ngram_size))
    if temperature != 1.0:
        procs.append(lp.TemperatureLogitsWarper(temperature))
    if top_k is not None:
        procs.append(lp.TopKLogitsWarper(top_k))
    if top_p is not None and top_p < 1.0:
        procs.append(lp.TopPLogitsWarper(top_p))
    if min_p is not None:
        procs.append(lp.MinPLogitsWarper(min_p))
    if typical_p is not None and typical_p < 1.0:
        procs.append(lp.TypicalLogitsWarper(typical_p))
    out = scores.clone()
    for p in procs:
        out = p(previous, out)
    return out


def rows():
    g = torch.Generator().manual_seed(0)
    base = torch.randn(6, V, generator=g) * 2.0
    ties = torch.zeros(1, V)
    ties[0, :8] = 3.0  # eight tokens tie for the top
    equal = torch.zeros(1, V)
    dominant = torch.full((1, V), -5.0)
    dominant[0, 3] = 12.0
    masked = torch.randn(1, V, generator=g)
    masked[0, ::3] = -math.inf
    return torch.cat([base, ties, equal, dominant, masked])


SETTINGS = [
    dict(temperature=0.7),
    dict(top_k=5),
    dict(top_k=3),  # with the 8-way tie: all 8 stay, as transformers keeps them
    dict(top_p=0.8),
    dict(top_p=0.3, temperature=1.5),
    dict(min_p=0.05),
    dict(min_p=0.3, temperature=0.5),
    dict(typical_p=0.7),
    dict(typical_p=0.2),
    dict(repetition_penalty=1.3),
    dict(repetition_penalty=0.7, top_k=10),
    dict(no_repeat_ngram_size=2),
    dict(repetition_penalty=1.2, top_k=20, top_p=0.9, min_p=0.05, typical_p=0.95, temperature=0.8),
]


@pytest.mark.parametrize("opts", SETTINGS, ids=repr)
def test_survivors_and_probabilities_equal_transformers(opts):
    x = rows()
    g = torch.Generator().manual_seed(1)
    previous = torch.randint(0, V, (x.shape[0], 12), generator=g)
    previous[:, -1] = previous[:, 4]  # so a bigram repeats and no_repeat_ngram bans something
    ours = rustrnn._rustrnn.process_logits(x, previous=previous, **opts)
    theirs = hf_chain(x, previous, **opts)
    exact = list(range(x.shape[0]))
    if opts.get("top_p", 1.0) < 1.0:
        # Which of equal tokens top-p cuts is torch.sort's arbitrary order on ties (and
        # the cumulative sum's rounding): for rows of tied tokens only the count is defined.
        for r in TIED_ROWS:
            exact.remove(r)
            n_ours, n_theirs = (torch.isfinite(t[r]).sum().item() for t in (ours, theirs))
            assert abs(n_ours - n_theirs) <= 1
    assert torch.equal(torch.isfinite(ours[exact]), torch.isfinite(theirs[exact]))
    assert torch.allclose(ours[exact].softmax(-1), theirs[exact].softmax(-1).float(), atol=1e-6)
    assert (torch.isfinite(ours).sum(-1) >= 1).all()


def test_the_tie_and_ban_cases_remove_what_they_should():
    x = rows()
    kept = torch.isfinite(rustrnn._rustrnn.process_logits(x, top_k=3))
    assert kept[6].sum() == 8 and kept[7].sum() == V  # ties at the k-th value stay
    prev = torch.tensor([5, 6, 7, 5])
    out = rustrnn._rustrnn.process_logits(torch.zeros(V), previous=prev, no_repeat_ngram_size=2)
    assert torch.isinf(out[6]) and torch.isfinite(out).sum() == V - 1


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_top_k_alone_keeps_the_ties_too(dtype):
    """``top_k`` without the chain's other options takes the sampler's fast path; it keeps
    every token tied with the k-th as the chain (and transformers) does: the eight tied
    tokens are drawn equally often (chi-square), no other ever."""
    x = rows()[6].to(dtype)  # eight tokens tie for the top, the rest 0
    theirs = hf_chain(x.unsqueeze(0), torch.zeros(1, 0, dtype=torch.long), top_k=3)
    probs = theirs.softmax(-1)[0].double()
    assert (probs > 0).sum() == 8
    g = torch.Generator().manual_seed(3)
    draws = rustrnn.sample(x.expand(16_000, V).contiguous(), top_k=3, generator=g)
    counts = torch.bincount(draws, minlength=V).double()
    assert counts[probs == 0].sum() == 0
    assert chi2_p(counts, probs) > 1e-4


def chi2_p(counts, probs):
    n = counts.sum()
    expected = probs * n
    keep = expected > 0
    stat = ((counts[keep] - expected[keep]) ** 2 / expected[keep]).sum().item()
    df = int(keep.sum()) - 1
    if df <= 0:
        return 1.0
    return torch.special.gammaincc(torch.tensor(df / 2.0), torch.tensor(stat / 2.0)).item()


@pytest.mark.parametrize("opts", [SETTINGS[3], SETTINGS[5], SETTINGS[7], SETTINGS[-1]], ids=repr)
def test_draws_follow_the_processed_distribution(opts):
    """20,000 draws per setting; the p-value of the chi-square statistic against
    transformers' probabilities must exceed 1e-4 (a false alarm 1 time in 10,000)."""
    x = rows()[0]
    previous = torch.tensor([1, 2, 3, 1, 2])
    probs = hf_chain(x.unsqueeze(0), previous.unsqueeze(0), **opts).softmax(-1)[0].double()
    g = torch.Generator().manual_seed(7)
    logits = x.expand(20_000, V).contiguous()
    draws = rustrnn.sample(logits, generator=g, previous=previous, **opts)
    counts = torch.bincount(draws, minlength=V).double()
    assert counts[probs == 0].sum() == 0  # a removed token is never drawn
    assert chi2_p(counts, probs) > 1e-4


def test_frequency_and_presence_penalties_equal_a_plain_torch_recomputation():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, V, generator=g)
    previous = torch.tensor([[1, 1, 1, 7, 9], [0, 0, 2, 2, 2]])
    ours = rustrnn._rustrnn.process_logits(
        x, previous=previous, frequency_penalty=0.4, presence_penalty=0.25
    )
    want = x.clone()
    for r in range(2):
        counts = torch.bincount(previous[r], minlength=V).float()
        want[r] -= counts * 0.4 + (counts > 0).float() * 0.25
    # process_logits shifts each row by its maximum: compare shift-free
    assert torch.allclose(
        ours - ours.max(-1, keepdim=True).values,
        want - want.max(-1, keepdim=True).values,
        atol=1e-6,
    )


def test_greedy_takes_the_argmax_of_the_penalized_logits():
    x = torch.tensor([[5.0, 4.9, 0.0]])
    prev = torch.tensor([0])
    assert rustrnn.sample(x, greedy=True, previous=prev, repetition_penalty=2.0).item() == 1
    assert rustrnn.sample(x, greedy=True).item() == 0


@pytest.mark.parametrize(
    "kw, exc, msg",
    [
        (dict(min_p=1.5), ValueError, "min_p must be in"),
        (dict(typical_p=0.0), ValueError, "typical_p must be in"),
        (dict(repetition_penalty=0.0), ValueError, "repetition_penalty"),
        (dict(frequency_penalty=math.inf), ValueError, "frequency_penalty"),
        (dict(previous=torch.tensor([99])), IndexError, "99"),
        (dict(previous=torch.tensor([1.0])), RuntimeError, "int64"),
        (dict(previous=torch.zeros(3, 2, dtype=torch.long)), RuntimeError, r"\[2, n\]"),
    ],
)
def test_bad_chain_options_are_clear_errors(kw, exc, msg):
    with pytest.raises(exc, match=msg):
        rustrnn.sample(
            torch.zeros(2, V), repetition_penalty=kw.pop("repetition_penalty", 1.1), **kw
        )


# ------------------------------------------------------------- in generation
def _model(dtype):
    vocab = rustrnn.Vocab.build("the cat sat on the mat and the dog ran\n" * 20, level="word")
    torch.manual_seed(0)
    return rustrnn.LanguageModel(vocab, embed_size=8, hidden_size=16, num_layers=2).to(dtype)


def _greedy_reference(model, prompt, steps, **opts):
    """A plain-torch greedy loop: the whole sequence (read after a line break, as
    generate reads its prompt) through forward each step, the transformers processors on
    the last logits, argmax."""
    ids = torch.cat([torch.tensor([model.vocab.eos_id]), model.vocab.encode(prompt)])
    start = len(ids)
    with torch.no_grad():
        for _ in range(steps):
            logits, _ = model(ids.unsqueeze(1))
            scores = hf_chain(logits[-1].float(), ids.unsqueeze(0), **opts)
            ids = torch.cat([ids, scores.argmax(-1)])
    return ids[start:]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])  # fused kernels, libtorch ops
@pytest.mark.parametrize(
    "opts", [dict(repetition_penalty=1.8), dict(no_repeat_ngram_size=2)], ids=repr
)
def test_generate_applies_the_penalties_to_prompt_and_continuation(dtype, opts):
    model = _model(dtype).eval()
    _, (ids,) = model.generate("the cat", 15, greedy=True, return_ids=True, **opts)
    assert torch.equal(ids, _greedy_reference(model, "the cat", 15, **opts))
    if "no_repeat_ngram_size" in opts:
        seq = model.vocab.encode("the cat").tolist() + ids.tolist()
        bigrams = list(zip(seq, seq[1:]))
        assert len(bigrams) == len(set(bigrams))


def test_generate_draws_the_same_chain_on_both_paths():
    """The fused float32 loop and the libtorch float64 loop, from the same uniforms,
    draw the same tokens with every option of the chain on."""
    opts = dict(temperature=0.9, top_k=8, top_p=0.95, min_p=0.02, typical_p=0.95)
    opts.update(repetition_penalty=1.3, frequency_penalty=0.1, presence_penalty=0.1)
    outs = []
    for dtype in (torch.float32, torch.float64):
        g = torch.Generator().manual_seed(5)
        outs.append(_model(dtype).generate("the", 30, num_samples=4, generator=g, **opts))
    assert outs[0] == outs[1]
