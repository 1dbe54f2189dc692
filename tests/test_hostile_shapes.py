"""Sizes, shapes, dtypes and devices that used to crash, abort or lie: each now gives what
torch.nn gives (its outputs, or its exception class and, where it has one, its message).

Whatever could crash the interpreter (a panic, an abort, a segfault, memory running out)
runs in a subprocess with a timeout, so that a crash fails the test instead of pytest.
"""

import json
import subprocess
import sys
import textwrap

import pytest
import rustrnn
import torch
import torch.nn.functional as F
from torch import nn

KINDS = {
    "rnn": (rustrnn.RNN, nn.RNN),
    "lstm": (rustrnn.LSTM, nn.LSTM),
    "gru": (rustrnn.GRU, nn.GRU),
}


def probe(code, timeout=120):
    """Runs ``code`` in a fresh interpreter (torch and rustrnn imported) and returns what
    it printed; fails the test on a crash, a non-zero exit or a hang."""
    program = "import torch, rustrnn\n" + textwrap.dedent(code)
    try:
        r = subprocess.run(
            [sys.executable, "-c", program], capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"the probe hung for {timeout} s")
    assert r.returncode == 0, f"the probe died (exit {r.returncode}):\n{r.stderr[-3000:]}"
    return r.stdout


def outcome(fn):
    """``("ok", None)`` or the exception's class name and message."""
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - the class is what is compared
        return type(e).__name__, str(e)
    return "ok", None


# ---------------------------------------------------------------------------- sizes


@pytest.mark.parametrize("args", [(4, 2**62), (4, 2**61), (2**62, 1), (2**61, 2), (2**40, 2**30)])
@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_sizes_whose_products_overflow_raise_torchs_class(args, device):
    """4 * 2**62 wrapped to 0 and built a module with empty weights; torch raises a
    TypeError (a size past int64) or a RuntimeError (a storage size past int64)."""
    want, _ = outcome(lambda: nn.LSTM(*args, device=device))
    got, message = outcome(lambda: rustrnn.LSTM(*args, device=device))
    assert want != "ok"
    assert got == want, message
    with pytest.raises(TypeError if args[1] >= 2**61 else RuntimeError):
        rustrnn._rustrnn.RnnSpec("LSTM", *args)


def test_a_billion_layers_raise_instead_of_aborting():
    """The parameter list was built for every layer first (a Rust allocation failure,
    which aborts); torch.nn loops creating parameters until the memory runs out."""
    out = probe(
        """
        try:
            rustrnn.LSTM(4, 4, 10**9)
        except RuntimeError as e:
            print("RuntimeError", e)
        """,
        timeout=60,
    )
    assert out.startswith("RuntimeError") and "4000000000 parameter tensors" in out


def test_parameters_larger_than_memory_raise_before_allocating():
    """3.2 TB of float32 parameters in 100,000 tensors that each fit: refused up front
    with a RuntimeError, as torch's allocator refuses one tensor it cannot hold, instead
    of the process being killed while they are initialized."""
    out = probe(
        """
        try:
            rustrnn.GRU(1024, 1024, 100_000)
        except RuntimeError as e:
            print("RuntimeError", e)
        """,
        timeout=60,
    )
    assert out.startswith("RuntimeError") and "memory" in out


def test_a_checkpoint_with_wrapping_sizes_does_not_load(tmp_path):
    """hidden_size = 2**62 with an empty vocabulary made every tensor of the model empty
    (its shapes wrapped to 0), so a crafted file of empty tensors loaded."""
    from safetensors.torch import save_file

    vocab = rustrnn.Vocab.build("ab")
    model = rustrnn.LanguageModel(vocab, embed_size=4, hidden_size=4, num_layers=1, dropout=0.0)
    path = tmp_path / "m.safetensors"
    model.save(path)
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = dict(f.metadata())
    config = json.loads(meta["config"])
    config["hidden_size"] = 2**62
    meta["config"] = json.dumps(config)
    doc = json.loads(meta["vocab"])
    doc["specials"], doc["tokens"] = [], []
    meta["vocab"] = json.dumps(doc)
    h = 2**62
    tensors = {
        "embedding.weight": torch.empty(0, 4),
        "head.bias": torch.empty(0),
        "head.weight": torch.empty(0, h),
        "rnn.bias_hh_l0": torch.empty(0),
        "rnn.bias_ih_l0": torch.empty(0),
        "rnn.weight_hh_l0": torch.empty(0, h),
        "rnn.weight_ih_l0": torch.empty(0, 4),
    }
    crafted = tmp_path / "crafted.safetensors"
    save_file(tensors, str(crafted), metadata=meta)
    with pytest.raises((TypeError, ValueError, RuntimeError)):
        rustrnn.LanguageModel.load(crafted)


