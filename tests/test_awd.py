"""AWD-LSTM's methods in rustrnn.train (Merity, Keskar & Socher 2018) against a plain-torch
reference written here from the paper's definitions (and salesforce/awd-lstm-lm's code):
weight drop, locked dropout, embedding dropout, AR/TAR, variable-length BPTT and NT-ASGD.

The reference draws its masks with ``rustrnn.functional``'s mask function from torch's
default generator in the order ``rustrnn.train`` documents (embedding rows, input, one per
``weight_hh`` matrix, between layers, output; the window length before them), runs
one ``nn.LSTM``/``nn.GRU``/``nn.RNN`` per layer through ``torch.func.functional_call`` on the
masked matrices, and is differentiated by torch autograd (float64)."""

import math

import pytest
import rustrnn
import torch
import torch.nn.functional as F
from lm_helpers import TEXT, TORCH_CELLS, tiny_lm
from rustrnn import _rustrnn
from rustrnn.training import RECIPES
from test_train_step import batchify
from torch import nn
from torch.func import functional_call

ALL_ON = dict(
    weight_drop=0.5,
    dropout_input=0.3,
    dropout_hidden=0.25,
    dropout_output=0.4,
    dropout_embedding=0.2,
    alpha=2.0,
    beta=1.0,
)


def mask(shape, p, like):
    return _rustrnn.dropout_mask(torch.empty(shape, dtype=like.dtype), p)


class Reference:
    """The AWD-LSTM forward over rustrnn's LanguageModel's tensors (copies, as leaves)."""

    def __init__(self, model, reg):
        cfg = model.config
        self.cell, self.layers = cfg["cell"], cfg["num_layers"]
        self.hidden, self.tie = cfg["hidden_size"], cfg["tie_weights"]
        self.p = cfg["dropout"]
        self.reg = {k: reg.get(k, 0.0) for k in ALL_ON}
        for k in ("dropout_input", "dropout_hidden", "dropout_output"):
            self.reg[k] = reg.get(k)  # None: the model's own dropout stays there
        self.params = {
            k: v.detach().clone().requires_grad_(True) for k, v in model.state_dict().items()
        }
        self.adaptive = model.head if cfg.get("head") == "adaptive" else None
        cls, extra = TORCH_CELLS[self.cell]
        self.modules = [
            cls(cfg["embed_size"] if i == 0 else self.hidden, self.hidden, 1, **extra).double()
            for i in range(self.layers)
        ]

    def layer_weights(self, i, drop_masks):
        w = {}
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            t = self.params[f"rnn.{name}_l{i}"]
            if name == "weight_hh" and drop_masks is not None:
                t = t * drop_masks[i]
            w[f"{name}_l0"] = t
        return w

    def plain_or_locked(self, x, locked_p):
        if locked_p is not None:
            return x * mask((1, x.size(1), x.size(2)), locked_p, x) if locked_p > 0 else x
        if self.p > 0:
            return x * mask(tuple(x.shape), self.p, x)
        return x

    def step_loss(self, x, y, state):
        """Cross-entropy and the objective (with AR/TAR) of one window, masks drawn in
        rustrnn's order; the final states."""
        r, P = self.reg, self.params
        table = P["embedding.weight"]
        if r["dropout_embedding"] > 0:
            table = table * mask((table.size(0), 1), r["dropout_embedding"], table)
        emb = self.plain_or_locked(F.embedding(x, table), r["dropout_input"])
        drop_masks = None
        if r["weight_drop"] > 0:
            drop_masks = [
                mask(tuple(P[f"rnn.weight_hh_l{i}"].shape), r["weight_drop"], emb)
                for i in range(self.layers)
            ]
        h, finals = emb, []
        for i in range(self.layers):
            s0 = None if state is None else state[i]
            h, s = functional_call(self.modules[i], self.layer_weights(i, drop_masks), (h, s0))
            finals.append(s)
            if i + 1 < self.layers:
                if r["dropout_hidden"] is not None:
                    if r["dropout_hidden"] > 0:
                        h = h * mask((1, h.size(1), h.size(2)), r["dropout_hidden"], h)
                elif self.p > 0:
                    h = h * mask(tuple(h.shape), self.p, h)
        dropped = self.plain_or_locked(h, r["dropout_output"])
        if self.adaptive is not None:  # torch's own module, on our tensors
            head = {k[5:]: v for k, v in P.items() if k.startswith("head.")}
            rows, targets = dropped.reshape(-1, dropped.size(-1)), y.reshape(-1)
            ce = functional_call(self.adaptive, head, (rows, targets)).loss
        else:
            head_w = P["embedding.weight"] if self.tie else P["head.weight"]
            into_head = dropped
            if "projection.weight" in P:  # a tie of different widths
                into_head = F.linear(dropped, P["projection.weight"])
            logits = F.linear(into_head, head_w, P["head.bias"])
            ce = F.cross_entropy(logits.view(-1, logits.size(-1)), y.reshape(-1))
        objective = ce
        if r["alpha"] > 0:
            objective = objective + r["alpha"] * dropped.pow(2).mean()
        if r["beta"] > 0:
            objective = objective + r["beta"] * (h[1:] - h[:-1]).pow(2).mean()
        detached = [
            tuple(t.detach() for t in s) if isinstance(s, tuple) else s.detach() for s in finals
        ]
        return ce, objective, detached


