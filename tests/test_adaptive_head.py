"""LanguageModel(head="adaptive") against torch's nn.AdaptiveLogSoftmaxWithLoss with the
same weights: the per-token log-probabilities of every Rust path (score, full_scores,
evaluation) and of forward/log_prob, one training step's loss and gradients and a
ten-step run against plain torch autograd, greedy, sampled and beam-search generation
against plain-torch loops over head.log_prob, checkpoints, state_dicts and to_torch in
plain torch, and torch's errors for bad cutoffs."""

import itertools
import json
import math

import hostile_probe
import pytest
import rustrnn
import torch
import torch.nn.functional as F
from lm_helpers import TEXT, TORCH_CELLS
from rustrnn import _rustrnn
from rustrnn.lm import LanguageModel
from safetensors.torch import load_file
from test_train_step import batchify, detach, windows
from torch import nn
from torch.nn.utils.rnn import pack_sequence

CELLS = ["lstm", "gru", "rnn_tanh", "rnn_relu"]
TOL = {torch.float32: 1e-6, torch.float64: 1e-10}
CUTOFFS = [5, 12]


@pytest.fixture(scope="module")
def vocab():
    return rustrnn.Vocab.build(TEXT, level="char")


def adaptive_lm(vocab, cell="lstm", dtype=torch.float64, cutoffs=CUTOFFS, div_value=2.0, **kw):
    torch.manual_seed(kw.pop("seed", 0))
    kw = {"embed_size": 6, "hidden_size": 8, "num_layers": 2, "dropout": 0.0, **kw}
    model = LanguageModel(
        vocab, cell=cell, head="adaptive", cutoffs=cutoffs, div_value=div_value, **kw
    )
    return model.to(dtype)


class PlainAdaptiveLM(nn.Module):
    """nn.Embedding + torch.nn.LSTM/GRU/RNN + nn.AdaptiveLogSoftmaxWithLoss, under
    LanguageModel's attribute names, built from the model's config alone."""

    def __init__(self, ntoken, cfg):
        super().__init__()
        cls, extra = TORCH_CELLS[cfg["cell"]]
        e, h, layers = cfg["embed_size"], cfg["hidden_size"], cfg["num_layers"]
        self.embedding = nn.Embedding(ntoken, e)
        self.rnn = cls(e, h, layers, **extra)
        self.head = nn.AdaptiveLogSoftmaxWithLoss(h, ntoken, cfg["cutoffs"], cfg["div_value"])

    def hidden(self, ids, state=None):
        return self.rnn(self.embedding(ids), state)


def plain_copy(model):
    """A freshly built plain-torch model loaded with the model's state_dict (strict)."""
    ref = PlainAdaptiveLM(len(model.vocab), model.config).to(model.embedding.weight.dtype)
    for p in ref.parameters():
        nn.init.zeros_(p)
    ref.load_state_dict(model.state_dict(), strict=True)
    return ref


def close(got, want, dtype):
    tol = TOL[dtype]
    torch.testing.assert_close(got.to(want.dtype), want, rtol=tol, atol=tol)


def read_after_break(vocab, ids):
    return torch.cat([torch.tensor([vocab["\n"]]), ids[:-1]])