# ---------------------------------------------------------------------- the tape


def test_tape_backward_checks_every_gradient_it_is_given():
    """``Tape.backward`` read out of bounds (SIGSEGV) for a ``(1, 1, H)`` gradient of a
    ``(T, B, H)`` output and returned garbage for smaller mismatches: every gradient is
    now checked against what the forward returned (shape, dtype, device)."""
    out = probe(
        """
        torch.manual_seed(0)
        T, B, I, H = 5, 3, 4, 8
        configs = [
            ("LSTM", torch.float32, T),    # oneDNN's LSTM
            ("LSTM", torch.float32, 1),    # the fused kernels
            ("LSTM", torch.float64, T),    # composed
            ("GRU", torch.float32, T),     # fused
            ("RNN_TANH", torch.float64, T),
        ]
        for mode, dtype, steps in configs:
            spec = rustrnn._rustrnn.RnnSpec(mode, I, H)
            lstm = mode == "LSTM"
            weights = [torch.randn(s, dtype=dtype) for _, s in spec.param_specs()]
            x = torch.randn(steps, B, I, dtype=dtype)
            out, h_n, c_n, tape = spec.forward(x, None, None, weights, False, True)
            ok = lambda t: torch.ones_like(t)
            good = (ok(out), ok(h_n), ok(c_n) if lstm else None)
            cases = {
                "d_output (1, 1, H)": (torch.ones(1, 1, H, dtype=dtype), *good[1:]),
                "d_output short by one": (torch.ones(steps, B, H - 1, dtype=dtype), *good[1:]),
                "d_output of another dtype": (good[0].float() if dtype == torch.float64
                                              else good[0].double(), *good[1:]),
                "d_hn (1, 1, H)": (good[0], torch.ones(1, 1, H, dtype=dtype), good[2]),
                "d_hn short": (good[0], torch.ones(1, B - 1, H, dtype=dtype), good[2]),
                "d_hn of another dtype": (good[0], good[1].to(torch.float16), good[2]),
                "d_cn where there is none" if not lstm else "d_cn (1, 1, H)": (
                    *good[:2], torch.ones(1, 1, H, dtype=dtype)),
            }
            if lstm:
                cases["no d_cn"] = (*good[:2], None)
            for name, (d_out, d_hn, d_cn) in cases.items():
                try:
                    tape.backward(d_out, d_hn, d_cn, True)
                    print(mode, steps, name, "accepted")
                except RuntimeError as e:
                    print(mode, steps, name, "RuntimeError", e)
            d_input, d_hx, d_cx, d_w = tape.backward(*good, True)
            assert d_input.shape == x.shape and d_hx.shape == h_n.shape
            assert [g.shape for g in d_w] == [w.shape for w in weights]
        print("done")
        """
    )
    lines = out.strip().splitlines()
    assert lines[-1] == "done"
    assert not [line for line in lines if line.endswith("accepted")], out
    assert all("RuntimeError" in line for line in lines[:-1]), out
    assert "gradient of output must have shape [5, 3, 8], got [1, 1, 8]" in out
    assert "gradient of h_n must have shape [1, 3, 8], got [1, 1, 8]" in out


# ------------------------------------------------------------------------ dtypes


INTEGER_DTYPES = [torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool]


