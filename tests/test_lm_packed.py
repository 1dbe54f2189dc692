"""LanguageModel on packed batches of sentences of different lengths: the same logits,
states and scores as each sentence alone, and as a plain-torch model on the packed batch."""

import pytest
import torch
import torch.nn.functional as F
from lm_helpers import plain_copy, tiny_lm
from torch.nn.utils.rnn import pack_sequence, pad_packed_sequence, unpack_sequence

SENTENCES = ["the lazy dog.", "quick", "sphinx of black quartz, judge", "a"]


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_packed_forward_equals_each_sentence_alone(cell, dtype):
    torch.manual_seed(0)
    model = tiny_lm(cell, dtype=dtype).eval()
    ids = [model.vocab.encode(s) for s in SENTENCES]
    packed = pack_sequence(ids, enforce_sorted=False)
    logits, state = model(packed)
    per_seq = unpack_sequence(logits)
    h_n = state[0] if cell == "lstm" else state
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    for b, seq in enumerate(ids):
        alone, alone_state = model(seq.unsqueeze(1))
        torch.testing.assert_close(per_seq[b], alone.squeeze(1), rtol=tol, atol=tol)
        alone_h = alone_state[0] if cell == "lstm" else alone_state
        torch.testing.assert_close(h_n[:, b], alone_h[:, 0], rtol=tol, atol=tol)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_packed_forward_and_gradients_equal_plain_torch(cell):
    torch.manual_seed(1)
    model = tiny_lm(cell, layers=2)
    plain = plain_copy(model)
    packed = pack_sequence([model.vocab.encode(s) for s in SENTENCES], enforce_sorted=False)
    ours, _ = model(packed)
    x = packed._replace(data=plain.embedding(packed.data))
    out, _ = plain.rnn(x)
    ref = plain.head(out.data)
    torch.testing.assert_close(ours.data, ref)
    weights = torch.linspace(-1, 1, ref.numel(), dtype=ref.dtype).view_as(ref)
    (ours.data * weights).sum().backward()
    (ref * weights).sum().backward()
    theirs = dict(plain.named_parameters())
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, theirs[name].grad, msg=name)


def test_packed_log_prob_equals_each_sentence_scored_alone():
    torch.manual_seed(2)
    model = tiny_lm("gru")
    ids = [model.vocab.encode(s) for s in SENTENCES]
    totals, per_token = model.log_prob(pack_sequence(ids, enforce_sorted=False))
    assert totals.shape == (len(SENTENCES),)
    padded, lengths = pad_packed_sequence(per_token, batch_first=True)
    for b, text in enumerate(SENTENCES):
        total, alone = model.log_prob(text)
        torch.testing.assert_close(totals[b], total)
        torch.testing.assert_close(padded[b, : lengths[b]], alone)
    assert model.training, "scoring restores the training mode"


def test_packed_log_prob_is_a_plain_torch_recomputation():
    """log P of each sentence read after a line break, recomputed with torch.nn modules."""
    torch.manual_seed(3)
    model = tiny_lm("lstm", layers=1)
    ref_rnn = torch.nn.LSTM(6, 7, 1).double()
    ref_rnn.load_state_dict(model.rnn.state_dict())
    nl = model.vocab["\n"]
    ids = [model.vocab.encode(s) for s in SENTENCES]
    totals, _ = model.log_prob(pack_sequence(ids, enforce_sorted=False))
    with torch.no_grad():
        for b, seq in enumerate(ids):
            context = torch.cat([torch.tensor([nl]), seq[:-1]])
            out, _ = ref_rnn(model.embedding(context).unsqueeze(1))
            logp = F.log_softmax(model.head(out.squeeze(1)), dim=-1)
            want = logp.gather(1, seq.unsqueeze(1)).sum()
            torch.testing.assert_close(totals[b], want)


def test_packed_log_prob_rejects_float_ids():
    model = tiny_lm("gru")
    packed = pack_sequence([torch.tensor([1.0, 2.0])])
    with pytest.raises(TypeError, match="int64"):
        model.log_prob(packed)
