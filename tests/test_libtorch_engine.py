"""The libtorch engine — what every CUDA stack runs on (libtorch's recurrent ops, cuDNN
there) — chosen on the CPU with ``rustrnn.backends``, against torch.nn with the same
weights: outputs, final states and every gradient, padded and packed, for each mode,
bidirectional, with projections, batch_first and unbatched. This is the CUDA path's glue
(weight order, state layout, dropout between layers, gradient order) tested without a
GPU; tests/test_cuda.py runs the same comparisons on a GPU."""

import pytest
import rustrnn
import torch
from lm_helpers import TEXT, tiny_lm
from rnn_helpers import make_pair, make_state
from rustrnn import backends
from test_rnn_packed import CONFIGS as PACKED_CONFIGS
from test_rnn_packed import LENGTHS, packed_input
from test_rnn_packed import check as check_packed
from test_rnn_packed import config_id as packed_id
from test_rnn_packed import run_both as run_packed
from test_rnn_parity import CONFIGS, FLOAT32_CONFIGS, config_id, run_both


@pytest.fixture
def libtorch_engine():
    with backends.rnn_engine("libtorch"):
        yield
    assert backends.get_rnn_engine() == "auto"


def assert_same(ours, ref, tol):
    torch.testing.assert_close(ours["out"], ref["out"], rtol=tol, atol=tol)
    for key in ("finals", "grads", "dstate"):
        assert len(ours[key]) == len(ref[key])
        for a, b in zip(ours[key], ref[key]):
            torch.testing.assert_close(a, b, rtol=tol, atol=tol)
    torch.testing.assert_close(ours["dx"], ref["dx"], rtol=tol, atol=tol)


@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_padded_matches_torch_float64(libtorch_engine, config):
    ours, ref = run_both(config, torch.float64)
    assert ours["names"] == ref["names"]
    assert_same(ours, ref, 1e-10)


@pytest.mark.parametrize("config", FLOAT32_CONFIGS, ids=config_id)
def test_padded_matches_torch_float32(libtorch_engine, config):
    ours, ref = run_both(config, torch.float32)
    assert_same(ours, ref, 1e-5)


@pytest.mark.parametrize("config", PACKED_CONFIGS, ids=packed_id)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_packed_matches_torch(libtorch_engine, config, dtype):
    kind, bias, bidir, layers, with_hx, proj, enforce_sorted = config
    torch.manual_seed(0)
    kwargs = dict(num_layers=layers, bias=bias, bidirectional=bidir)
    if proj:
        kwargs["proj_size"] = proj
    ours, ref = make_pair(kind, 4, 6, dtype=dtype, **kwargs)
    packed = packed_input(dtype, enforce_sorted)
    state = make_state(kind, ours, len(LENGTHS), False, dtype) if with_hx else None
    ours_r, ref_r = run_packed(ours, ref, packed, state, dtype)
    check_packed(ours_r, ref_r, 1e-10 if dtype == torch.float64 else 1e-5)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_tanh", "rnn_relu"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_dropout_between_layers_is_torchs_own(libtorch_engine, kind, bidirectional, dtype):
    """Training-mode dropout on the libtorch engine is the op's own, as torch.nn's: from
    one seed, the same masks, so the same outputs and gradients as torch.nn."""
    ours, ref = make_pair(
        kind, 4, 6, dtype=dtype, num_layers=3, dropout=0.5, bidirectional=bidirectional
    )
    x = torch.randn(7, 3, 4, dtype=dtype, requires_grad=True)
    results = []
    for module in (ours, ref):
        module.train()
        torch.manual_seed(123)
        x.grad = None
        module.zero_grad()
        out, _ = module(x)
        weights = torch.linspace(-1, 1, out.numel(), dtype=dtype).view_as(out)
        (out * weights).sum().backward()
        grads = [p.grad.clone() for p in module.parameters()]
        results.append((out.detach(), x.grad.clone(), grads))
    ours.eval()
    with torch.no_grad():
        plain, _ = ours(x)
    assert not torch.allclose(results[0][0], plain)  # the masks were applied
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    (a, da, ga), (b, db, gb) = results
    torch.testing.assert_close(a, b, rtol=tol, atol=tol)
    torch.testing.assert_close(da, db, rtol=tol, atol=tol)
    for p, q in zip(ga, gb):
        torch.testing.assert_close(p, q, rtol=tol, atol=tol)


def test_a_seeded_forward_repeats_its_dropout(libtorch_engine):
    """What torch.compile's backward relies on: it recomputes the forward from a seed."""
    ours, _ = make_pair("gru", 4, 6, num_layers=2, dropout=0.5)
    ours.train()
    x = torch.randn(7, 3, 4, dtype=torch.float64)
    outs = []
    for _ in range(2):
        torch.manual_seed(9)
        outs.append(ours(x)[0])
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)