def test_dropout_on_integer_tensors_raises_torchs_error():
    """They panicked; torch raises a RuntimeError ("result type Float can't be cast to
    the desired output type Long"). p = 0, p = 1 and eval mode behave as torch's too."""
    want = {}
    for dtype in INTEGER_DTYPES:
        x = torch.ones(3, 4, dtype=dtype)
        want[str(dtype)] = [
            outcome(lambda x=x: F.dropout(x, 0.5)),
            outcome(lambda x=x: nn.Dropout(0.5)(x)),
        ]
    out = probe(
        """
        import json
        import torch.nn.functional as F
        res = {}
        for dtype in %s:
            x = torch.ones(3, 4, dtype=dtype)
            row = []
            for fn in (lambda: rustrnn.functional.dropout(x, 0.5),
                       lambda: rustrnn.nn.Dropout(0.5)(x)):
                try:
                    fn()
                    row.append(("ok", None))
                except Exception as e:
                    row.append((type(e).__name__, str(e)))
            for p, training in ((0.0, True), (1.0, True), (0.5, False)):
                got = rustrnn.functional.dropout(x, p, training)
                ref = F.dropout(x, p, training)
                assert got.dtype == ref.dtype and torch.equal(got, ref), (dtype, p, training)
            res[str(dtype)] = row
        print(json.dumps(res))
        """
        % ("[" + ", ".join(str(d) for d in INTEGER_DTYPES) + "]")
    )
    got = json.loads(out)
    assert got == {k: [list(o) for o in v] for k, v in want.items()}


UNSIGNED = ["torch.uint16", "torch.uint32", "torch.uint64"]


def test_vocab_takes_unsigned_ids_and_names_other_dtypes():
    """uint16/32/64 ids panicked (``UnknownKind(27)``): they are integers, so decode and
    one_hot take them like int64 ids; a float8 tensor is refused by torch's name."""
    out = probe(
        """
        v = rustrnn.Vocab.build("hello world")
        ids = torch.tensor([[2, 3], [4, 5]])
        for dtype in (%s):
            u = ids.to(dtype)
            assert v.decode(u) == v.decode(ids), dtype
            assert torch.equal(v.one_hot(u), v.one_hot(ids)), dtype
        for bad in (torch.float8_e4m3fn, torch.float32, torch.bool, torch.complex64):
            try:
                v.one_hot(ids.to(bad))
            except TypeError as e:
                print("TypeError", e)
        print("done")
        """
        % ", ".join(UNSIGNED)
    )
    assert out.strip().endswith("done")
    for name in ("torch.float8_e4m3fn", "torch.float32", "torch.bool", "torch.complex64"):
        assert f"ids must be an integer tensor, got dtype {name}" in out


@pytest.mark.parametrize("dtype", [torch.uint16, torch.uint32, torch.uint64])
def test_stack_inputs_of_newer_dtypes_are_named_as_torch_names_them(dtype):
    """ "unknown kind: 27" became torch's own ValueError, naming torch.uint16."""
    x = torch.ones(5, 3, 4, dtype=dtype)
    want = outcome(lambda: nn.LSTM(4, 8)(x))
    got = outcome(lambda: rustrnn.LSTM(4, 8)(x))
    assert want[0] == "ValueError" and got == want
    h = torch.ones(1, 3, 8, dtype=dtype)
    cls, message = outcome(lambda: rustrnn.GRU(4, 8)(torch.ones(5, 3, 4), h))
    assert cls == "RuntimeError" and str(dtype) in message


# ------------------------------------------------------------------------- cells


CELL_CASES = [
    (cls, name, shape)
    for cls in ("LSTMCell", "GRUCell", "RNNCell")
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    for shape in ((), (3,), (1, 1))
]

# Runs every case on torch's cells or on rustrnn's (made from the same torch cell):
# ``run(nn)`` here, ``run(rustrnn)`` in the probe.
CELL_RUN = """
def run(lib):
    results = []
    for cls, name, shape in CELL_CASES:
        torch.manual_seed(0)
        ref = getattr(torch.nn, cls)(4, 8)
        cell = ref if lib is torch.nn else getattr(lib, cls).from_torch(ref)
        setattr(cell, name, torch.nn.Parameter(torch.full(shape, 0.5)))
        x = torch.linspace(-1, 1, 8).view(2, 4)
        try:
            out = cell(x)
            out = out[0] if isinstance(out, tuple) else out
            results.append(["ok", out.sum().item()])
        except Exception as e:
            results.append([type(e).__name__, str(e)])
    return results
"""


