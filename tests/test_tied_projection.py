"""Tied weights of different widths (AWD-LSTM's 400-wide embedding on a 1150-wide stack):
``LanguageModel(..., tie_weights=True)`` with ``embed_size != hidden_size`` maps the
stack's output to the embedding's width by ``projection`` (``nn.Linear(H, E,
bias=False)``) before the tied head. Every path that runs the head (forward, scoring,
evaluation, generation, beam search, export, the CLI) is checked against plain torch
modules loaded from the model's ``state_dict``; training is in test_train_step and
test_awd, checkpoints in test_checkpoint."""

import math

import hostile_probe
import pytest
import rustrnn
import torch
import torch.nn.functional as F
from lm_helpers import TEXT, TORCH_CELLS, vocab
from test_train_step import batchify, windows
from torch import nn

E, H = 6, 11


def projected(cell="lstm", layers=2, dtype=torch.float64, level="char", text=TEXT):
    torch.manual_seed(0)
    model = rustrnn.LanguageModel(
        vocab(text, level), E, H, layers, cell=cell, dropout=0.0, tie_weights=True
    )
    return model.to(dtype).eval()


class Plain(nn.Module):
    """nn.Embedding -> torch.nn stack -> nn.Linear(H, E, bias=False) -> nn.Linear(E, V)
    with the embedding's matrix: the model as a torch user writes it."""

    def __init__(self, model):
        super().__init__()
        cfg = model.config
        cls, extra = TORCH_CELLS[cfg["cell"]]
        self.embedding = nn.Embedding(len(model.vocab), cfg["embed_size"])
        self.rnn = cls(cfg["embed_size"], cfg["hidden_size"], cfg["num_layers"], **extra)
        self.projection = nn.Linear(cfg["hidden_size"], cfg["embed_size"], bias=False)
        self.head = nn.Linear(cfg["embed_size"], len(model.vocab))
        self.head.weight = self.embedding.weight
        self.to(model.embedding.weight.dtype)
        self.load_state_dict(model.state_dict(), strict=True)

    def forward(self, ids, state=None):
        out, state = self.rnn(self.embedding(ids), state)
        return self.head(self.projection(out)), state


