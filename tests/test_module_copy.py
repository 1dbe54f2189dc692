"""Every rustrnn module copies like a torch.nn module: copy.deepcopy, pickle and
torch.save / torch.load(weights_only=False) give a module that computes exactly what the
original computes (outputs and gradients); the Vocab travels as its versioned JSON."""

import copy
import io
import multiprocessing
import pickle
import pickletools
import warnings

import pytest
import rustrnn
import torch
from lm_helpers import TEXT, tiny_lm
from rustrnn import _rustrnn


def _deepcopy(obj):
    return copy.deepcopy(obj)


def _pickle(obj):
    return pickle.loads(pickle.dumps(obj))


def _pickle_protocol_0(obj):
    return pickle.loads(pickle.dumps(obj, protocol=0))


def _torch_save(obj):
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=False)


COPIES = {
    "deepcopy": _deepcopy,
    "pickle": _pickle,
    "pickle0": _pickle_protocol_0,
    "torch_save": _torch_save,
}

STACKS = {
    "rnn_tanh": lambda: rustrnn.RNN(3, 5),
    "rnn_relu_all": lambda: rustrnn.RNN(
        3,
        5,
        2,
        nonlinearity="relu",
        bias=False,
        batch_first=True,
        dropout=0.3,
        bidirectional=True,
    ),
    "lstm": lambda: rustrnn.LSTM(3, 5),
    "lstm_all": lambda: rustrnn.LSTM(
        3, 5, 2, bias=False, batch_first=True, dropout=0.3, bidirectional=True, proj_size=2
    ),
    "lstm_float64": lambda: rustrnn.LSTM(3, 5, 2, proj_size=4, dtype=torch.float64),
    "gru": lambda: rustrnn.GRU(3, 5),
    "gru_all": lambda: rustrnn.GRU(
        3, 5, 3, bias=False, batch_first=True, dropout=0.5, bidirectional=True
    ),
}

CELLS = {
    "rnn_cell": lambda: rustrnn.RNNCell(3, 5),
    "rnn_cell_relu": lambda: rustrnn.RNNCell(3, 5, bias=False, nonlinearity="relu"),
    "lstm_cell": lambda: rustrnn.LSTMCell(3, 5),
    "lstm_cell_nobias": lambda: rustrnn.LSTMCell(3, 5, bias=False),
    "gru_cell": lambda: rustrnn.GRUCell(3, 5, dtype=torch.float64),
    "gru_cell_nobias": lambda: rustrnn.GRUCell(3, 5, bias=False),
}


def _flat(out):
    if isinstance(out, torch.Tensor):
        return [out]
    return [t for item in out for t in _flat(item)]


def _run(module, x, seed):
    """Forward (dropout masks from a fixed seed) and backward with a loss that weighs
    every output element differently; returns the outputs and every gradient."""
    for p in module.parameters():
        p.grad = None
    x = x.detach().clone().requires_grad_()
    torch.manual_seed(seed)
    outs = _flat(module(x))
    loss = sum(
        (o * torch.cos(torch.arange(o.numel(), dtype=o.dtype)).view_as(o)).sum() for o in outs
    )
    loss.backward()
    return [o.detach() for o in outs] + [x.grad] + [p.grad for p in module.parameters()]


def _assert_identical(a, b):
    assert len(a) == len(b)
    for u, v in zip(a, b):
        assert u.dtype == v.dtype and u.shape == v.shape
        assert torch.equal(u, v)


def _input(module, cell):
    dtype = next(module.parameters()).dtype
    if cell:
        return torch.randn(4, 3, dtype=dtype)
    return torch.randn(4, 2, 3, dtype=dtype)


def _assert_same_module(orig, twin):
    assert type(twin) is type(orig)
    assert repr(twin) == repr(orig)
    assert twin.training == orig.training
    a, b = orig.state_dict(), twin.state_dict()
    assert list(a) == list(b)
    for k in a:
        assert torch.equal(a[k], b[k]) and a[k].dtype == b[k].dtype
    for p, q in zip(orig.parameters(), twin.parameters()):
        assert p is not q  # a copy, not a view of the original's Parameters