def test_cells_with_scalar_or_vector_parameters_raise_like_torch():
    """0-d and 1-d parameters panicked (an index into their sizes); torch raises an
    IndexError for a size its cells read, a RuntimeError for a wrong first size, and
    broadcasts a 0-d bias."""
    scope = {"torch": torch, "CELL_CASES": CELL_CASES}
    exec(CELL_RUN, scope)
    want = scope["run"](nn)
    out = probe(
        f"import json\nCELL_CASES = {CELL_CASES!r}\n{CELL_RUN}\nprint(json.dumps(run(rustrnn)))"
    )
    got = json.loads(out)
    for case, w, g in zip(CELL_CASES, want, got):
        assert g[0] == w[0], (case, g, w)
        if w[0] == "ok":
            assert abs(g[1] - w[1]) < 1e-4, (case, g, w)
        elif w[0] == "IndexError":
            assert g[1] == w[1], (case, g, w)


# ------------------------------------------------------------------ empty batch


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "kwargs", [{}, {"bidirectional": True, "num_layers": 2}, {"batch_first": True}]
)
def test_a_batch_of_zero_sequences_is_empty_like_torch(kind, kwargs):
    ours_cls, ref_cls = KINDS[kind]
    ours = ours_cls(4, 8, **kwargs)
    ref = ref_cls(4, 8, **kwargs)
    ref.load_state_dict(ours.state_dict())
    shape = (0, 5, 4) if kwargs.get("batch_first") else (5, 0, 4)
    results = []
    for module in (ours, ref):
        x = torch.randn(shape, requires_grad=True)
        out, state = module(x)
        states = list(state) if isinstance(state, tuple) else [state]
        (out.sum() + sum(s.sum() for s in states)).backward()
        grads = [p.grad for p in module.parameters()]
        results.append((out, states, x.grad, grads))
    (out, states, dx, grads), (r_out, r_states, r_dx, r_grads) = results
    assert out.shape == r_out.shape
    assert [s.shape for s in states] == [s.shape for s in r_states]
    assert dx.shape == r_dx.shape
    for g, r in zip(grads, r_grads):
        torch.testing.assert_close(g, r)  # zeros: a sum over no tokens


@pytest.mark.parametrize("batch_sizes", [[], [0], [2, 0]])
def test_packed_input_cannot_have_zero_sequences(batch_sizes):
    gru = rustrnn.GRU(4, 8)
    x = torch.randn(sum(batch_sizes), 4)
    with pytest.raises(ValueError, match="batch_sizes"):
        gru._spec.forward(x, None, None, gru._flat_weights, False, False, batch_sizes)


# ------------------------------------------------------------------------- meta


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "kwargs",
    [{}, {"bidirectional": True, "num_layers": 2}, {"batch_first": True}, {"proj_size": 3}],
)
def test_meta_tensors_infer_shapes_like_torch(kind, kwargs):
    """On the meta device errors named MPS (tch calls every device it does not know
    MPS); now the stacks compute shapes there, forward and backward, as torch.nn does."""
    if "proj_size" in kwargs and kind != "lstm":
        pytest.skip("proj_size is an LSTM option")
    ours_cls, ref_cls = KINDS[kind]
    shapes = []
    for cls in (ours_cls, ref_cls):
        module = cls(4, 8, device="meta", **kwargs)
        for x in (torch.randn(5, 3, 4, device="meta"), torch.randn(5, 4, device="meta")):
            x.requires_grad_(True)
            out, state = module(x)
            states = list(state) if isinstance(state, tuple) else [state]
            out.sum().backward()
            assert out.device.type == "meta" and x.grad.device.type == "meta"
            shapes.append(
                (out.shape, [s.shape for s in states], x.grad.shape, module.weight_hh_l0.grad.shape)
            )
            x.grad = None
    assert shapes[:2] == shapes[2:]


@pytest.mark.parametrize("input_device", ["meta", "cpu"])
def test_errors_name_the_meta_device(input_device):
    """torch's message, naming meta (not MPS) on whichever side it is."""
    weights = "cpu" if input_device == "meta" else "meta"
    x = torch.randn(5, 3, 4, device=input_device)
    want = outcome(lambda: nn.LSTM(4, 8, device=weights)(x))
    got = outcome(lambda: rustrnn.LSTM(4, 8, device=weights)(x))
    assert want[0] == "RuntimeError" and got == want
