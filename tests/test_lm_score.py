"""LanguageModel.score / full_scores / evaluate against a plain-torch recomputation of
each line alone (torch.nn modules with the model's weights), with KenLM's accounting."""

import math

import pytest
import rustrnn
import torch
import torch.nn.functional as F
from lm_helpers import plain_copy

TEXT = (
    "the cat sat on the mat .\nthe dog sat on the log .\na cat and a dog .\n"
    "the mat is on the log .\n"
) * 3
LINES = [
    "the cat sat on the log .",
    "",
    "a dog",
    "the zebra sat on the mat and the cat sat on the dog and the log is a mat .",
    "zebra",
    "the",
]


def word_model(cell, specials=("<unk>", "<eos>")):
    torch.manual_seed(0)
    vocab = rustrnn.Vocab.build(TEXT, level="word", specials=specials)
    return rustrnn.LanguageModel(vocab, 8, 10, 2, cell=cell, dropout=0.0).double()


def reference(model, line, bos, eos):
    """Per-token log-probabilities of one line, one line at a time in plain torch."""
    plain = plain_copy(model).eval()
    eol = model.vocab["<eos>"]
    ids = model.vocab.encode(line).tolist()
    context = ([eol] if bos else []) + ids
    targets = ids + ([eol] if eos else [])
    if not bos:
        targets = targets[1:]
    context = context[: len(targets)]
    if not targets:
        return torch.zeros(0, dtype=torch.float64)
    with torch.no_grad():
        logits, _ = plain(torch.tensor(context).unsqueeze(1))
        logp = F.log_softmax(logits.squeeze(1), dim=-1)
    return logp.gather(1, torch.tensor(targets).unsqueeze(1)).squeeze(1)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh", "rnn_relu"])
@pytest.mark.parametrize("bos", [True, False])
@pytest.mark.parametrize("eos", [True, False])
def test_score_equals_each_line_alone(cell, bos, eos):
    model = word_model(cell)
    got = model.score(LINES, bos=bos, eos=eos)
    assert got.shape == (len(LINES),) and got.dtype == torch.float64
    for i, line in enumerate(LINES):
        want = reference(model, line, bos, eos).sum().item()
        assert got[i].item() == pytest.approx(want, rel=1e-5, abs=1e-9), (line, bos, eos)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_score_equals_log_prob_with_bos_and_no_eos(dtype):
    model = word_model("lstm").to(dtype)
    got = model.score([line for line in LINES if line])
    for i, line in enumerate(line for line in LINES if line):
        total, _ = model.log_prob(line)
        eos_term = model.full_scores(line)[-1].log_prob
        assert got[i].item() == pytest.approx(total.item() + eos_term, rel=1e-5)


def test_empty_line_is_log_p_of_the_line_break_or_zero():
    model = word_model("gru")
    eol = model.vocab["<eos>"]
    with torch.no_grad():
        logits, _ = model.eval()(torch.tensor([[eol]]))
    want = F.log_softmax(logits[0, 0].double(), -1)[eol].item()
    assert model.score([""])[0].item() == pytest.approx(want, rel=1e-9)
    assert model.score([""], eos=False)[0].item() == 0.0


def test_many_lines_of_very_different_lengths_in_one_call():
    model = word_model("lstm")
    torch.manual_seed(1)
    words = model.vocab.tokens()[2:]
    lines = [
        " ".join(words[j] for j in torch.randint(0, len(words), (n,)).tolist())
        for n in torch.randint(0, 60, (200,)).tolist()
    ]
    got = model.score(lines)
    for i in (0, 17, 99, 199):
        assert got[i].item() == pytest.approx(reference(model, lines[i], True, True).sum().item())
    # The same lines in another order give the same scores, reordered.
    perm = torch.randperm(len(lines)).tolist()
    again = model.score([lines[i] for i in perm])
    torch.testing.assert_close(again, got[perm])


def test_float32_scores_of_many_tokens_equal_each_line_alone_in_float64():
    """Thousands of tokens in float32: on AVX-512 CPUs the head is packed for the fused
    kernels once for the call; the scores still equal the float64 recomputation."""
    exact = word_model("lstm")
    with torch.no_grad():  # initialised to zeros: a bias lost would go unseen
        exact.head.bias.copy_(torch.linspace(-1, 1, exact.head.bias.numel()))
    model = word_model("lstm").float()
    model.load_state_dict(exact.state_dict())
    torch.manual_seed(2)
    words = model.vocab.tokens()[2:]
    lines = [
        " ".join(words[j] for j in torch.randint(0, len(words), (n,)).tolist())
        for n in torch.randint(1, 60, (150,)).tolist()
    ]
    assert sum(len(line.split()) + 1 for line in lines) > 2000
    got = model.score(lines)
    for i in range(0, len(lines), 7):
        want = reference(exact, lines[i], True, True).sum().item()
        assert got[i].item() == pytest.approx(want, rel=1e-4), i