def sgd_run(model, reg, *, steps, lr, batch_size=3, bptt=6, seed=7, variable=False):
    """The reference loop: plain SGD, no clipping; returns the losses, the lrs used and
    the final weights."""
    ref = Reference(model, reg)
    data = batchify(model.vocab.encode(TEXT), batch_size)
    torch.manual_seed(seed)
    state, pos, losses, lrs = None, 0, [], []
    while len(losses) < steps and pos < data.size(0) - 1:
        length, step_lr = bptt, lr
        if variable:
            u = torch.rand((), dtype=torch.float64).item()
            n = torch.randn((), dtype=torch.float64).item()
            length = max(5, int((bptt if u < 0.95 else bptt / 2) + 5 * n))
        length = min(length, data.size(0) - 1 - pos)
        if variable:
            step_lr = lr * length / bptt
        x, y = data[pos : pos + length], data[pos + 1 : pos + 1 + length]
        ce, objective, state = ref.step_loss(x, y, state)
        grads = torch.autograd.grad(objective, list(ref.params.values()), allow_unused=True)
        with torch.no_grad():
            for (k, p), g in zip(ref.params.items(), grads):
                if g is not None and not (ref.tie and k == "head.weight"):
                    p -= step_lr * g
        losses.append(ce.item())
        lrs.append(step_lr)
        pos += length
    return losses, lrs, {k: v.detach() for k, v in ref.params.items()}


def rustrnn_run(model, reg, *, steps, lr, batch_size=3, bptt=6, seed=7, variable=False):
    hist = rustrnn.train(
        model,
        TEXT,
        batch_size=batch_size,
        bptt=bptt,
        max_steps=steps,
        optimizer="sgd",
        lr=lr,
        clip=None,
        seed=seed,
        progress=False,
        variable_bptt=variable,
        **reg,
    )
    return hist


def assert_same_weights(model, want, tol=1e-8):
    got = model.state_dict()
    for k, w in want.items():
        if k == "head.weight" and model.config["tie_weights"]:
            continue
        torch.testing.assert_close(got[k], w, rtol=tol, atol=tol, msg=k)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh"])
