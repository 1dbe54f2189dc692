"""A model that gives a text (next to) no probability: its perplexity is what torch.exp
of the mean negative log-likelihood says (inf), not an OverflowError, for the neural
model, the n-gram model, their Evaluation and the command line."""

import math

import rustrnn
import torch
from hostile_probe import cli


def _hopeless():
    vocab = rustrnn.Vocab.build("ab\n", level="char")
    torch.manual_seed(0)
    model = rustrnn.LanguageModel(vocab, embed_size=4, hidden_size=4, num_layers=1, dropout=0.0)
    with torch.no_grad():  # 'b' gets a logit 2000 below the others
        model.head.bias.zero_()
        model.head.bias[vocab["b"]] = -2000.0
    return model


def test_perplexity_of_an_impossible_text_is_inf(tmp_path):
    model = _hopeless()
    _, per_token = model.log_prob("bbbb")
    want = torch.exp(-per_token.double().mean()).item()
    assert want == math.inf
    assert model.perplexity("bbbb") == want
    result = model.evaluate(["bbbb"], eos=False)
    assert result.perplexity_including_oovs == want == result.perplexity_excluding_oovs
    path = tmp_path / "model.safetensors"
    model.save(path)
    (tmp_path / "text.txt").write_text("bbbb\n")
    r = cli("perplexity", str(path), str(tmp_path / "text.txt"), timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "inf"