def test_full_scores_marks_oovs_and_ends_with_the_line_break():
    model = word_model("lstm")
    records = model.full_scores("the zebra sat")
    assert [r.token for r in records] == ["the", "zebra", "sat", "<eos>"]
    assert [r.oov for r in records] == [False, True, False, False]
    ref = reference(model, "the zebra sat", True, True)
    for r, want in zip(records, ref.tolist()):
        assert r.log_prob == pytest.approx(want, rel=1e-5)
    assert records[1].log_prob == pytest.approx(
        reference(model, "the <unk> sat", True, True)[1].item(), rel=1e-9
    )


def test_evaluate_uses_kenlms_definitions():
    model = word_model("gru")
    result = model.evaluate("\n".join(LINES))
    per_line = [reference(model, line, True, True) for line in LINES]
    tokens = sum(len(p) for p in per_line)
    total = sum(p.sum().item() for p in per_line)
    oov_terms = [
        p[i].item()
        for line, p in zip(LINES, per_line)
        for i, tok in enumerate(model.vocab.tokenize(line))
        if tok not in model.vocab
    ]
    assert result.tokens == tokens
    assert result.oovs == len(oov_terms) == 2  # "zebra", twice
    assert result.log_prob == pytest.approx(total, rel=1e-6)
    assert result.perplexity_including_oovs == pytest.approx(math.exp(-total / tokens), rel=1e-6)
    assert result.perplexity_excluding_oovs == pytest.approx(
        math.exp(-(total - sum(oov_terms)) / (tokens - len(oov_terms))), rel=1e-6
    )
    assert result.bits_per_token == pytest.approx(-total / tokens / math.log(2), rel=1e-6)
    assert "perplexity_including_oovs=" in repr(result)


def test_oov_without_unk_in_the_vocabulary_is_a_key_error():
    model = word_model("lstm", specials=("<eos>",))
    with pytest.raises(KeyError, match="zebra"):
        model.score(["the zebra"])
    assert model.score(["the cat"]).shape == (1,)


def test_id_lines_and_bad_input():
    model = word_model("rnn_tanh")
    ids = model.vocab.encode("the cat sat")
    assert model.score([ids])[0].item() == pytest.approx(model.score(["the cat sat"])[0].item())
    with pytest.raises(TypeError, match="list of lines"):
        model.score("the cat sat")
    with pytest.raises(IndexError, match="16"):
        model.score([[len(model.vocab) + 3]])


def test_cli_score_prints_one_line_per_line_and_kenlms_summary(tmp_path):
    import subprocess
    import sys

    model = word_model("lstm").float()
    path = tmp_path / "model.safetensors"
    model.save(path)
    text = "the cat sat\nthe zebra\n"
    (tmp_path / "in.txt").write_text(text)
    cli = [sys.executable, "-m", "rustrnn", "score", str(path)]
    from_file = subprocess.run(
        cli + [str(tmp_path / "in.txt")], capture_output=True, text=True, timeout=300
    )
    from_stdin = subprocess.run(
        cli + ["-", "--per-token"], input=text, capture_output=True, text=True, timeout=300
    )
    assert from_file.returncode == 0, from_file.stderr
    rows = [line.split("\t") for line in from_file.stdout.splitlines()]
    want = model.score(text.splitlines())
    for row, w in zip(rows[:2], want.tolist()):
        assert float(row[0]) == pytest.approx(w, rel=1e-5)
    assert rows[0][1:] == ["4", "0", "the cat sat"] and rows[1][1:] == ["3", "1", "the zebra"]
    summary = dict(r for r in rows[2:])
    result = model.evaluate(text)
    assert float(summary["Perplexity including OOVs:"]) == pytest.approx(
        result.perplexity_including_oovs, rel=1e-4
    )
    assert summary["OOVs:"] == "1" and summary["Tokens:"] == "7"
    assert from_stdin.returncode == 0 and "zebra=" in from_stdin.stdout
    missing = subprocess.run(
        cli[:-1] + [str(tmp_path / "none"), "-"], input="", capture_output=True, text=True
    )
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1
