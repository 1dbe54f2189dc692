"""Every mistake torch.nn rejects is rejected here too, with torch's exception class
and a message naming the expected and actual values."""

import warnings

import pytest
import rustrnn
import torch

PAIRS = {
    "lstm": (rustrnn.LSTM, torch.nn.LSTM),
    "gru": (rustrnn.GRU, torch.nn.GRU),
    "rnn": (rustrnn.RNN, torch.nn.RNN),
}


def raised(fn):
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - the class is what we compare
        return e
    return None


def assert_same_error(ours_fn, ref_fn, *fragments):
    ref = raised(ref_fn)
    ours = raised(ours_fn)
    assert ref is not None, "torch accepted the input; the case is wrong"
    assert ours is not None, f"rustrnn accepted what torch rejects ({type(ref).__name__}: {ref})"
    assert isinstance(ours, type(ref)), (
        f"rustrnn raised {type(ours).__name__}: {ours}; torch {ref!r}"
    )
    for frag in fragments:
        assert frag in str(ours), f"{frag!r} not in {str(ours)!r}"


def state(kind, h_shape, c_shape=None, dtype=torch.float32):
    h = torch.zeros(h_shape, dtype=dtype)
    if kind == "lstm":
        return (h, torch.zeros(c_shape or h_shape))
    return h


def pair(kind, *args, **kwargs):
    ours_cls, ref_cls = PAIRS[kind]
    ours = ours_cls(*args, **kwargs)
    ref = ref_cls(*args, **kwargs)
    ref.load_state_dict(ours.state_dict())
    return ours, ref


FORWARD_CASES = {
    "rank1": (lambda: torch.randn(4), None, ("1D",)),
    "rank4": (lambda: torch.randn(2, 2, 2, 4), None, ("4D",)),
    "width": (lambda: torch.randn(5, 3, 7), None, ("Expected 4", "got 7")),
    "dtype": (lambda: torch.randn(5, 3, 4, dtype=torch.float64), None, ("float32", "float64")),
    "int_dtype": (lambda: torch.zeros(5, 3, 4, dtype=torch.long), None, ("int64",)),
    "zero_length": (lambda: torch.randn(0, 3, 4), None, ("0",)),
    "hx_rank": (lambda: torch.randn(5, 3, 4), lambda k: state(k, (1, 6)), ("3-D", "2-D")),
    "hx_rank_unbatched": (lambda: torch.randn(5, 4), lambda k: state(k, (1, 3, 6)), ("2-D", "3-D")),
    "hx_batch": (
        lambda: torch.randn(5, 3, 4),
        lambda k: state(k, (1, 2, 6)),
        ("(1, 3, 6)", "[1, 2, 6]"),
    ),
    "hx_broadcast": (
        lambda: torch.randn(5, 3, 4),
        lambda k: state(k, (1, 1, 6)),
        ("(1, 3, 6)", "[1, 1, 6]"),
    ),
    "hx_layers": (
        lambda: torch.randn(5, 3, 4),
        lambda k: state(k, (2, 3, 6)),
        ("(1, 3, 6)", "[2, 3, 6]"),
    ),
    "hx_width": (
        lambda: torch.randn(5, 3, 4),
        lambda k: state(k, (1, 3, 5)),
        ("(1, 3, 6)", "[1, 3, 5]"),
    ),
}


@pytest.mark.parametrize("kind", list(PAIRS))
@pytest.mark.parametrize("case", list(FORWARD_CASES))
def test_forward_errors_match_torch(kind, case):
    make_x, make_hx, fragments = FORWARD_CASES[case]
    ours, ref = pair(kind, 4, 6)
    x = make_x()
    hx = make_hx(kind) if make_hx else None
    assert_same_error(lambda: ours(x, hx), lambda: ref(x, hx), *fragments)


@pytest.mark.parametrize(
    "h_shape,c_shape,fragments",
    [
        ((1, 3, 6), (1, 3, 5), ("hidden[1]", "(1, 3, 6)", "[1, 3, 5]")),
        ((1, 3, 5), (1, 3, 6), ("hidden[0]", "(1, 3, 6)", "[1, 3, 5]")),
        ((1, 2, 6), (1, 3, 6), ("hidden[0]", "[1, 2, 6]")),
        ((1, 3, 6), (1, 2, 6), ("hidden[1]", "[1, 2, 6]")),
    ],
)
def test_lstm_good_h_bad_c_and_reverse(h_shape, c_shape, fragments):
    ours, ref = pair("lstm", 4, 6)
    x = torch.randn(5, 3, 4)
    hx = (torch.zeros(h_shape), torch.zeros(c_shape))
    assert_same_error(lambda: ours(x, hx), lambda: ref(x, hx), *fragments)