@pytest.mark.parametrize(
    "reg",
    [
        ALL_ON,
        {"weight_drop": 0.5},
        {"dropout_input": 0.3, "dropout_output": 0.4},
        {"dropout_hidden": 0.25},
        {"dropout_embedding": 0.2},
        {"alpha": 2.0, "beta": 1.0},
        {"alpha": 2.0, "beta": 1.0, "dropout_output": 0.5},
    ],
    ids=["all", "weight_drop", "locked_io", "locked_hidden", "embedding", "ar_tar", "ar_tar_drop"],
)
def test_each_method_matches_the_papers_definition(cell, reg):
    model = tiny_lm(cell, layers=3)
    want_losses, _, want = sgd_run(model, reg, steps=3, lr=0.5)
    hist = rustrnn_run(model, reg, steps=3, lr=0.5)
    assert hist.losses == pytest.approx(want_losses, rel=1e-10)
    assert_same_weights(model, want)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_the_methods_with_the_adaptive_head(cell):
    """AWD's methods and an adaptive softmax head (torch's module in the reference); SGD
    without momentum treats clusters no target reached as torch does."""
    torch.manual_seed(0)
    model = rustrnn.LanguageModel(
        tiny_lm().vocab, 6, 16, 2, cell=cell, dropout=0.0, head="adaptive", cutoffs=[4, 12]
    ).double()
    want_losses, _, want = sgd_run(model, ALL_ON, steps=3, lr=0.5)
    hist = rustrnn_run(model, ALL_ON, steps=3, lr=0.5)
    assert hist.losses == pytest.approx(want_losses, rel=1e-10)
    assert_same_weights(model, want)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("tie", [True, "projected"])
def test_the_methods_with_tied_weights_and_the_models_own_dropout(cell, tie):
    """The plain dropout stays where no locked one replaces it; a tied head reads the
    embedding table undropped; a tie of different widths projects the dropped output
    (AR on the stack's own output, before the projection)."""
    model = tiny_lm(cell, tie=tie, dropout=0.3)
    reg = {"weight_drop": 0.4, "dropout_embedding": 0.3, "alpha": 1.0}
    want_losses, _, want = sgd_run(model, reg, steps=3, lr=0.5)
    hist = rustrnn_run(model, reg, steps=3, lr=0.5)
    assert hist.losses == pytest.approx(want_losses, rel=1e-10)
    assert_same_weights(model, want)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh"])
def test_every_method_on_awds_own_shape_a_tie_of_different_widths(cell):
    """AWD-LSTM's model is three layers whose embedding (400) is narrower than the stack
    (1150) with tied weights: here through the projection, all methods on."""
    model = tiny_lm(cell, embed=5, hidden=9, layers=3, tie="projected")
    want_losses, _, want = sgd_run(model, ALL_ON, steps=3, lr=0.5)
    hist = rustrnn_run(model, ALL_ON, steps=3, lr=0.5)
    assert hist.losses == pytest.approx(want_losses, rel=1e-10)
    assert_same_weights(model, want)


def test_weight_drop_masks_one_matrix_per_layer_and_reaches_the_raw_weights():
    """With weight drop alone, only weight_hh is masked: the gradients of the input
    weights are those of the masked network, and the raw weight_hh moves only where
    its mask kept it (a dropped entry gets no gradient at all)."""
    model = tiny_lm("lstm", layers=2)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    torch.manual_seed(11)
    masks = [
        _rustrnn.dropout_mask(torch.empty_like(before[f"rnn.weight_hh_l{i}"]), 0.5)
        for i in range(2)
    ]
    rustrnn_run(model, {"weight_drop": 0.5}, steps=1, lr=1.0, seed=11)
    for i, m in enumerate(masks):
        moved = model.state_dict()[f"rnn.weight_hh_l{i}"] != before[f"rnn.weight_hh_l{i}"]
        assert not (moved & (m == 0)).any(), f"layer {i}: a dropped entry was updated"
        assert moved[m != 0].float().mean() > 0.9


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_variable_bptt_draws_windows_and_rescales_the_learning_rate(cell):
    model = tiny_lm(cell)
    reg = {"dropout_output": 0.3}
    want_losses, want_lrs, want = sgd_run(model, reg, steps=6, lr=0.5, bptt=8, variable=True)
    hist = rustrnn_run(model, reg, steps=6, lr=0.5, bptt=8, variable=True)
    assert hist.lrs == pytest.approx(want_lrs, rel=1e-12)
    assert len(set(hist.lrs)) > 1, "the window lengths should vary"
    assert hist.losses == pytest.approx(want_losses, rel=1e-10)
    assert_same_weights(model, want)