# ------------------------------------------------------------------ log-probabilities


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("cell", CELLS)
def test_every_scoring_path_equals_torchs_adaptive_softmax(vocab, cell, dtype):
    """score, full_scores, log_prob (forward) and a packed log_prob against torch's module:
    the model's own head and a fresh one loaded with its state_dict."""
    model = adaptive_lm(vocab, cell, dtype).eval()
    ref = plain_copy(model).eval()
    line = "the lazy dog jumps over the quick fox."
    ids = vocab.encode(line)
    context = torch.cat([torch.tensor([vocab["\n"]]), ids])
    targets = torch.cat([ids, torch.tensor([vocab["\n"]])])
    with torch.no_grad():
        out = ref.hidden(context.unsqueeze(1))[0].squeeze(1)
        want = ref.head(out, targets).output
        full = ref.head.log_prob(out)
        # The module itself gives the same numbers as the fresh one.
        torch.testing.assert_close(model.head(out, targets).output, want, rtol=0, atol=0)
        torch.testing.assert_close(model.head.log_prob(out), full, rtol=0, atol=0)
        torch.testing.assert_close(full.gather(1, targets.unsqueeze(1)).squeeze(1), want)

    scores = model.full_scores(line)
    assert [s.token for s in scores] == list(line) + ["\n"]
    close(torch.tensor([s.log_prob for s in scores], dtype=torch.float64), want, dtype)
    close(model.score([line]), want.sum().unsqueeze(0), dtype)
    close(model.score([line[:9]], eos=False), want[:9].sum().unsqueeze(0), dtype)

    total, per_token = model.log_prob(line)
    close(per_token, want[:-1], dtype)
    close(total, want[:-1].sum(), dtype)
    assert model.perplexity(line) == pytest.approx(math.exp(-want[:-1].mean().item()), rel=1e-5)

    with torch.no_grad():
        logits, _ = model(context.unsqueeze(1))
    assert logits.shape == (len(context), 1, len(vocab))
    close(logits.squeeze(1), full, dtype)

    # Two sequences packed and scored in one pass.
    short = vocab.encode("quick fox")
    totals, packed = model.log_prob(pack_sequence([short, ids], enforce_sorted=False))
    with torch.no_grad():
        out = ref.hidden(read_after_break(vocab, short).unsqueeze(1))[0].squeeze(1)
        want_short = ref.head(out, short).output
    close(totals, torch.stack([want_short.sum(), want[:-1].sum()]), dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_evaluation_perplexity_equals_plain_torch(vocab, dtype):
    """rustrnn.evaluate: the state carried across windows, the loss torch's module gives."""
    model = adaptive_lm(vocab, "gru", dtype, dropout=0.5)
    ids = vocab.encode(TEXT[:300])
    ref = plain_copy(model).eval()
    total, count, state = 0.0, 0, None
    with torch.no_grad():
        for x, y in windows(batchify(ids, 4), 11):
            out, state = ref.hidden(x, state)
            total += -ref.head(out.reshape(-1, 8), y.reshape(-1)).output.double().sum().item()
            count += y.numel()
    got = rustrnn.evaluate(model, ids, batch_size=4, bptt=11)
    assert got == pytest.approx(math.exp(total / count), rel=TOL[dtype] * 10)


# ---------------------------------------------------------------------------- training


def adaptive_run(ref, ids, *, batch_size, bptt, steps, opt, clip):
    """word_language_model's loop with torch's adaptive softmax loss."""
    losses, state = [], None
    for x, y in windows(batchify(ids, batch_size), bptt):
        if len(losses) == steps:
            break
        state = detach(state)
        ref.zero_grad()
        out, state = ref.hidden(x, state)
        loss = ref.head(out.reshape(-1, out.size(-1)), y.reshape(-1)).loss
        loss.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(ref.parameters(), clip)
        if opt is not None:
            opt.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("cell", CELLS)
def test_one_step_gradients_match_torch_autograd(vocab, cell):
    """SGD with lr=1 and no clipping: the update is exactly minus the gradient."""
    model = adaptive_lm(vocab, cell)
    ref = plain_copy(model)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    ids = vocab.encode(TEXT)
    hist = rustrnn.train(
        model, ids, batch_size=3, bptt=5, max_steps=1, optimizer="sgd", lr=1.0, clip=None,
        progress=False,
    )  # fmt: skip
    (want,) = adaptive_run(ref, ids, batch_size=3, bptt=5, steps=1, opt=None, clip=None)
    assert hist.losses == [pytest.approx(want, rel=1e-12)]
    grads = dict(ref.named_parameters())
    for name, p in model.state_dict().items():
        torch.testing.assert_close(before[name] - p, grads[name].grad, rtol=0, atol=1e-10)


def clusters_missed(ids, cutoffs, steps, batch_size, bptt):
    """How many windows leave some cluster without a target."""
    bounds = [0, *cutoffs, math.inf]
    missed = 0
    for _, (_, y) in zip(range(steps), windows(batchify(ids, batch_size), bptt)):
        hit = {next(i for i in range(len(bounds) - 1) if bounds[i + 1] > t) for t in y.flatten()}
        missed += len(hit) < len(bounds) - 1
    return missed


@pytest.mark.parametrize(
    "cell,optimizer,kw,clip",
    [
        ("lstm", "adam", {}, 0.25),
        ("gru", "sgd", {"momentum": 0.9, "weight_decay": 1e-3}, 0.5),
        ("rnn_tanh", "adamw", {"weight_decay": 0.1}, None),
    ],
)
def test_a_ten_step_run_matches_a_plain_torch_loop(vocab, cell, optimizer, kw, clip):
    """Every window has targets in every cluster (so every tensor has a gradient in torch
    as here): the losses and the weights of torch's loop, with torch.optim."""
    cutoffs = [3, 9]
    model = adaptive_lm(vocab, cell, cutoffs=cutoffs, div_value=1.5)
    ref = plain_copy(model)
    ids = vocab.encode(TEXT)
    assert clusters_missed(ids, cutoffs, 10, 4, 7) == 0
    lr = 0.01 if optimizer != "sgd" else 0.5
    hist = rustrnn.train(
        model, ids, batch_size=4, bptt=7, max_steps=10, optimizer=optimizer, lr=lr, clip=clip,
        progress=False, **kw,
    )  # fmt: skip
    cls = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
    opt = cls[optimizer](ref.parameters(), lr=lr, **{"weight_decay": 0.0, **kw})
    want = adaptive_run(ref, ids, batch_size=4, bptt=7, steps=10, opt=opt, clip=clip)
    assert hist.steps == list(range(1, 11))
    assert hist.losses == pytest.approx(want, rel=1e-10)
    for name, p in ref.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], p, rtol=0, atol=1e-8)