def test_lstm_projection_state_shapes():
    ours, ref = pair("lstm", 4, 6, proj_size=2)
    x = torch.randn(5, 3, 4)
    bad = (torch.zeros(1, 3, 6), torch.zeros(1, 3, 6))  # h must be proj_size wide
    assert_same_error(lambda: ours(x, bad), lambda: ref(x, bad), "(1, 3, 2)", "[1, 3, 6]")


def test_hidden_dtype_mismatch_is_rejected():
    ours, ref = pair("gru", 4, 6)
    x = torch.randn(5, 3, 4)
    hx = torch.zeros(1, 3, 6, dtype=torch.float64)
    assert_same_error(lambda: ours(x, hx), lambda: ref(x, hx), "float32", "float64")


def test_device_mismatch_is_rejected():
    # "meta" stands in for a second device on a CPU-only machine.
    ours, ref = pair("lstm", 4, 6)
    x = torch.randn(5, 3, 4, device="meta")
    assert_same_error(lambda: ours(x), lambda: ref(x), "not at the same device")


CTOR_CASES = {
    "hidden_zero": ((4, 0), {}, "hidden_size"),
    "hidden_negative": ((4, -3), {}, "hidden_size"),
    "layers_zero": ((4, 6), {"num_layers": 0}, "num_layers"),
    "dropout_negative": ((4, 6), {"dropout": -0.1}, "dropout"),
    "dropout_big": ((4, 6), {"dropout": 1.5}, "dropout"),
}


@pytest.mark.parametrize("kind", list(PAIRS))
@pytest.mark.parametrize("case", list(CTOR_CASES))
def test_constructor_errors_match_torch(kind, case):
    args, kwargs, fragment = CTOR_CASES[case]
    ours_cls, ref_cls = PAIRS[kind]
    assert_same_error(lambda: ours_cls(*args, **kwargs), lambda: ref_cls(*args, **kwargs), fragment)


def test_nonlinearity_and_projection_arguments():
    assert_same_error(
        lambda: rustrnn.RNN(4, 6, nonlinearity="sigmoid"),
        lambda: torch.nn.RNN(4, 6, nonlinearity="sigmoid"),
        "sigmoid",
    )
    assert_same_error(
        lambda: rustrnn.LSTM(4, 6, proj_size=6),
        lambda: torch.nn.LSTM(4, 6, proj_size=6),
        "smaller than hidden_size",
    )
    assert_same_error(
        lambda: rustrnn.GRU(4, 6, proj_size=2), lambda: torch.nn.GRU(4, 6, proj_size=2), "LSTM"
    )
    with pytest.raises(ValueError, match="proj_size"):
        rustrnn.nn.RNNBase("RNN_TANH", 4, 6, proj_size=2)
    with pytest.raises(TypeError, match="hidden_size"):
        rustrnn.LSTM(4, 6.0)


CELL_PAIRS = {
    "lstm": (rustrnn.LSTMCell, torch.nn.LSTMCell),
    "gru": (rustrnn.GRUCell, torch.nn.GRUCell),
    "rnn": (rustrnn.RNNCell, torch.nn.RNNCell),
}


def cell_state(kind, shape):
    h = torch.zeros(shape)
    return (h, torch.zeros(shape)) if kind == "lstm" else h


CELL_CASES = {
    "rank3": (lambda: torch.randn(2, 3, 4), None),
    "width": (lambda: torch.randn(3, 5), None),
    "hx_rank": (lambda: torch.randn(3, 4), (1, 3, 6)),
    "hx_batch": (lambda: torch.randn(3, 4), (2, 6)),
    "hx_width": (lambda: torch.randn(3, 4), (3, 5)),
}


@pytest.mark.parametrize("kind", list(CELL_PAIRS))
@pytest.mark.parametrize("case", list(CELL_CASES))
def test_cell_errors_match_torch(kind, case):
    ours_cls, ref_cls = CELL_PAIRS[kind]
    ours, ref = ours_cls(4, 6), ref_cls(4, 6)
    make_x, h_shape = CELL_CASES[case]
    x = make_x()
    hx = cell_state(kind, h_shape) if h_shape else None
    assert_same_error(lambda: ours(x, hx), lambda: ref(x, hx))