@pytest.mark.parametrize("how", list(COPIES))
@pytest.mark.parametrize("name", list(STACKS) + list(CELLS))
@pytest.mark.parametrize("training", [True, False])
def test_copies_compute_exactly_what_the_original_does(name, how, training):
    cell = name in CELLS
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # dropout with one layer warns, as torch does
        orig = (CELLS if cell else STACKS)[name]()
    orig.train(training)
    twin = COPIES[how](orig)
    _assert_same_module(orig, twin)
    if not cell:
        assert twin._spec == orig._spec
        assert twin._flat_weights_names == orig._flat_weights_names
    x = _input(orig, cell)
    _assert_identical(_run(orig, x, 7), _run(twin, x, 7))


def test_a_copy_is_independent_of_the_original():
    orig = rustrnn.GRU(3, 4)
    twin = copy.deepcopy(orig)
    with torch.no_grad():
        twin.weight_hh_l0.add_(1.0)
    x = torch.randn(2, 1, 3)
    assert not torch.equal(orig(x)[0], twin(x)[0])


def test_spec_reduces_to_its_constructor_arguments():
    args = ("LSTM", 3, 5, 2, False, True, 0.25, True, 2)
    spec = _rustrnn.RnnSpec(*args)
    assert spec.__reduce__() == (_rustrnn.RnnSpec, args)
    assert _pickle(spec) == spec
    assert copy.deepcopy(spec) == spec
    assert spec != _rustrnn.RnnSpec("GRU", 3, 5)


@pytest.mark.parametrize("how", list(COPIES))
def test_dropout_module_copies(how):
    orig = rustrnn.nn.Dropout(0.3)
    twin = COPIES[how](orig)
    assert type(twin) is type(orig) and twin.p == 0.3
    x = torch.randn(50)
    torch.manual_seed(3)
    want = orig(x)
    torch.manual_seed(3)
    assert torch.equal(twin(x), want)


@pytest.mark.parametrize("how", list(COPIES))
@pytest.mark.parametrize("level", ["char", "word"])
def test_vocab_copies(how, level):
    vocab = rustrnn.Vocab.build(TEXT, level=level, lower=True, specials=["<pad>", "<unk>"])
    twin = COPIES[how](vocab)
    assert type(twin) is rustrnn.Vocab
    assert twin == vocab
    assert twin.to_json() == vocab.to_json()
    assert twin.tokens() == vocab.tokens() and twin.lower and twin.specials == vocab.specials
    assert torch.equal(twin.encode(TEXT), vocab.encode(TEXT))


def _globals_in(payload: bytes):
    """The (module, name) pairs a protocol-2 pickle refers to."""
    return [
        tuple(arg.split(" ", 1))
        for op, arg, _ in pickletools.genops(payload)
        if op.name == "GLOBAL"
    ]


def test_vocab_pickles_as_its_json_document():
    vocab = rustrnn.Vocab.build(TEXT, level="word")
    assert vocab.__reduce__() == (rustrnn.Vocab.from_json, (vocab.to_json(),))
    payload = pickle.dumps(vocab, protocol=2)
    assert vocab.to_json().encode() in payload  # the readable, versioned document
    ours = {name for module, name in _globals_in(payload) if module.startswith("rustrnn")}
    assert ours == {"Vocab"}  # reached as getattr(Vocab, "from_json")


def test_nothing_of_rustrnn_is_pickled_opaquely():
    model = tiny_lm("lstm", dtype=torch.float32)
    refs = _globals_in(pickle.dumps(model, protocol=2))
    compiled = {name for module, name in refs if module == "rustrnn._rustrnn"}
    assert compiled == {"RnnSpec", "Vocab"}


def _reference_error(fn):
    with pytest.raises(Exception) as info:
        fn()
    return info.value