def test_a_cluster_without_targets_gets_a_zero_gradient(vocab):
    """A window whose targets miss a cluster leaves its tensors without a gradient in
    torch (None, skipped by the optimizer); here they get zeros: plain SGD then leaves
    them as torch does, the loss and every other tensor follow torch's loop."""
    cutoffs = [3, 9, 30]
    model = adaptive_lm(vocab, "lstm", cutoffs=cutoffs)
    ref = plain_copy(model)
    ids = vocab.encode(TEXT)
    assert clusters_missed(ids, cutoffs, 6, 2, 5) > 0
    hist = rustrnn.train(model, ids, batch_size=2, bptt=5, max_steps=6, optimizer="sgd",
                         lr=0.5, clip=0.25, progress=False)  # fmt: skip
    opt = torch.optim.SGD(ref.parameters(), lr=0.5)
    want = adaptive_run(ref, ids, batch_size=2, bptt=5, steps=6, opt=opt, clip=0.25)
    assert hist.losses == pytest.approx(want, rel=1e-10)
    for name, p in ref.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], p, rtol=0, atol=1e-10)


def test_training_lowers_the_loss_in_float32(vocab):
    model = adaptive_lm(vocab, dtype=torch.float32, embed_size=16, hidden_size=32, dropout=0.1)
    hist = rustrnn.train(model, vocab.encode(TEXT), batch_size=4, bptt=16, epochs=20, lr=0.01,
                         progress=False)  # fmt: skip
    assert sum(hist.losses[-5:]) < 0.8 * sum(hist.losses[:5])


# -------------------------------------------------------------------------- generation


@pytest.mark.parametrize("cell", CELLS)
def test_greedy_generation_is_a_plain_torch_argmax_loop(vocab, cell):
    model = adaptive_lm(vocab, cell, hidden_size=16, seed=3).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3)  # sharper distributions: no near ties for the argmax
    ref = plain_copy(model).eval()
    prompt = "the q"
    _, ids = model.generate(prompt, 30, greedy=True, return_ids=True)
    with torch.no_grad():
        context = torch.cat([torch.tensor([vocab["\n"]]), vocab.encode(prompt)])
        out, state = ref.hidden(context.unsqueeze(1))
        expected = []
        for _ in range(30):
            nxt = int(ref.head.log_prob(out[-1]).argmax())
            expected.append(nxt)
            out, state = ref.hidden(torch.tensor([[nxt]]), state)
    assert ids[0].tolist() == expected