def test_non_tensor_input_is_a_type_error():
    with pytest.raises(TypeError, match="Tensor"):
        rustrnn.LSTM(4, 6)([[1.0, 2.0]])


def test_tensor_of_wrong_shape_loaded_into_a_parameter_is_caught():
    m = rustrnn.GRU(4, 6)
    with torch.no_grad():
        m.weight_hh_l0 = torch.nn.Parameter(torch.zeros(5, 6))
    with pytest.raises(RuntimeError, match=r"weight_hh_l0 must have shape \[18, 6\], got \[5, 6\]"):
        m(torch.randn(2, 1, 4))


# ------------------------------------------------- constructor arguments, exactly as torch


def assert_identical_error(ours_fn, ref_fn):
    """The same exception class and the same message (str) as torch's, for the same call."""
    ref = raised(ref_fn)
    ours = raised(ours_fn)
    assert ref is not None, "torch accepted the call; the case is wrong"
    assert ours is not None, f"rustrnn accepted what torch rejects ({type(ref).__name__}: {ref})"
    assert type(ours) is type(ref), f"rustrnn raised {ours!r}; torch {ref!r}"
    assert str(ours) == str(ref)


def quietly(fn):
    def run():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # dropout with one layer
            return fn()

    return run


NAN = float("nan")
SIZE_VALUES = [2.5, 3.0, "3", None, 0, -1, 0.0, -2.0]
STACK_BAD_ARGUMENTS = {
    "input_size": SIZE_VALUES,
    "hidden_size": SIZE_VALUES,
    "num_layers": [1.5, 2.0, "2", None, 0, -1, 0.0, -1.0, -0.5],
    "bias": [1, 0, "yes", None, 1.0, torch.tensor(True)],
    "batch_first": [1, 0, "no", None, 0.0],
    "dropout": [-0.1, 1.5, "0.1", None, True, False, NAN, torch.tensor(0.1), 1j, [0.1]],
}
LSTM_BAD_PROJ_SIZES = [-1, 6, 7, 2.5, 6.5, -1.0, -0.5, "2", None]
STACK_KINDS = {"lstm": "LSTM", "gru": "GRU", "rnn_tanh": "RNN", "rnn_relu": "RNN"}


def stack_calls(kind, overrides):
    ours_cls, ref_cls = PAIRS[STACK_KINDS[kind].lower()]
    kwargs = dict(input_size=4, hidden_size=6, num_layers=2)
    if kind.startswith("rnn"):
        kwargs["nonlinearity"] = kind[4:]
    kwargs.update(overrides)
    return quietly(lambda: ours_cls(**kwargs)), quietly(lambda: ref_cls(**kwargs))


def stack_argument_cases():
    for kind in STACK_KINDS:
        for arg, values in STACK_BAD_ARGUMENTS.items():
            for i, value in enumerate(values):
                yield pytest.param(kind, {arg: value}, id=f"{kind}-{arg}-{i}")
        proj_sizes = LSTM_BAD_PROJ_SIZES if kind == "lstm" else [0, 2, 2.5, None]
        for i, value in enumerate(proj_sizes):
            yield pytest.param(kind, {"proj_size": value}, id=f"{kind}-proj_size-{i}")
        unexpected = {"nonlinearity": "tanh"} if kind in ("lstm", "gru") else {"cell": "x"}
        yield pytest.param(kind, unexpected, id=f"{kind}-unexpected")
    for i, value in enumerate(["sigmoid", None, "TANH"]):
        yield pytest.param("rnn_tanh", {"nonlinearity": value}, id=f"rnn-nonlinearity-{i}")


@pytest.mark.parametrize("kind,overrides", list(stack_argument_cases()))
def test_stack_constructor_errors_are_torchs(kind, overrides):
    ours, ref = stack_calls(kind, overrides)
    assert_identical_error(ours, ref)


@pytest.mark.parametrize(
    "overrides,torch_runs_it",
    [
        ({"bidirectional": 1}, False),
        ({"bidirectional": "yes"}, False),
        ({"bidirectional": None}, False),
        ({"bidirectional": 0.0}, False),
        ({"num_layers": True}, False),
        ({"dropout": 1}, True),
        ({"dropout": 0}, True),
        ({"input_size": True}, True),
        ({"proj_size": 0.0}, True),
    ],
    ids=lambda o: "-".join(f"{k}={v!r}" for k, v in o.items()) if isinstance(o, dict) else "",
)
def test_stack_arguments_torch_accepts_are_accepted(overrides, torch_runs_it):
    """What torch's constructor takes (any truth value for bidirectional, an int dropout,
    a bool as a size), rustrnn's takes, building the same parameters. (torch's forward
    then refuses a non-bool bidirectional or num_layers; rustrnn's reads them as bool and
    int.)"""
    ours_fn, ref_fn = stack_calls("lstm", overrides)
    ours, ref = ours_fn(), ref_fn()
    assert ours._flat_weights_names == ref._flat_weights_names
    assert [p.shape for p in ours.parameters()] == [p.shape for p in ref.parameters()]
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(3, 2, ours.input_size)
    if torch_runs_it:
        torch.testing.assert_close(ours(x)[0], ref(x)[0])


