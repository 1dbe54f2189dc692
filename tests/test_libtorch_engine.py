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
def test_dropout_between_layers_draws_the_other_engines_masks(kind, bidirectional):
    """Training-mode dropout: the libtorch engine applies rustrnn's masks, drawn from
    torch's generator as on the other engines, so one seed gives one result on either
    (torch.compile's recomputing backward relies on this). Gradients too."""
    ours, _ = make_pair(kind, 4, 6, num_layers=3, dropout=0.5, bidirectional=bidirectional)
    ours.train()
    x = torch.randn(7, 3, 4, dtype=torch.float64, requires_grad=True)
    results = []
    for engine in ("auto", "libtorch"):
        with backends.rnn_engine(engine):
            torch.manual_seed(123)
            x.grad = None
            ours.zero_grad()
            out, _ = ours(x)
            (
                out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)
            ).sum().backward()
            results.append(
                (out.detach(), x.grad.clone(), [p.grad.clone() for p in ours.parameters()])
            )
    (a, da, ga), (b, db, gb) = results
    ours.eval()
    with torch.no_grad():
        plain, _ = ours(x)
    assert not torch.allclose(a, plain)  # the masks were applied, not skipped
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(da, db, rtol=1e-10, atol=1e-10)
    for p, q in zip(ga, gb):
        torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-10)


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
            model = tiny_lm(cell="lstm", layers=2, dropout=0.3)
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