def test_first_sampled_tokens_follow_the_full_distribution(vocab):
    """Chi-square over 20,000 first tokens of a float32 model against softmax(log p / T)
    from torch's head.log_prob, at significance 1e-4 (categories expecting fewer than 5
    draws pooled)."""
    model = adaptive_lm(vocab, dtype=torch.float32, hidden_size=16).eval()
    ref = plain_copy(model).eval()
    temperature = 0.7
    with torch.no_grad():
        context = torch.cat([torch.tensor([vocab["\n"]]), vocab.encode("the ")])
        out, _ = ref.hidden(context.unsqueeze(1))
        probs = F.softmax(ref.head.log_prob(out[-1]).double() / temperature, dim=-1).squeeze(0)
    n = 20000
    torch.manual_seed(0)
    _, ids = model.generate("the ", 1, num_samples=n, temperature=temperature, return_ids=True)
    counts = torch.bincount(torch.cat(ids), minlength=len(vocab)).double()
    expected = probs * n
    keep = expected >= 5
    chi2 = (((counts[keep] - expected[keep]) ** 2) / expected[keep]).sum().item()
    dof = int(keep.sum()) - 1
    if expected[~keep].sum() > 0:
        chi2 += (counts[~keep].sum() - expected[~keep].sum()).item() ** 2 / expected[
            ~keep
        ].sum().item()
        dof += 1
    # Wilson-Hilferty: the 1e-4 upper quantile of chi2(dof).
    bound = dof * (1 - 2 / (9 * dof) + 3.719 * math.sqrt(2 / (9 * dof))) ** 3
    assert chi2 < bound, f"chi2={chi2:.1f} with {dof} dof exceeds {bound:.1f}"


def _word_model(dtype=torch.float64):
    vocab = rustrnn.Vocab.build("a b c\nb c a\nc a b\n" * 5, level="word")
    model = adaptive_lm(vocab, cutoffs=[2], seed=1, embed_size=6, hidden_size=6)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(4)  # sharper distributions, so the ranking is not a near tie
    return model.to(dtype).eval()


def _plain_log_p(ref, boundary, prompt, seq):
    """log P(seq | prompt) in plain torch, the prompt read after a line break."""
    ids = torch.tensor([boundary] + prompt + list(seq))
    with torch.no_grad():
        out, _ = ref.hidden(ids[:-1].unsqueeze(1))
        logp = ref.head(out.squeeze(1), ids[1:]).output
    return logp[len(prompt) :].sum().item()


@pytest.mark.parametrize("length_penalty", [1.0, -0.5])
def test_beam_search_equals_exhaustive_search_over_torchs_distribution(length_penalty):
    model = _word_model()
    ref = plain_copy(model).eval()
    vocab, boundary = model.vocab, model.vocab.eos_id
    prompt = vocab.encode("a b").tolist()
    stop = [vocab["c"]]
    hyps = []
    for n in (1, 2, 3):
        for seq in itertools.product(range(len(vocab)), repeat=n):
            if any(t in stop for t in seq[:-1]) or (n < 3 and seq[-1] not in stop):
                continue
            lp = _plain_log_p(ref, boundary, prompt, seq)
            hyps.append((lp / n**length_penalty, list(seq), lp))
    hyps.sort(key=lambda h: -h[0])
    _, ids, lps = model.generate(
        prompt, 3, num_beams=len(vocab) ** 3, num_return_sequences=4, stop=stop,
        length_penalty=length_penalty, return_ids=True, return_log_probs=True,
    )  # fmt: skip
    assert [i.tolist() for i in ids] == [h[1] for h in hyps[:4]]
    assert lps == pytest.approx([h[2] for h in hyps[:4]], abs=1e-9)