def test_variable_bptt_resumes_exactly(tmp_path):
    reg = {"weight_drop": 0.3, "dropout_hidden": 0.2, "alpha": 1.0}
    kw = dict(batch_size=3, bptt=8, optimizer="sgd", lr=0.5, progress=False, seed=3)
    full = tiny_lm()
    start = {k: v.clone() for k, v in full.state_dict().items()}
    straight = rustrnn.train(full, TEXT, max_steps=6, variable_bptt=True, **reg, **kw)
    first = tiny_lm()
    first.load_state_dict(start)
    ckpt = tmp_path / "run"
    rustrnn.train(first, TEXT, max_steps=3, variable_bptt=True, checkpoint_dir=ckpt, **reg, **kw)
    resumed = tiny_lm()
    resumed.load_state_dict(start)
    rest = rustrnn.train(
        resumed,
        TEXT,
        max_steps=6,
        variable_bptt=True,
        checkpoint_dir=ckpt,
        resume=True,
        **reg,
        **kw,
    )
    assert rest.losses == straight.losses
    for k, v in full.state_dict().items():
        assert torch.equal(resumed.state_dict()[k], v), k


# ------------------------------------------------------------------ NT-ASGD


def plain_eval(ref_params, model, valid, batch, bptt):
    """Perplexity of the reference weights on `valid`, read as rustrnn.train reads it."""
    data = batchify(model.vocab.encode(valid), batch)
    r = Reference(model, {})
    r.params = ref_params
    total, state = 0.0, None
    with torch.no_grad():
        for i in range(0, data.size(0) - 1, bptt):
            t = min(bptt, data.size(0) - 1 - i)
            x, y = data[i : i + t], data[i + 1 : i + 1 + t]
            ce, _, state = r.step_loss(x, y, state)
            total += ce.item() * y.numel()
    return math.exp(total / ((data.size(0) - 1) * batch))


def test_nt_asgd_switches_where_the_papers_trigger_says_and_averages_as_torch_asgd():
    torch.set_default_dtype(torch.float64)  # ASGD's eta/mu scalars in float64, as ours
    try:
        _nt_asgd_case()
    finally:
        torch.set_default_dtype(torch.float32)


def _nt_asgd_case():
    model = tiny_lm("lstm")
    valid = TEXT[:150]
    steps, lr, wd, nonmono, bs, bptt = 24, 4.0, 1e-3, 2, 3, 6
    # The reference: SGD, evaluating after every step; the trigger of AWD-LSTM's main.py;
    # then a fresh torch.optim.ASGD(t0=0, lambd=0), evaluating with its averages.
    ref = Reference(model, {})
    params = list(ref.params.values())
    sgd = torch.optim.SGD(params, lr=lr, weight_decay=wd)
    opt, asgd, switched = sgd, None, None
    data = batchify(model.vocab.encode(TEXT), bs)
    torch.manual_seed(5)
    ppls, state, pos = [], None, 0
    for step in range(1, steps + 1):
        if pos >= data.size(0) - 1:
            pos, state = 0, None
        t = min(bptt, data.size(0) - 1 - pos)
        x, y = data[pos : pos + t], data[pos + 1 : pos + 1 + t]
        pos += t
        opt.zero_grad()
        ce, objective, state = ref.step_loss(x, y, state)
        objective.backward()
        opt.step()
        if asgd is not None:
            avg = {k: asgd.state[p]["ax"].clone() for k, p in ref.params.items()}
            ppl = plain_eval(avg, model, valid, bs, bptt)
        else:
            ppl = plain_eval(dict(ref.params), model, valid, bs, bptt)
            if len(ppls) > nonmono and ppl > min(ppls[:-nonmono]):
                asgd = torch.optim.ASGD(params, lr=lr, t0=0, lambd=0.0, weight_decay=wd)
                opt, switched = asgd, step
        ppls.append(ppl)
    assert switched is not None, "the reference never switched: retune the test"
    want = {k: asgd.state[p]["ax"] for k, p in ref.params.items()}

    hist = rustrnn.train(
        model,
        TEXT,
        valid,
        batch_size=bs,
        bptt=bptt,
        max_steps=steps,
        eval_every=1,
        optimizer="nt_asgd",
        lr=lr,
        weight_decay=wd,
        nonmono=nonmono,
        clip=None,
        seed=5,
        progress=False,
    )
    assert hist.averaged_from == switched
    assert hist.valid_ppls[: len(ppls)] == pytest.approx(ppls, rel=1e-9)
    assert all(v == lr for v in hist.lrs), "nt_asgd keeps its learning rate"
    assert_same_weights(model, want)  # the model ends with the averaged weights