CELL_KINDS = {
    "rnn_tanh": (rustrnn.RNNCell, torch.nn.RNNCell, {}),
    "rnn_relu": (rustrnn.RNNCell, torch.nn.RNNCell, {"nonlinearity": "relu"}),
    "lstm": (rustrnn.LSTMCell, torch.nn.LSTMCell, {}),
    "gru": (rustrnn.GRUCell, torch.nn.GRUCell, {}),
}
CELL_BAD_SIZES = [2.5, 3.0, "3", None, -1, -3, 0.0]


def cell_calls(kind, overrides):
    ours_cls, ref_cls, options = CELL_KINDS[kind]
    kwargs = dict(input_size=4, hidden_size=6, **options)
    kwargs.update(overrides)
    return (lambda: ours_cls(**kwargs)), (lambda: ref_cls(**kwargs))


def cell_argument_cases():
    for kind in CELL_KINDS:
        for arg in ("input_size", "hidden_size"):
            for i, value in enumerate(CELL_BAD_SIZES):
                yield pytest.param(kind, {arg: value}, id=f"{kind}-{arg}-{i}")
        yield pytest.param(kind, {"num_layers": 2}, id=f"{kind}-unexpected")


@pytest.mark.parametrize("kind,overrides", list(cell_argument_cases()))
def test_cell_constructor_errors_are_torchs(kind, overrides):
    ours, ref = cell_calls(kind, overrides)
    assert_identical_error(ours, ref)


@pytest.mark.parametrize("kind", list(CELL_KINDS))
@pytest.mark.parametrize(
    "overrides",
    [{"bias": 1}, {"bias": 0}, {"bias": None}, {"input_size": 0}, {"hidden_size": 0}],
    ids=lambda o: "-".join(f"{k}={v!r}" for k, v in o.items()),
)
def test_cell_arguments_torch_accepts_are_accepted(kind, overrides):
    """torch's cells check nothing: a truth value for bias and a zero size are taken."""
    ours_fn, ref_fn = cell_calls(kind, overrides)
    ours, ref = ours_fn(), ref_fn()
    assert repr(ours) == repr(ref)
    assert [(n, p.shape) for n, p in ours.named_parameters()] == [
        (n, p.shape) for n, p in ref.named_parameters()
    ]
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(3, ours.input_size)
    got, want = ours(x), ref(x)
    for a, b in zip(got if kind == "lstm" else [got], want if kind == "lstm" else [want]):
        torch.testing.assert_close(a, b)


def test_unknown_cell_nonlinearity_fails_at_forward_like_torch():
    ours = rustrnn.RNNCell(4, 6, nonlinearity="sigmoid")
    ref = torch.nn.RNNCell(4, 6, nonlinearity="sigmoid")
    x = torch.randn(3, 4)
    assert_identical_error(lambda: ours(x), lambda: ref(x))


DTYPE_MISMATCHES = [
    (torch.float32, torch.float64),
    (torch.float64, torch.float32),
    (torch.float32, torch.float16),
    (torch.float32, torch.int64),
    (torch.float64, torch.int32),
]


@pytest.mark.parametrize("kind", list(STACK_KINDS))
@pytest.mark.parametrize(
    "weights,input", DTYPE_MISMATCHES, ids=lambda d: str(d).replace("torch.", "")
)
def test_input_dtype_mismatch_is_torchs_error(kind, weights, input):
    ours_cls, ref_cls = PAIRS[STACK_KINDS[kind].lower()]
    options = {"nonlinearity": kind[4:]} if kind.startswith("rnn") else {}
    ours = ours_cls(4, 6, dtype=weights, **options)
    ref = ref_cls(4, 6, dtype=weights, **options)
    x = torch.zeros(5, 3, 4, dtype=input)
    assert_identical_error(lambda: ours(x), lambda: ref(x))