def test_float32_beam_search_follows_float64():
    """float32 adaptive models search on libtorch ops as float64 ones do."""
    double = _word_model()
    single = _word_model(torch.float32)
    kw = dict(num_beams=4, num_return_sequences=4, return_ids=True, return_log_probs=True)
    _, ids64, lps64 = double.generate("a", 8, **kw)
    _, ids32, lps32 = single.generate("a", 8, **kw)
    assert [i.tolist() for i in ids32] == [i.tolist() for i in ids64]
    assert lps32 == pytest.approx(lps64, abs=1e-4)
    one = single.generate("a", 8, num_beams=1, return_ids=True, return_log_probs=True)[1][0]
    assert torch.equal(one, single.generate("a", 8, greedy=True, return_ids=True)[1][0])


# ------------------------------------------------------------ files and plain torch


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_checkpoint_round_trip_and_plain_torch_load(vocab, tmp_path, dtype):
    model = adaptive_lm(vocab, "gru", dtype, cutoffs=[4, 10, 20], div_value=3.0).eval()
    path = tmp_path / "m.safetensors"
    model.save(path)
    back = LanguageModel.load(path)
    assert back.config == model.config
    assert isinstance(back.head, nn.AdaptiveLogSoftmaxWithLoss)
    assert back.head.cutoffs == [4, 10, 20, len(vocab)] and back.head.div_value == 3.0
    for k, v in model.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k
    assert back.embedding.weight.dtype == dtype
    line = "pack my box"
    assert torch.equal(back.score([line]), model.score([line]))

    tensors = load_file(path)
    assert sorted(tensors) == sorted(model.state_dict())
    ref = PlainAdaptiveLM(len(vocab), model.config).to(dtype)
    ref.load_state_dict(tensors, strict=True)
    ids = vocab.encode(line)
    with torch.no_grad():
        out = ref.hidden(read_after_break(vocab, ids).unsqueeze(1))[0].squeeze(1)
        want = ref.head(out, ids).output
    close(back.log_prob(ids)[1], want, dtype)
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        stored = json.loads(f.metadata()["config"])
    assert stored == model.config


def test_full_head_checkpoints_store_the_config_they_always_did(vocab, tmp_path):
    model = LanguageModel(vocab, 4, 6, 1)
    assert model.config["head"] == "full" and model.config["cutoffs"] is None
    path = tmp_path / "m.safetensors"
    model.save(path)
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        stored = json.loads(f.metadata()["config"])
    assert set(stored) == {
        "embed_size", "hidden_size", "num_layers", "cell", "dropout", "tie_weights",
    }  # fmt: skip
    assert LanguageModel.load(path).config == model.config


def test_to_torch_and_torch_export(vocab):
    model = adaptive_lm(vocab, "lstm", torch.float32, dropout=0.3).eval()
    ref = model.to_torch()
    assert isinstance(ref.head, nn.AdaptiveLogSoftmaxWithLoss) and not ref.training
    assert list(ref.state_dict()) == list(model.state_dict())
    ids = vocab.encode(TEXT[:24]).view(-1, 3)
    with torch.no_grad():
        want, _ = model(ids)
        got, _ = ref(ids)
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(ref(ids[:, 0])[0], model(ids[:, 0])[0], rtol=1e-6, atol=1e-6)
    program = torch.export.export(ref, (ids,))
    torch.testing.assert_close(program.module()(ids)[0], want, rtol=1e-6, atol=1e-6)


def test_repr_shows_the_head(vocab):
    model = adaptive_lm(vocab)
    assert "head='adaptive', cutoffs=[5, 12], div_value=2.0" in repr(model)
    assert "head=" not in repr(LanguageModel(vocab, 4, 6, 1))
    assert "div_value" not in repr(adaptive_lm(vocab, div_value=4.0))


# -------------------------------------------------------------------- configuration