def test_nt_asgd_resumes_with_its_averages(tmp_path):
    kw = dict(batch_size=3, bptt=6, optimizer="nt_asgd", lr=4.0, nonmono=2, eval_every=1)
    kw.update(clip=None, seed=5, progress=False)
    valid = TEXT[:150]
    full = tiny_lm()
    start = {k: v.clone() for k, v in full.state_dict().items()}
    straight = rustrnn.train(full, TEXT, valid, max_steps=24, **kw)
    assert straight.averaged_from is not None and straight.averaged_from < 20
    first = tiny_lm()
    first.load_state_dict(start)
    ckpt = tmp_path / "run"
    rustrnn.train(first, TEXT, valid, max_steps=20, checkpoint_dir=ckpt, **kw)
    resumed = tiny_lm()
    resumed.load_state_dict(start)
    rest = rustrnn.train(resumed, TEXT, valid, max_steps=24, checkpoint_dir=ckpt, resume=True, **kw)
    assert rest.valid_ppls == straight.valid_ppls
    assert rest.averaged_from == straight.averaged_from
    for k, v in full.state_dict().items():
        assert torch.equal(resumed.state_dict()[k], v), k


# ------------------------------------------------------------------ recipe


def test_the_awd_recipe_sets_the_published_defaults_and_each_can_be_overridden():
    seen = {}

    class Spy:
        def __call__(self, model, train, valid, options, resume, hooks, distributed):
            seen.update(options)
            raise KeyboardInterrupt

    real = _rustrnn.train_lm
    try:
        rustrnn.training._rustrnn.train_lm = Spy()
        with pytest.raises(KeyboardInterrupt):
            rustrnn.train(tiny_lm(), TEXT, recipe="awd", lr=10.0, progress=False)
    finally:
        rustrnn.training._rustrnn.train_lm = real
    for k, v in RECIPES["awd"].items():
        assert seen[k] == (10.0 if k == "lr" else v), k
    assert seen["optimizer"] == "nt_asgd" and seen["variable_bptt"] is True
    assert seen["weight_drop"] == 0.5 and seen["alpha"] == 2.0 and seen["bptt"] == 70


def test_the_awd_recipe_trains_and_the_model_stays_plain_torch():
    model = tiny_lm("lstm")
    hist = rustrnn.train(
        model,
        TEXT,
        TEXT[:200],
        recipe="awd",
        batch_size=3,
        bptt=10,
        max_steps=8,
        lr=1.0,
        progress=False,
        seed=0,
    )
    assert hist.stop_reason == "max_steps" and all(math.isfinite(v) for v in hist.losses)
    plain = nn.LSTM(6, 7, 2).double()
    plain.load_state_dict({k[4:]: v for k, v in model.state_dict().items() if k.startswith("rnn.")})


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"weight_drop": 1.0}, r"weight_drop must be in \[0, 1\), got 1\.0"),
        ({"dropout_hidden": -0.1}, r"dropout_hidden must be in \[0, 1\)"),
        ({"dropout_embedding": 1.5}, r"dropout_embedding must be in \[0, 1\)"),
        ({"alpha": -1.0}, r"alpha must be a finite number >= 0, got -1\.0"),
        ({"beta": math.inf}, r"beta must be a finite number >= 0, got inf"),
        ({"nonmono": 0}, r"nonmono must be >= 1, got 0"),
        ({"recipe": "awd-lstm"}, r"unknown recipe 'awd-lstm'"),
        ({"optimizer": "nt_asgd", "momentum": 0.9}, r"takes no momentum"),
    ],
)
def test_bad_regularisation_options_are_value_errors_naming_them(kw, match):
    with pytest.raises(ValueError, match=match):
        rustrnn.train(tiny_lm(), TEXT, batch_size=2, bptt=4, max_steps=1, progress=False, **kw)