@pytest.mark.parametrize(
    "edit",
    [
        lambda doc: doc.replace('"version": 1', '"version": 99'),
        lambda doc: doc.replace('"rustrnn.vocab"', '"other"'),
        lambda doc: doc[: len(doc) // 2],
    ],
    ids=["version", "format", "truncated"],
)
def test_a_tampered_vocab_pickle_is_validated_like_load(edit, tmp_path):
    vocab = rustrnn.Vocab.build(TEXT)
    doc = vocab.to_json()
    bad = edit(doc)
    assert bad != doc
    # What pickle.dumps(vocab) holds (see __reduce__ above), with the document edited.
    payload = pickle.dumps(_Reduced(rustrnn.Vocab.from_json, (bad,)))
    want = _reference_error(lambda: rustrnn.Vocab.from_json(bad))
    got = _reference_error(lambda: pickle.loads(payload))
    assert type(got) is type(want) is ValueError
    assert str(got) == str(want)
    path = tmp_path / "vocab.json"
    path.write_text(bad)
    on_load = _reference_error(lambda: rustrnn.Vocab.load(path))
    assert type(on_load) is ValueError and str(want) in str(on_load)


class _Reduced:
    """Pickles as the given ``(callable, args)``."""

    def __init__(self, fn, args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def test_state_dict_still_loads_with_weights_only():
    for module in (rustrnn.LSTM(3, 5, 2, proj_size=2, bidirectional=True), rustrnn.GRUCell(3, 4)):
        buf = io.BytesIO()
        torch.save(module.state_dict(), buf)
        buf.seek(0)
        state = torch.load(buf, weights_only=True)
        fresh = (
            type(module)(3, 5, 2, proj_size=2, bidirectional=True)
            if isinstance(module, rustrnn.LSTM)
            else rustrnn.GRUCell(3, 4)
        )
        fresh.load_state_dict(state, strict=True)
        for k, v in module.state_dict().items():
            assert torch.equal(fresh.state_dict()[k], v)


def test_a_whole_module_needs_weights_only_false():
    # Loading pickled module objects is what weights_only=True refuses, as for torch.nn.
    for module in (rustrnn.LSTM(3, 5), torch.nn.LSTM(3, 5)):
        buf = io.BytesIO()
        torch.save(module, buf)
        buf.seek(0)
        with pytest.raises(pickle.UnpicklingError):
            torch.load(buf, weights_only=True)


def _lm_outputs(model):
    """What a language model computes: log-probabilities, seeded samples (global and
    user generator), greedy text, and a forward/backward."""
    total, per_token = model.log_prob(TEXT[:40])
    torch.manual_seed(11)
    sampled = model.generate("the ", 30, temperature=0.9, num_samples=3, return_ids=True)
    drawn = model.generate(
        "the ", 30, top_k=5, generator=torch.Generator().manual_seed(5), return_ids=True
    )
    greedy = model.generate("the ", 20, greedy=True)
    return dict(
        total=total,
        per_token=per_token,
        sampled=sampled[0],
        sampled_ids=sampled[1],
        drawn=drawn[0],
        greedy=greedy,
    )


def _assert_same_lm_outputs(a, b):
    assert torch.equal(a["total"], b["total"])
    assert torch.equal(a["per_token"], b["per_token"])
    assert a["sampled"] == b["sampled"] and a["drawn"] == b["drawn"]
    assert a["greedy"] == b["greedy"]
    for u, v in zip(a["sampled_ids"], b["sampled_ids"]):
        assert torch.equal(u, v)


@pytest.mark.parametrize("how", list(COPIES))
@pytest.mark.parametrize(
    "cell,tie", [("lstm", False), ("lstm", True), ("gru", False), ("rnn_relu", True)]
)
def test_language_model_copies_score_and_generate_identically(cell, tie, how):
    model = tiny_lm(cell, tie=tie, dropout=0.2, dtype=torch.float32)
    twin = COPIES[how](model)
    _assert_same_module(model, twin)
    assert twin.config == model.config and twin.vocab == model.vocab
    assert (twin.head.weight is twin.embedding.weight) == tie
    _assert_same_lm_outputs(_lm_outputs(model), _lm_outputs(twin))
    ids = model.vocab.encode(TEXT[:30]).view(-1, 2)
    _assert_identical(_lm_forward_backward(model, ids), _lm_forward_backward(twin, ids))


def _lm_forward_backward(model, ids):
    model.train()
    model.zero_grad(set_to_none=True)
    torch.manual_seed(2)  # the same dropout masks on both sides
    logits, state = model(ids)
    outs = [logits, *_flat(state)]
    loss = sum(
        (o * torch.sin(torch.arange(o.numel(), dtype=o.dtype)).view_as(o)).sum() for o in outs
    )
    loss.backward()
    return [o.detach() for o in outs] + [p.grad for p in model.parameters()]


def _score_in_worker(model):
    """Runs in a spawned process: the model arrived pickled."""
    return _lm_outputs(model)


def test_language_model_crosses_a_process_boundary():
    model = tiny_lm("gru", dtype=torch.float32)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        theirs = pool.apply(_score_in_worker, (model,))
    _assert_same_lm_outputs(_lm_outputs(model), theirs)