def test_default_cutoffs_follow_the_documented_rule(vocab):
    v = len(vocab)
    assert LanguageModel(vocab, 4, 8, 1, head="adaptive").config["cutoffs"] == [max(1, v // 4)]
    # The boundaries 2,000 * 5**k up to half the vocabulary; one at V // 4 below 4,000.
    for n in (2, 3, 100, 3999, 4000, 19_999, 20_000, 267_735):
        bounds = [c for c in (2000, 10_000, 50_000, 250_000) if c <= n / 2]
        assert _rustrnn.adaptive_cutoffs(n) == (bounds or [max(1, n // 4)]), n
        nn.AdaptiveLogSoftmaxWithLoss(4, n, _rustrnn.adaptive_cutoffs(n))  # torch takes them
    with pytest.raises(ValueError, match="at least 2 tokens"):
        _rustrnn.adaptive_cutoffs(1)


@pytest.mark.parametrize(
    "bad", [[], [0, 3], [5, 3], [3, 3], [-2], [40], [3, 33], [2.5], [3, 2**70]]
)
def test_bad_cutoffs_raise_torchs_value_error(vocab, bad):
    assert len(vocab) == 33
    with pytest.raises(ValueError) as theirs:
        nn.AdaptiveLogSoftmaxWithLoss(8, len(vocab), bad)
    with pytest.raises(ValueError) as ours:
        LanguageModel(vocab, 4, 8, 1, head="adaptive", cutoffs=bad)
    assert str(ours.value) == str(theirs.value)


def test_other_head_mistakes(vocab):
    with pytest.raises(ValueError, match="tie_weights needs head='full'"):
        LanguageModel(vocab, 8, 8, 1, tie_weights=True, head="adaptive")
    with pytest.raises(ValueError, match="head must be 'full' or 'adaptive', got 'softmax'"):
        LanguageModel(vocab, 8, 8, 1, head="softmax")
    with pytest.raises(ValueError, match="cutoffs are for head='adaptive'"):
        LanguageModel(vocab, 8, 8, 1, cutoffs=[4])
    with pytest.raises(ValueError, match="div_value=2.0 is for head='adaptive'"):
        LanguageModel(vocab, 8, 8, 1, div_value=2)
    for div in (0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="div_value must be a positive finite number"):
            LanguageModel(vocab, 8, 8, 1, head="adaptive", div_value=div)
    with pytest.raises(ValueError, match="div_value=1e-30 gives cluster 0"):
        LanguageModel(vocab, 8, 8, 1, head="adaptive", div_value=1e-30)
    with pytest.raises(TypeError, match="cutoffs must be a sequence of ints"):
        LanguageModel(vocab, 8, 8, 1, head="adaptive", cutoffs=["4"])
    with pytest.raises(TypeError, match="cutoffs must be a sequence of ints or None"):
        LanguageModel(vocab, 8, 8, 1, head="adaptive", cutoffs=4)


def test_the_command_line_trains_generates_and_scores(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog.\n" * 100, encoding="utf-8")
    out = tmp_path / "run"
    common = ["--embed", "8", "--hidden", "16", "--layers", "1", "--bptt", "8"]
    r = hostile_probe.cli(
        "train", str(corpus), *common, "--batch-size", "4", "--max-steps", "3", "--no-progress",
        "--out", str(out), "--head", "adaptive", "--cutoffs", "4,12", "--div-value", "2",
        timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    model = LanguageModel.load(out / "model.safetensors")
    assert model.config["head"] == "adaptive" and model.config["cutoffs"] == [4, 12]
    assert model.config["div_value"] == 2.0
    r = hostile_probe.cli("perplexity", str(out / "model.safetensors"), str(corpus), timeout=300)
    assert r.returncode == 0, r.stderr
    assert float(r.stdout.strip()) == pytest.approx(
        model.perplexity(corpus.read_text(encoding="utf-8")), rel=1e-3
    )
    r = hostile_probe.cli("train", str(corpus), "--cutoffs", "4", "--out", str(tmp_path / "x"),
                          timeout=300)  # fmt: skip
    assert r.returncode == 2 and "--head adaptive" in r.stderr
    r = hostile_probe.cli("train", str(corpus), "--head", "adaptive", "--cutoffs", "12,4",
                          "--out", str(tmp_path / "y"), timeout=300)  # fmt: skip
    assert r.returncode == 2 and "cutoffs should be" in r.stderr