def test_a_second_backward_through_one_forward_adds_up_as_torchs(libtorch_engine):
    ours, ref = make_pair("lstm", 4, 6, num_layers=2, bidirectional=True)
    x = torch.randn(5, 2, 4, dtype=torch.float64)
    grads = []
    for module in (ours, ref):
        module.zero_grad()
        out, (h, c) = module(x)
        loss = out.sum() + h.pow(2).sum() + c.sum()
        loss.backward(retain_graph=True)
        loss.backward()
        grads.append([p.grad.clone() for p in module.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_inference_without_grad_equals_the_recorded_forward(libtorch_engine):
    ours, _ = make_pair("gru", 4, 6, num_layers=2)
    x = torch.randn(5, 3, 4, dtype=torch.float64)
    with torch.no_grad():
        plain, h_plain = ours(x)
    recorded, h_recorded = ours(x)
    assert recorded.requires_grad and not plain.requires_grad
    torch.testing.assert_close(plain, recorded.detach(), rtol=0, atol=0)
    torch.testing.assert_close(h_plain, h_recorded.detach(), rtol=0, atol=0)


def test_an_empty_batch_gives_torchs_empty_outputs(libtorch_engine):
    ours, ref = make_pair("lstm", 4, 6, num_layers=2)
    x = torch.randn(5, 0, 4, dtype=torch.float64, requires_grad=True)
    out, (h, c) = ours(x)
    r_out, (r_h, r_c) = ref(x)
    assert out.shape == r_out.shape and h.shape == r_h.shape and c.shape == r_c.shape
    out.sum().backward()
    assert x.grad.shape == x.shape


def test_the_language_model_trains_and_generates_alike_on_either_engine():
    """Training (the Rust loop's forward and backward through the tape), evaluation and
    the prompt's priming in generation run the stack: the same losses, the same
    perplexity and the same greedy text under both engines."""
    runs = []
    for engine in ("auto", "libtorch"):
        with backends.rnn_engine(engine):
            torch.manual_seed(0)
            model = tiny_lm(cell="lstm", layers=2)
            history = rustrnn.train(
                model, TEXT, batch_size=4, bptt=8, max_steps=6, seed=5, progress=False
            )
            ppl = rustrnn.evaluate(model, TEXT, batch_size=2, bptt=8)
            text = model.generate("the qu", 12, greedy=True)
            runs.append((history.losses, ppl, text))
    (la, pa, ta), (lb, pb, tb) = runs
    assert len(la) == 6
    torch.testing.assert_close(torch.tensor(la), torch.tensor(lb), rtol=1e-9, atol=1e-9)
    assert pa == pytest.approx(pb, rel=1e-9)
    assert ta == tb


def test_the_preference_is_set_restored_and_checked():
    assert backends.get_rnn_engine() == "auto"
    assert backends.set_rnn_engine("libtorch") == "auto"
    assert backends.set_rnn_engine("auto") == "libtorch"
    with pytest.raises(ValueError, match="'auto', 'libtorch', got .cudnn."):
        backends.set_rnn_engine("cudnn")
    with pytest.raises(RuntimeError, match="inside"):
        with backends.rnn_engine("libtorch"):
            assert backends.get_rnn_engine() == "libtorch"
            raise RuntimeError("inside")
    assert backends.get_rnn_engine() == "auto"
    with pytest.raises(ValueError):
        with backends.rnn_engine("mkldnn"):
            pytest.fail("the block must not run")
    assert backends.get_rnn_engine() == "auto"


def test_flatten_parameters_leaves_cpu_parameters_alone():
    ours, _ = make_pair("lstm", 4, 6, num_layers=2, bidirectional=True)
    before = [(p, p.data_ptr()) for p in ours.parameters()]
    assert ours.flatten_parameters() is None
    ours.to(torch.float32)  # _apply calls it, as torch.nn's
    assert all(p.device.type == "cpu" for p in ours.parameters())
    assert [p for p, _ in before] == list(ours.parameters())


def test_a_tape_kept_where_autograd_records_nothing_still_back_propagates():
    """Inside torch.inference_mode (as inside torch.compile's custom ops) libtorch's
    autograd records nothing, so the libtorch engine could keep no tape: the stack runs
    on rustrnn's engines there, and the tape's backward gives torch.nn's gradients. In a
    subprocess, so that a crash fails this test rather than ending the run."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        """
        import torch, rustrnn
        from rustrnn import backends
        torch.manual_seed(0)
        ours = rustrnn.LSTM(3, 4, num_layers=2, dropout=0.5).double()
        ref = torch.nn.LSTM(3, 4, num_layers=2).double()
        ref.load_state_dict(ours.state_dict())
        x = torch.randn(5, 2, 3, dtype=torch.float64)
        with backends.rnn_engine("libtorch"), torch.inference_mode():
            out, h, c, tape = ours._spec.forward(x, None, None, ours._flat_weights, False, True)
        g = torch.ones_like(out)
        dx, dh, dc, dw = tape.backward(g, torch.zeros_like(h), torch.zeros_like(c), True)
        xr = x.clone().requires_grad_(True)
        ref(xr)[0].backward(g)
        torch.testing.assert_close(dx, xr.grad)
        for a, p in zip(dw, ref.parameters()):
            torch.testing.assert_close(a, p.grad)
        print("ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"
