"""One training step's loss and gradients, and whole TBPTT runs, against plain torch:
nn.Embedding + torch.nn.LSTM/GRU/RNN + nn.Linear differentiated by torch autograd,
trained by word_language_model's loop with torch.optim (float64)."""

import pytest
import rustrnn
import torch
import torch.nn.functional as F
from lm_helpers import TEXT, plain_copy, tiny_lm


def batchify(ids, bsz):
    n = ids.size(0) // bsz
    return ids[: n * bsz].view(bsz, -1).t().contiguous()


def windows(data, bptt):
    for i in range(0, data.size(0) - 1, bptt):
        t = min(bptt, data.size(0) - 1 - i)
        yield data[i : i + t], data[i + 1 : i + 1 + t]


def detach(state):
    if state is None:
        return None
    return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()


def torch_run(ref, ids, *, batch_size, bptt, steps, opt, clip):
    """PyTorch's word_language_model training loop."""
    data = batchify(ids, batch_size)
    losses, state = [], None
    for x, y in windows(data, bptt):
        if len(losses) == steps:
            break
        state = detach(state)
        ref.zero_grad()
        out, state = ref(x, state)
        loss = F.cross_entropy(out.view(-1, out.size(-1)), y.reshape(-1))
        loss.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(ref.parameters(), clip)
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh"])
@pytest.mark.parametrize("tie", [False, True])
def test_one_step_gradients_match_torch_autograd(cell, tie):
    """SGD with lr=1 and no clipping: the update is exactly minus the gradient."""
    model = tiny_lm(cell, tie=tie)
    ref = plain_copy(model)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    ids = model.vocab.encode(TEXT)
    hist = rustrnn.train(
        model,
        ids,
        batch_size=3,
        bptt=5,
        max_steps=1,
        optimizer="sgd",
        lr=1.0,
        clip=None,
        progress=False,
    )
    x, y = next(windows(batchify(ids, 3), 5))
    logits, _ = ref(x)
    loss = F.cross_entropy(logits.view(-1, len(model.vocab)), y.reshape(-1))
    loss.backward()
    assert hist.losses == [pytest.approx(loss.item(), rel=1e-12)]
    ref_grads = dict(ref.named_parameters())
    for name, p in model.state_dict().items():
        grad = before[name] - p
        want = ref_grads[name].grad if name in ref_grads else ref_grads["embedding.weight"].grad
        torch.testing.assert_close(grad, want, rtol=0, atol=1e-6)
        torch.testing.assert_close(grad, want, rtol=1e-7, atol=1e-12)
    assert hist.grad_norms[0] == pytest.approx(
        torch.cat([p.grad.reshape(-1) for p in ref.parameters()]).norm().item(), rel=1e-10
    )


@pytest.mark.parametrize(
    "cell,tie,optimizer,kw,clip",
    [
        ("lstm", False, "adam", {}, 0.25),
        ("gru", True, "sgd", {"momentum": 0.9, "weight_decay": 1e-3}, 0.5),
        ("lstm", True, "adamw", {"weight_decay": 0.1}, None),
    ],
)
def test_a_tbptt_run_matches_word_language_model(cell, tie, optimizer, kw, clip):
    """Ten windows of 2 layers: state carried and detached, clipping, the optimizer."""
    model = tiny_lm(cell, tie=tie)
    ref = plain_copy(model)
    ids = model.vocab.encode(TEXT)
    lr = 0.01 if optimizer != "sgd" else 0.5
    hist = rustrnn.train(
        model,
        ids,
        batch_size=4,
        bptt=7,
        max_steps=10,
        optimizer=optimizer,
        lr=lr,
        clip=clip,
        progress=False,
        **kw,
    )
    cls = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
    opt = cls[optimizer](ref.parameters(), lr=lr, **{"weight_decay": 0.0, **kw})
    want = torch_run(ref, ids, batch_size=4, bptt=7, steps=10, opt=opt, clip=clip)
    assert hist.steps == list(range(1, 11))
    assert hist.losses == pytest.approx(want, rel=1e-10)
    for name, p in ref.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], p, rtol=0, atol=1e-8)


def test_dropout_draws_from_torchs_generator_like_nn_dropout():
    """One layer: the only dropouts are on the embeddings and before the head, which
    draw from torch's generator exactly as nn.Dropout does in the plain model."""
    model = tiny_lm("lstm", layers=1, dropout=0.3)
    ref = plain_copy(model).train()
    ids = model.vocab.encode(TEXT)
    torch.manual_seed(123)
    hist = rustrnn.train(
        model,
        ids,
        batch_size=4,
        bptt=7,
        max_steps=4,
        optimizer="sgd",
        lr=0.5,
        clip=0.25,
        progress=False,
    )
    torch.manual_seed(123)
    want = torch_run(
        ref,
        ids,
        batch_size=4,
        bptt=7,
        steps=4,
        opt=torch.optim.SGD(ref.parameters(), lr=0.5),
        clip=0.25,
    )
    assert hist.losses == pytest.approx(want, rel=1e-10)
    for name, p in ref.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], p, rtol=0, atol=1e-8)
