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
        if opt is not None:
            opt.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh"])
@pytest.mark.parametrize("tie", [False, True, "projected"])
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
        # Plain SGD on an untied embedding: the trainer's sparse-row embedding gradient.
        ("lstm", False, "sgd", {}, 0.25),
        ("rnn_tanh", False, "sgd", {}, None),
        ("gru", True, "sgd", {"momentum": 0.9, "weight_decay": 1e-3}, 0.5),
        ("lstm", True, "adamw", {"weight_decay": 0.1}, None),
        ("lstm", "projected", "adam", {}, 0.25),
        ("gru", "projected", "sgd", {"momentum": 0.9}, 0.5),
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


class LayerwiseLM(torch.nn.Module):
    """word_language_model's model from single-layer torch.nn recurrences, with every
    dropout drawn by rustrnn.functional.dropout in the order the trainer draws them:
    the embeddings, each layer's input after the first, the head's input."""

    def __init__(self, model):
        super().__init__()
        cfg, sd = model.config, model.state_dict()
        ref = plain_copy(model)
        self.p = cfg["dropout"]
        self.embedding, self.head = ref.embedding, ref.head
        cls = type(ref.rnn)
        self.layers = torch.nn.ModuleList()
        for k in range(cfg["num_layers"]):
            width = cfg["embed_size"] if k == 0 else cfg["hidden_size"]
            layer = cls(width, cfg["hidden_size"]).to(torch.float64)
            own = {n.split(".", 1)[1]: v for n, v in sd.items() if n.startswith("rnn.")}
            layer.load_state_dict(
                {n.replace(f"_l{k}", "_l0"): v for n, v in own.items() if n.endswith(f"_l{k}")}
            )
            self.layers.append(layer)

    def forward(self, ids, state=None):
        drop = rustrnn.functional.dropout
        x = drop(self.embedding(ids), self.p)
        finals = []
        for k, layer in enumerate(self.layers):
            if k > 0:
                x = drop(x, self.p)
            if state is None:
                x, s = layer(x)
            elif isinstance(state, tuple):
                x, s = layer(x, (state[0][k : k + 1], state[1][k : k + 1]))
            else:
                x, s = layer(x, state[k : k + 1])
            finals.append(s)
        if isinstance(finals[0], tuple):
            state = tuple(torch.cat(parts) for parts in zip(*finals))
        else:
            state = torch.cat(finals)
        return self.head(drop(x, self.p)), state


def layerwise_run(model, ids, seed, opt=True):
    ref = LayerwiseLM(model).train()
    torch.manual_seed(seed)
    losses = torch_run(
        ref,
        ids,
        batch_size=4,
        bptt=7,
        steps=4,
        opt=torch.optim.SGD(ref.parameters(), lr=0.5) if opt else None,
        clip=0.25,
    )
    return ref, losses


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_dropout_masks_are_drawn_and_applied_like_a_layerwise_reference(cell):
    """Two layers, dropout 0.3 on the embeddings, between the layers and before the
    head: the losses and weights equal a plain-torch run whose dropouts are the same
    masks (one seed each from torch's generator, in the same order)."""
    model = tiny_lm(cell, layers=2, dropout=0.3)
    ids = model.vocab.encode(TEXT)
    ref, want = layerwise_run(model, ids, seed=123)
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
    assert hist.losses == pytest.approx(want, rel=1e-10)
    got = model.state_dict()
    for k, layer in enumerate(ref.layers):
        for n, p in layer.state_dict().items():
            name = "rnn." + n.replace("_l0", f"_l{k}")
            torch.testing.assert_close(got[name], p, rtol=0, atol=1e-8)
    for n in ["embedding.weight", "head.weight", "head.bias"]:
        torch.testing.assert_close(got[n], ref.state_dict()[n], rtol=0, atol=1e-8)
    # Other masks give other losses: the comparison can fail.
    _, other = layerwise_run(tiny_lm(cell, layers=2, dropout=0.3), ids, seed=124, opt=False)
    assert other[0] != pytest.approx(want[0], rel=1e-6)