def test_the_parameters_are_a_projection_and_one_shared_matrix():
    model = projected()
    v = len(model.vocab)
    shapes = {k: tuple(t.shape) for k, t in model.state_dict().items()}
    names = list(shapes)
    assert names.index("projection.weight") == names.index("head.weight") - 1
    assert shapes["projection.weight"] == (E, H)
    assert shapes["head.weight"] == shapes["embedding.weight"] == (v, E)
    assert model.head.weight is model.embedding.weight
    assert model.projection.bias is None
    untied = rustrnn.LanguageModel(model.vocab, E, H, 2, dropout=0.0)
    count = sum(p.numel() for p in model.parameters())
    assert count == sum(p.numel() for p in untied.parameters()) - v * H + E * H
    same_width = rustrnn.LanguageModel(model.vocab, E, E, 2, tie_weights=True)
    assert same_width.projection is None
    assert "projection.weight" not in same_width.state_dict()


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh"])
def test_forward_log_prob_and_score_match_plain_torch(cell):
    model = projected(cell)
    ref = Plain(model)
    ids = torch.randint(len(model.vocab), (9, 3))
    with torch.no_grad():
        torch.testing.assert_close(model(ids)[0], ref(ids)[0], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(model.to_torch()(ids)[0], ref(ids)[0], rtol=0, atol=1e-12)
    vocab_ = model.vocab
    lines = ["the quick", "", "a much longer line about the lazy dog.", "x"]
    got = model.score(lines, bos=True, eos=True)
    newline = vocab_["\n"]
    for line, g in zip(lines, got):
        ids_ = vocab_.encode(line).tolist() + [newline]
        context = torch.tensor([newline] + ids_[:-1]).unsqueeze(1)
        with torch.no_grad():
            logp = F.log_softmax(ref(context)[0][:, 0], dim=-1)
        want = logp.gather(1, torch.tensor(ids_).unsqueeze(1)).sum()
        assert g.item() == pytest.approx(want.item(), rel=1e-9, abs=1e-9), line
    total, per_token = model.log_prob(lines[2])
    assert total.item() == pytest.approx(per_token.sum().item(), rel=1e-12)
    assert [s.log_prob for s in model.full_scores(lines[0], eos=False)] == pytest.approx(
        model.log_prob(lines[0])[1].tolist(), rel=1e-9
    )


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_greedy_generation_and_beam_search_follow_plain_torch(cell, dtype):
    model = projected(cell, dtype=dtype)
    ref = Plain(model)
    prompt = "the "
    _, ids = model.generate(prompt, 25, greedy=True, return_ids=True)
    with torch.no_grad():
        logits, state = ref(model.vocab.encode(prompt).unsqueeze(1))
        step, want = logits[-1, 0], []
        for _ in range(25):
            want.append(int(step.argmax()))
            logits, state = ref(torch.tensor([[want[-1]]]), state)
            step = logits[0, 0]
    assert ids[0].tolist() == want
    # Beam search with one beam is greedy search, and the log-probability it reports is
    # plain torch's for the continuation.
    _, beam_ids, lps = model.generate(
        prompt, 25, num_beams=1, return_ids=True, return_log_probs=True
    )
    assert beam_ids[0].tolist() == want
    context = model.vocab.encode(prompt).tolist() + want
    with torch.no_grad():
        logits, _ = ref(torch.tensor([model.vocab["\n"]] + context[:-1]).unsqueeze(1))
        logp = F.log_softmax(logits[:, 0].double(), dim=-1)
    n = len(prompt)
    want_lp = logp[n:].gather(1, torch.tensor(want).unsqueeze(1)).sum().item()
    assert lps[0] == pytest.approx(want_lp, abs=1e-4 if dtype == torch.float32 else 1e-9)


def test_sampled_first_tokens_follow_the_projected_distribution():
    """Chi-square over 20,000 first tokens against plain torch's softmax(logits / T), at
    significance 1e-4 (Wilson-Hilferty's quantile)."""
    model = projected(dtype=torch.float32)
    ref = Plain(model)
    temperature = 0.8
    with torch.no_grad():
        logits, _ = ref(model.vocab.encode("the ").unsqueeze(1))
        probs = F.softmax(logits[-1, 0].double() / temperature, dim=-1)
    n = 20000
    torch.manual_seed(3)
    _, ids = model.generate("the ", 1, num_samples=n, temperature=temperature, return_ids=True)
    counts = torch.bincount(torch.cat(ids), minlength=len(model.vocab)).double()
    expected = probs * n
    keep = expected >= 5
    chi2 = (((counts[keep] - expected[keep]) ** 2) / expected[keep]).sum()
    dof = int(keep.sum()) - 1
    rest_exp = expected[~keep].sum()
    if rest_exp > 0:
        chi2 += (counts[~keep].sum() - rest_exp) ** 2 / rest_exp
        dof += 1
    bound = dof * (1 - 2 / (9 * dof) + 3.719 * math.sqrt(2 / (9 * dof))) ** 3
    assert chi2.item() < bound, f"chi2={chi2.item():.1f} with {dof} dof exceeds {bound:.1f}"


def test_training_evaluates_through_the_projection():
    """The validation perplexity rustrnn.train reports (its eval pass) equals plain
    torch's over the same windows; SGD at lr 0 leaves the weights where they were."""
    model = projected()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    valid = TEXT[:200]
    hist = rustrnn.train(
        model,
        TEXT,
        valid,
        batch_size=3,
        bptt=6,
        max_steps=1,
        eval_every=1,
        optimizer="sgd",
        lr=0.0,
        progress=False,
    )
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    ref = Plain(model)
    data = batchify(model.vocab.encode(valid), 3)
    total, state = 0.0, None
    with torch.no_grad():
        for x, y in windows(data, 6):
            logits, state = ref(x, state)
            ce = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
            total += ce.item() * y.numel()
    want = math.exp(total / ((data.size(0) - 1) * 3))
    assert hist.valid_ppls[0] == pytest.approx(want, rel=1e-9)


def test_the_cli_trains_scores_and_generates_a_projected_tie(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog.\n" * 100, encoding="utf-8")
    out = tmp_path / "run"
    args = ["--embed", "8", "--hidden", "12", "--layers", "1", "--tied", "--bptt", "8"]
    args += ["--batch-size", "4", "--max-steps", "3", "--no-progress", "--seed", "1"]
    r = hostile_probe.cli("train", str(corpus), *args, "--out", str(out), timeout=300)
    assert r.returncode == 0, r.stderr
    ckpt = out / "model.safetensors"
    model = rustrnn.LanguageModel.load(ckpt)
    assert model.config["embed_size"] == 8 and model.config["hidden_size"] == 12
    assert model.projection.weight.shape == (8, 12)
    r = hostile_probe.cli("generate", str(ckpt), "--prompt", "the ", "--greedy", timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("the ")
    r = hostile_probe.cli("score", str(ckpt), str(corpus), timeout=300)
    assert r.returncode == 0, r.stderr
    assert "Perplexity including OOVs" in r.stdout + r.stderr
