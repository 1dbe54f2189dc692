"""rustrnn on a CUDA GPU against torch.nn, and against rustrnn's own CPU results, on the
same machine: the stacks (cuDNN under both) in float32 and float64 with every gradient,
PackedSequence and flatten_parameters; generation; the sampler; training, its
checkpoints between the CPU and the GPU, the command line, and DDP over NCCL.

Every test here is marked ``cuda`` (``pytest -m cuda``; bench/gpu_check.sh runs them) and
skips without a GPU. The CPU-side glue of the cuDNN engine is tested on every run by
tests/test_libtorch_engine.py; the CLI's error without CUDA by tests/test_cli.py.
"""

import copy
import math
import re

import hostile_probe
import pytest
import rustrnn
import torch
from dist_helpers import run_ranks
from lm_helpers import TEXT, tiny_lm
from rnn_helpers import KINDS, flatten_state, make_pair, make_state
from rustrnn.lm import LanguageModel
from sampler_helpers import ERROR_CASES, chi2_pvalue, raised, reference_probs
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

CUDA = torch.device("cuda")
P_MIN = 1e-4  # significance level of every chi-square test
# (rtol, atol) between two computations of the same thing: cuDNN against cuDNN with
# different call patterns, or the GPU against the CPU kernels.
TOL = {torch.float32: (1e-4, 1e-5), torch.float64: (1e-9, 1e-10)}
DTYPES = pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
CELLS = ["lstm", "gru", "rnn_tanh", "rnn_relu"]


@pytest.fixture(autouse=True)
def _full_float32():
    """cuDNN runs float32 recurrences on TF32 tensor cores by default (Ampere and later),
    rounding products' inputs to 10-bit mantissas: two correct sides that pick different
    algorithms then part by ~1e-3. These comparisons are of the math, in full float32;
    test_stack_under_the_default_tf32_setting covers the default."""
    saved = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32 = saved


def close(a, b, dtype, what="", tol=None):
    rtol, atol = tol or TOL[dtype]
    torch.testing.assert_close(a, b, rtol=rtol, atol=atol, msg=lambda m: f"{what}: {m}")


# ---------------------------------------------------------------------------
# the stacks against torch.nn on the GPU

T, B, IN, H = 7, 5, 8, 16

STACKS = [  # name, constructor arguments, unbatched input, an initial state given
    ("one-layer", {}, False, False),
    ("bidir-2-layers", {"num_layers": 2, "bidirectional": True}, False, True),
    ("batch-first", {"num_layers": 2, "batch_first": True}, False, True),
    ("dropout-eval", {"num_layers": 2, "dropout": 0.5}, False, True),
    ("no-bias-bidir", {"bias": False, "bidirectional": True}, False, False),
    ("unbatched", {"num_layers": 2, "bidirectional": True}, True, True),
]
PROJECTED = [
    ("proj-bidir-2-layers", {"proj_size": 5, "num_layers": 2, "bidirectional": True}, False, True),
    ("proj-unbatched", {"proj_size": 5}, True, True),
]
CASES = [(kind, *s) for kind in KINDS for s in STACKS] + [("lstm", *s) for s in PROJECTED]


def gpu_leaf(t):
    """``t`` copied to the GPU as a leaf that collects its gradient."""
    return t.detach().to(CUDA).requires_grad_(True)


def gpu_state(kind, module, batch, unbatched, dtype):
    state = make_state(kind, module, batch, unbatched, dtype)
    return tuple(map(gpu_leaf, state)) if isinstance(state, tuple) else gpu_leaf(state)


def forward_backward(module, x, state):
    """Output, final state and every gradient of a loss that weighs each output and
    final-state entry differently, so no gradient term cancels."""
    data = x.data if isinstance(x, PackedSequence) else x
    leaves = [data] + (flatten_state(state) if state is not None else [])
    for t in [*module.parameters(), *leaves]:
        t.grad = None
    out, final = module(x, state)
    out_data = out.data if isinstance(out, PackedSequence) else out
    finals = flatten_state(final)
    kw = dict(dtype=data.dtype, device=CUDA)
    loss = (out_data * torch.linspace(-1, 1, out_data.numel(), **kw).view_as(out_data)).sum()
    for f in finals:
        loss = loss + (f * torch.cos(torch.arange(f.numel(), **kw)).view_as(f)).sum()
    loss.backward()
    return dict(
        out=out,
        finals=[f.detach() for f in finals],
        grads={n: p.grad.clone() for n, p in module.named_parameters()},
        dinputs=[t.grad.clone() for t in leaves],
    )


def assert_same(ours, ref, dtype, tol=None):
    a, b = ours["out"], ref["out"]
    if isinstance(b, PackedSequence):
        assert isinstance(a, PackedSequence)
        assert torch.equal(a.batch_sizes, b.batch_sizes)
        assert torch.equal(a.sorted_indices, b.sorted_indices)
        assert torch.equal(a.unsorted_indices, b.unsorted_indices)
        a, b = a.data, b.data
    assert a.device.type == "cuda", f"the output is on {a.device}"
    close(a, b, dtype, "output", tol)
    assert len(ours["finals"]) == len(ref["finals"])
    for i, (x, y) in enumerate(zip(ours["finals"], ref["finals"])):
        assert x.device.type == "cuda"
        close(x, y, dtype, f"final state {i}", tol)
    assert list(ours["grads"]) == list(ref["grads"])
    for name, g in ref["grads"].items():
        close(ours["grads"][name], g, dtype, f"d {name}", tol)
    names = ["input", "h0", "c0"]
    for name, x, y in zip(names, ours["dinputs"], ref["dinputs"]):
        close(x, y, dtype, f"d {name}", tol)


def cuda_pair(kind, dtype, input_size=IN, hidden_size=H, **kwargs):
    ours, ref = make_pair(kind, input_size, hidden_size, dtype=dtype, **kwargs)
    return ours.to(CUDA), ref.to(CUDA)


@DTYPES
@pytest.mark.parametrize(
    "kind,name,kwargs,unbatched,with_hx", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES]
)
def test_stack_matches_torch_nn_on_cuda(kind, name, kwargs, unbatched, with_hx, dtype):
    ours, ref = cuda_pair(kind, dtype, **kwargs)
    if kwargs.get("dropout"):  # between the layers; in eval mode neither side drops
        ours.eval()
        ref.eval()
    if unbatched:
        shape = (T, IN)
    else:
        shape = (B, T, IN) if kwargs.get("batch_first") else (T, B, IN)
    x = gpu_leaf(torch.randn(shape, dtype=dtype))
    state = gpu_state(kind, ours, B, unbatched, dtype) if with_hx else None
    assert_same(forward_backward(ours, x, state), forward_backward(ref, x, state), dtype)


@pytest.mark.parametrize("kind", list(KINDS))
def test_larger_stack_matches_torch_nn_on_cuda(kind):
    """Sizes where cuDNN picks its own algorithms (and tensor-core tiles): 2
    bidirectional layers of 128 over 32 steps of 16 sequences. A weight gradient sums
    512 products of magnitude up to ~10 here, so float32 rounding alone can reach
    ~1e-4 in its entries near zero."""
    ours, ref = cuda_pair(kind, torch.float32, 64, 128, num_layers=2, bidirectional=True)
    x = gpu_leaf(torch.randn(32, 16, 64))
    state = gpu_state(kind, ours, 16, False, torch.float32)
    ours_r, ref_r = forward_backward(ours, x, state), forward_backward(ref, x, state)
    assert_same(ours_r, ref_r, torch.float32, tol=(1e-4, 2e-4))


@pytest.mark.parametrize("kind", list(KINDS))
def test_stack_under_the_default_tf32_setting(kind):
    """With cuDNN's TF32 on (torch's default) both sides still compute the same function:
    within TF32's rounding (2**-11 relative per product) of each other."""
    torch.backends.cudnn.allow_tf32 = True  # the fixture restores it
    ours, ref = cuda_pair(kind, torch.float32, 32, 64, num_layers=2, bidirectional=True)
    x = torch.randn(16, 8, 32, device=CUDA)
    with torch.no_grad():
        out, _ = ours(x)
        want, _ = ref(x)
    torch.testing.assert_close(out, want, rtol=1e-2, atol=5e-3)


LENGTHS = [3, 7, 1, 7, 5]  # unsorted, with a tie and a length-1 sequence
PACKED = [(k, {"num_layers": 2, "bidirectional": True}) for k in KINDS] + [
    ("lstm", {"num_layers": 2, "proj_size": 5})
]


@DTYPES
@pytest.mark.parametrize("with_hx", [False, True], ids=["no-hx", "hx"])
@pytest.mark.parametrize("kind,kwargs", PACKED, ids=[f"{k}-{len(kw)}" for k, kw in PACKED])
def test_packed_sequence_matches_torch_nn_on_cuda(kind, kwargs, with_hx, dtype):
    ours, ref = cuda_pair(kind, dtype, **kwargs)
    padded = torch.randn(max(LENGTHS), len(LENGTHS), IN, dtype=dtype, device=CUDA)
    packed = pack_padded_sequence(padded, LENGTHS, enforce_sorted=False)
    packed.data.requires_grad_(True)
    state = gpu_state(kind, ours, len(LENGTHS), False, dtype) if with_hx else None
    assert_same(forward_backward(ours, packed, state), forward_backward(ref, packed, state), dtype)


@pytest.mark.parametrize("kind", list(KINDS))
def test_flatten_parameters_and_weight_changes_on_cuda(kind):
    """flatten_parameters() changes no result, and whatever a cached cuDNN weight
    layout holds never outlives the Parameters: an in-place change, a replaced
    Parameter and load_state_dict are all read by the next call, and the replaced
    Parameter is the one that gets the gradient."""
    dtype = torch.float32
    ours, ref = cuda_pair(kind, dtype, num_layers=2, bidirectional=True)
    x = torch.randn(T, B, IN, device=CUDA)
    with torch.no_grad():
        before, _ = ours(x)
        assert ours.flatten_parameters() is None
        after, _ = ours(x)
        assert torch.equal(before, after)
        for m in (ours, ref):
            m.weight_hh_l0.mul_(0.5)
        close(ours(x)[0], ref(x)[0], dtype, "after an in-place change")
        new = torch.randn_like(ours.weight_ih_l1)
        ours.weight_ih_l1 = nn.Parameter(new.clone())
        ref.weight_ih_l1.copy_(new)
        close(ours(x)[0], ref(x)[0], dtype, "after replacing a Parameter")
        ours.flatten_parameters()
        close(ours(x)[0], ref(x)[0], dtype, "after flatten_parameters")
        sd = {k: torch.rand_like(v) * 0.5 - 0.25 for k, v in ref.state_dict().items()}
        ours.load_state_dict(sd)
        ref.load_state_dict(sd)
        close(ours(x)[0], ref(x)[0], dtype, "after load_state_dict")
    ours(x)[0].sum().backward()
    ref(x)[0].sum().backward()
    assert ours.weight_ih_l1.grad is not None
    close(ours.weight_ih_l1.grad, ref.weight_ih_l1.grad, dtype, "d weight_ih_l1")


@pytest.mark.parametrize("kind", list(KINDS))
def test_moving_a_stack_between_cpu_and_cuda(kind):
    ours, _ = make_pair(kind, IN, H, num_layers=2, bidirectional=True)  # float64, on the CPU
    x = torch.randn(T, B, IN, dtype=torch.float64)
    with torch.no_grad():
        on_cpu, _ = ours(x)
        ours.to(CUDA)
        on_gpu, _ = ours(x.to(CUDA))
        close(on_gpu.cpu(), on_cpu, torch.float64, "GPU against CPU")
        ours.cpu()
        assert torch.equal(ours(x)[0], on_cpu)


@pytest.mark.parametrize("kind", list(KINDS))
def test_input_on_another_device_is_refused_like_torch_nn(kind):
    ours, ref = cuda_pair(kind, torch.float32)
    x = torch.randn(T, B, IN)
    state = gpu_state(kind, ours, B, False, torch.float32)
    cpu_state = tuple(s.detach().cpu() for s in state) if kind == "lstm" else state.cpu()
    for args in ((x,), (x.to(CUDA), cpu_state)):
        want, _ = raised(lambda a=args: ref(*a))
        got, msg = raised(lambda a=args: ours(*a))
        assert want is not None and got is want, f"torch.nn raises {want}, rustrnn {got}: {msg}"


# ---------------------------------------------------------------------------
# generation


def lm_pair(cell, dtype=torch.float64, **kw):
    """A small LanguageModel on the CPU and a copy on the GPU, both in eval mode."""
    cpu = tiny_lm(cell, embed=16, hidden=32, layers=2, dtype=dtype, **kw).eval()
    return cpu, copy.deepcopy(cpu).to(CUDA)


@pytest.mark.parametrize("cell", CELLS)
def test_greedy_generation_on_cuda_equals_the_cpu_copy(cell):
    cpu, gpu = lm_pair(cell)
    assert gpu.embedding.weight.device.type == "cuda"
    for prompt, n in (("the ", 1), ("", 1), ("quick ", 3)):
        want_texts, want_ids = cpu.generate(prompt, 60, greedy=True, num_samples=n, return_ids=True)
        texts, ids = gpu.generate(prompt, 60, greedy=True, num_samples=n, return_ids=True)
        assert [i.tolist() for i in ids] == [i.tolist() for i in want_ids], prompt
        assert texts == want_texts


def test_beam_search_on_cuda_equals_the_cpu_copy():
    cpu, gpu = lm_pair("lstm")
    kw = dict(num_beams=4, num_return_sequences=3, return_ids=True, return_log_probs=True)
    want_texts, want_ids, want_lp = cpu.generate("the ", 12, **kw)
    texts, ids, lp = gpu.generate("the ", 12, **kw)
    assert [i.tolist() for i in ids] == [i.tolist() for i in want_ids]
    assert texts == want_texts
    assert lp == pytest.approx(want_lp, rel=1e-9)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_sampled_generation_on_cuda_repeats_under_a_seed(cell):
    _, gpu = lm_pair(cell, torch.float32)
    torch.manual_seed(5)
    a = gpu.generate("the ", 40, num_samples=6)
    torch.manual_seed(5)
    assert gpu.generate("the ", 40, num_samples=6) == a
    assert len(set(a)) > 1, "six sampled continuations were all identical"
    assert gpu.generate("the ", 40, num_samples=6) != a
    g = torch.Generator().manual_seed(11)
    d = gpu.generate("the ", 30, num_samples=4, generator=g)
    g.manual_seed(11)
    assert gpu.generate("the ", 30, num_samples=4, generator=g) == d
    assert len(gpu.generate("the ", 20, num_samples=64, top_k=5)) == 64


def test_first_sampled_token_on_cuda_follows_the_model_distribution():
    _, gpu = lm_pair("lstm", torch.float32)
    vocab, temperature = gpu.vocab, 0.7
    context = torch.cat([torch.tensor([vocab["\n"]]), vocab.encode("the ")])  # as generate reads
    with torch.no_grad():
        logits, _ = gpu(context.to(CUDA).unsqueeze(1))
    probs = torch.softmax(logits[-1, 0].double().cpu() / temperature, dim=-1)
    _, ids = gpu.generate("the ", 1, num_samples=20_000, temperature=temperature, return_ids=True)
    assert chi2_pvalue(torch.cat(ids), probs) > P_MIN


def test_stop_strings_and_ids_on_cuda():
    cpu, gpu = lm_pair("lstm")
    vocab = cpu.vocab
    for stop in (".", ["e "], [vocab["o"]], ["th", vocab["a"]]):
        want = cpu.generate("the ", 200, greedy=True, num_samples=2, stop=stop)
        assert gpu.generate("the ", 200, greedy=True, num_samples=2, stop=stop) == want, stop
    torch.manual_seed(2)
    stop_id = vocab["o"]
    texts, ids = gpu.generate("the ", 200, num_samples=8, stop=["e", stop_id], return_ids=True)
    for t, i in zip(texts, ids):
        assert t == vocab.decode(i) and len(i) <= 200
        # "e" may lie inside a token (a special's spelling, "<eos>"): matched per token
        stops = [k for k, tok in enumerate(i.tolist()) if tok == stop_id or "e" in vocab.token(tok)]
        assert stops in ([], [len(i) - 1]), f"went on past a stop: {t!r}"
        if not stops:
            assert len(i) == 200


def test_generation_on_cuda_reports_non_finite_logits():
    """Off the CPU the draw reads nothing back per token; a model whose logits are nan is
    still an error (read once, at the end), as on the CPU."""
    cpu, gpu = lm_pair("gru", torch.float32)
    for model in (cpu, gpu):
        with torch.no_grad():
            model.head.weight[3] = float("nan")
        with pytest.raises(RuntimeError, match="nan"):
            model.generate("the ", 20, num_samples=3)


@pytest.mark.parametrize("options", [dict(top_p=0.9), dict(top_k=5, temperature=0.8)])
def test_sampled_generation_on_cuda_keeps_to_the_candidates(options):
    """The deferred draw's top-k and top-p: the first token is always one the options
    keep."""
    _, gpu = lm_pair("lstm", torch.float32)
    vocab = gpu.vocab
    context = torch.cat([torch.tensor([vocab["\n"]]), vocab.encode("the ")])
    with torch.no_grad():
        logits, _ = gpu(context.to(CUDA).unsqueeze(1))
    kept = torch.isfinite(rustrnn._rustrnn.process_logits(logits[-1, 0].cpu(), **options))
    _, ids = gpu.generate("the ", 1, num_samples=4000, return_ids=True, **options)
    assert kept[torch.cat(ids)].all()


def test_scoring_on_cuda_equals_the_cpu_copy():
    cpu, gpu = lm_pair("gru")
    text = "the lazy dog jumps over the quick fox."
    want_total, want_tokens = cpu.log_prob(text)
    total, tokens = gpu.log_prob(text)
    close(tokens.cpu(), want_tokens, torch.float64, "per-token log-probabilities")
    assert total.item() == pytest.approx(want_total.item(), rel=1e-10)
    assert gpu.perplexity(text) == pytest.approx(cpu.perplexity(text), rel=1e-10)
    want = rustrnn.evaluate(cpu, TEXT, batch_size=3, bptt=11)
    assert rustrnn.evaluate(gpu, TEXT, batch_size=3, bptt=11) == pytest.approx(want, rel=1e-10)


# ---------------------------------------------------------------------------
# the sampler on CUDA tensors


def sparse_weights(dtype, cats=300, every=7):
    w = torch.zeros(cats, dtype=dtype)
    w[::every] = (torch.arange(1, len(w[::every]) + 1) % 5 + 0.5).to(dtype)
    return w.to(CUDA)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_multinomial_on_cuda_never_draws_a_zero_weight(dtype):
    w = sparse_weights(dtype)
    rows = w.expand(2000, -1)
    out = rustrnn.multinomial(rows, 100, replacement=True)
    assert out.device == w.device and out.dtype == torch.long and out.shape == (2000, 100)
    assert (w[out] > 0).all()
    nonzero = (w > 0).nonzero().flatten()
    every = rustrnn.multinomial(rows, len(nonzero), replacement=False)
    assert torch.equal(every.sort(1).values, nonzero.expand(2000, -1))


def test_multinomial_without_replacement_on_cuda_gives_distinct_ids():
    w = torch.rand(200, 30, device=CUDA) + 1e-3
    out = rustrnn.multinomial(w, 30, replacement=False)
    assert torch.equal(out.sort(1).values, torch.arange(30, device=CUDA).expand(200, 30))
    part = rustrnn.multinomial(w, 10, replacement=False)
    assert (part.sort(1).values.diff(dim=1) > 0).all()


def test_multinomial_on_cuda_follows_each_rows_weights():
    a = torch.tensor([1.0, 0.0, 3.0, 0.0, 1.0])
    b = torch.tensor([0.0, 2.0, 0.0, 5.0, 1.0])
    w = torch.stack([a, b]).repeat(500, 1).to(CUDA)  # rows alternate a, b
    out = rustrnn.multinomial(w, 400, replacement=True).cpu()  # 2e5 draws per distribution
    assert chi2_pvalue(out[0::2], a) > P_MIN
    assert chi2_pvalue(out[1::2], b) > P_MIN


@pytest.mark.parametrize("repl", [True, False])
def test_multinomial_seeding_on_cuda(repl):
    w = torch.rand(64, 50, device=CUDA)
    torch.manual_seed(3)
    a = rustrnn.multinomial(w, 5, repl)
    b = rustrnn.multinomial(w, 5, repl)
    torch.manual_seed(3)
    assert torch.equal(a, rustrnn.multinomial(w, 5, repl))
    assert not torch.equal(a, b)
    g = torch.Generator(device="cuda").manual_seed(7)
    state = torch.cuda.get_rng_state()
    c = rustrnn.multinomial(w, 5, repl, generator=g)
    assert not torch.equal(c, rustrnn.multinomial(w, 5, repl, generator=g))
    g.manual_seed(7)
    assert torch.equal(c, rustrnn.multinomial(w, 5, repl, generator=g))
    assert torch.equal(state, torch.cuda.get_rng_state()), "an explicit generator moved torch's"
    cpu_g = torch.Generator()
    want, _ = raised(lambda: torch.multinomial(w, 5, repl, generator=cpu_g))
    got, msg = raised(lambda: rustrnn.multinomial(w, 5, repl, generator=cpu_g))
    assert got is want, f"torch.multinomial raises {want} for a CPU generator, rustrnn {got}: {msg}"


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_multinomial_errors_on_cuda_are_the_cpus(case):
    call, _ = ERROR_CASES[case]
    on_cpu = raised(lambda: call(rustrnn.multinomial))
    on_gpu = raised(lambda: call.on(CUDA)(rustrnn.multinomial))
    assert on_cpu[0] is not None
    assert on_gpu == on_cpu
    torch.cuda.synchronize()  # a device-side assert would surface here, not in a later test


SAMPLE_ERRORS = {
    "temperature 0": (torch.randn(5), {"temperature": 0.0}),
    "top_k 0": (torch.randn(5), {"top_k": 0}),
    "top_p 1.5": (torch.randn(5), {"top_p": 1.5}),
    "nan": (torch.tensor([0.0, float("nan")]), {}),
    "+inf": (torch.tensor([[0.0, 1.0], [float("inf"), 0.0]]), {}),
    "all -inf": (torch.full((2, 3), float("-inf")), {}),
    "all -inf greedy": (torch.full((2, 3), float("-inf")), {"greedy": True}),
    "3-D": (torch.ones(2, 2, 2), {}),
    "int64": (torch.ones(3, dtype=torch.long), {}),
    "no tokens": (torch.ones(3, 0), {}),
}


@pytest.mark.parametrize("case", list(SAMPLE_ERRORS))
def test_sample_errors_on_cuda_are_the_cpus(case):
    logits, kw = SAMPLE_ERRORS[case]
    on_cpu = raised(lambda: rustrnn.sample(logits, **kw))
    on_gpu = raised(lambda: rustrnn.sample(logits.to(CUDA), **kw))
    assert on_cpu[0] is not None
    assert on_gpu == on_cpu
    torch.cuda.synchronize()


def test_sample_limits_and_top_k_on_cuda():
    logits = torch.randn(64, 200, device=CUDA)
    best = logits.argmax(1)
    for kw in ({"top_k": 1}, {"greedy": True}, {"top_p": 1e-9}, {"temperature": 1e-8}):
        out = rustrnn.sample(logits, **kw)
        assert out.device == logits.device and torch.equal(out, best), kw
    allowed = logits.topk(5, 1).indices
    out = rustrnn.sample(logits.repeat(50, 1), temperature=2.0, top_k=5)
    assert (out.view(50, 64, 1) == allowed.unsqueeze(0)).any(-1).all()


@pytest.mark.parametrize(
    "kw", [{}, {"temperature": 0.7}, {"temperature": 3.0, "top_k": 4}, {"top_p": 0.8}]
)
def test_sample_distribution_on_cuda_chi2(kw):
    logits = torch.tensor([2.0, -1.0, 0.5, 1.5, float("-inf"), 0.0, 1.0, -0.5, 2.2, 0.3])
    out = rustrnn.sample(logits.to(CUDA).expand(300_000, -1), **kw)
    assert chi2_pvalue(out.cpu(), reference_probs(logits, **kw)) > P_MIN


def test_sample_seeding_on_cuda():
    logits = torch.randn(64, 100, device=CUDA)
    torch.manual_seed(1)
    a = rustrnn.sample(logits, top_p=0.9)
    b = rustrnn.sample(logits, top_p=0.9)
    torch.manual_seed(1)
    assert torch.equal(a, rustrnn.sample(logits, top_p=0.9))
    assert not torch.equal(a, b)
    g1 = torch.Generator(device="cuda").manual_seed(4)
    g2 = torch.Generator(device="cuda").manual_seed(4)
    c = rustrnn.sample(logits, top_k=20, generator=g1)
    assert torch.equal(c, rustrnn.sample(logits, top_k=20, generator=g2))


# ---------------------------------------------------------------------------
# training


def train(model, max_steps, **kw):
    options = dict(batch_size=4, bptt=7, optimizer="adam", lr=0.01, clip=0.25, progress=False)
    return rustrnn.train(model, TEXT, TEXT[:120], max_steps=max_steps, **{**options, **kw})


def assert_same_weights(model, ref, atol):
    for name, p in ref.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name].cpu(), p.cpu(), rtol=0, atol=atol)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh"])
def test_training_on_cuda_follows_the_cpu_run(cell):
    """float64 and no dropout (each device draws its own masks): the same run on both,
    agreeing to rounding (cuDNN and the CPU kernels sum in different orders)."""
    cpu, gpu = lm_pair(cell, dropout=0.0)
    want = train(cpu.train(), 8, eval_every=4)
    hist = train(gpu.train(), 8, eval_every=4)
    assert hist.steps == want.steps == list(range(1, 9))
    assert hist.losses == pytest.approx(want.losses, rel=1e-8)
    assert hist.valid_ppls == pytest.approx(want.valid_ppls, rel=1e-8)
    assert all(p.device.type == "cuda" for p in gpu.parameters())
    assert_same_weights(gpu, cpu, 1e-8)


def test_float32_training_on_cuda_starts_as_on_the_cpu():
    cpu, gpu = lm_pair("lstm", torch.float32, dropout=0.0)
    want = train(cpu.train(), 3)
    hist = train(gpu.train(), 3)
    assert hist.losses[0] == pytest.approx(want.losses[0], rel=1e-5)
    assert hist.losses == pytest.approx(want.losses, rel=1e-4)


def test_training_with_dropout_on_cuda_learns_and_repeats_under_a_seed():
    _, gpu = lm_pair("lstm", torch.float32, dropout=0.2)
    start = copy.deepcopy(gpu.state_dict())
    first = train(gpu.train(), 60, epochs=10, bptt=16, seed=3)
    assert all(math.isfinite(x) for x in first.losses)
    assert sum(first.losses[-5:]) / 5 < 0.9 * first.losses[0], first.losses
    gpu.load_state_dict(start)
    again = train(gpu, 60, epochs=10, bptt=16, seed=3)
    assert again.losses == pytest.approx(first.losses, rel=1e-4)


def test_checkpoints_saved_on_cuda_load_on_cpu_and_cuda(tmp_path):
    _, gpu = lm_pair("gru", tie=True, dropout=0.0)
    train(gpu.train(), 6, eval_every=3, checkpoint_dir=tmp_path / "ckpt")
    gpu.save(tmp_path / "model.safetensors")
    gpu.eval()
    ids = gpu.vocab.encode("the quick fox").unsqueeze(1)
    with torch.no_grad():
        want, _ = gpu(ids.to(CUDA))
    assert (tmp_path / "ckpt" / "best.safetensors").is_file()
    for path in (tmp_path / "model.safetensors", tmp_path / "ckpt" / "last.safetensors"):
        for location, device in ((None, "cpu"), ("cpu", "cpu"), ("cuda", "cuda")):
            back = LanguageModel.load(path, map_location=location)
            assert {p.device.type for p in back.parameters()} == {device}
            assert back.head.weight is back.embedding.weight
            for name, p in gpu.state_dict().items():
                assert torch.equal(back.state_dict()[name].cpu(), p.cpu()), (path.name, name)
            with torch.no_grad():
                logits, _ = back(ids.to(device))
            close(logits.to(CUDA), want, torch.float64, f"{path.name} on {device}")


def test_resume_on_cuda_with_dropout_continues_exactly(tmp_path):
    """The GPU's RNG state travels in the checkpoint: the resumed run draws the
    dropout masks the uninterrupted one drew."""
    cpu, _ = lm_pair("lstm", dropout=0.3)
    fresh = [copy.deepcopy(cpu).to(CUDA).train() for _ in range(3)]
    full = train(fresh[0], 10, epochs=2, bptt=16, seed=7, checkpoint_dir=tmp_path / "a")
    train(fresh[1], 5, epochs=2, bptt=16, seed=7, checkpoint_dir=tmp_path / "b")
    torch.manual_seed(12345)  # resuming must restore the RNG
    rest = train(fresh[2], 10, epochs=2, bptt=16, checkpoint_dir=tmp_path / "b", resume=True)
    assert rest.steps == full.steps
    assert rest.losses == pytest.approx(full.losses, rel=1e-10)
    assert_same_weights(fresh[2], fresh[0], 1e-10)


@pytest.mark.parametrize("first,then", [("cuda", "cpu"), ("cpu", "cuda")])
def test_training_resumes_on_the_other_device(tmp_path, first, then):
    """A run checkpointed on one device continues on the other as it would have gone on
    (float64, no dropout: the two devices' generators draw different masks)."""
    cpu, _ = lm_pair("lstm", dropout=0.0)
    full_model = copy.deepcopy(cpu).to(first).train()
    full = train(full_model, 8, eval_every=4)
    train(copy.deepcopy(cpu).to(first).train(), 4, eval_every=4, checkpoint_dir=tmp_path)
    model = copy.deepcopy(cpu).to(then).train()
    rest = train(model, 8, eval_every=4, checkpoint_dir=tmp_path, resume=True)
    assert rest.steps == full.steps
    assert rest.losses == pytest.approx(full.losses, rel=1e-8)
    assert {p.device.type for p in model.parameters()} == {then}
    assert_same_weights(model, full_model, 1e-8)


def test_cli_trains_on_cuda(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog.\n" * 200, encoding="utf-8")
    args = ["train", str(corpus), "--embed", "16", "--hidden", "32", "--layers", "2"]
    args += ["--bptt", "16", "--batch-size", "4", "--max-steps", "5", "--dropout", "0"]
    args += ["--no-progress", "--seed", "1"]
    ppl = {}
    for device in ("cuda", "cpu"):
        out = tmp_path / device
        r = hostile_probe.cli(*args, "--device", device, "--out", str(out), timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
        assert "greedy" in r.stdout and (out / "model.safetensors").is_file()
        found = re.search(r"validation perplexity ([0-9.]+) after 5 steps", r.stdout)
        assert found, r.stdout
        ppl[device] = float(found.group(1))
    assert ppl["cuda"] == pytest.approx(ppl["cpu"], rel=1e-3, abs=0.02)
    ckpt = str(tmp_path / "cuda" / "model.safetensors")
    r = hostile_probe.cli("generate", ckpt, "--prompt", "the ", "--max-tokens", "20", timeout=300)
    assert r.returncode == 0 and r.stdout.startswith("the "), r.stderr[-3000:]


@pytest.mark.skipif(
    not (torch.distributed.is_available() and torch.distributed.is_nccl_available()),
    reason="torch.distributed with NCCL missing",
)
@pytest.mark.parametrize("world", [1, 2])
def test_data_parallel_training_over_nccl(tmp_path, world):
    """tests/dist_train_worker.py's ranks on GPUs 0..world-1: identical replicas that
    match one process on the GPU training all ranks' streams as one batch. One GPU
    runs world size 1: the process group, rank and checkpoints under NCCL (a world of
    one has nothing to average)."""
    if torch.cuda.device_count() < world:
        pytest.skip(f"needs {world} GPUs")
    ranks = run_ranks(world, tmp_path, backend="nccl")
    for other in ranks[1:]:
        for k, v in ranks[0].items():
            if k != "losses":  # each rank reports its own shard's loss
                assert torch.equal(other[k], v), k
    torch.manual_seed(100)  # rank 0's initial weights
    model = tiny_lm("lstm", tie=True).to(CUDA)
    hist = rustrnn.train(
        model,
        TEXT,
        TEXT[:120],
        batch_size=2 * world,
        bptt=6,
        max_steps=7,
        eval_every=3,
        optimizer="adam",
        lr=0.01,
        clip=0.25,
        progress=False,
    )
    for k, v in model.state_dict().items():
        if k != "head.weight":  # tied to embedding.weight
            torch.testing.assert_close(ranks[0][k], v.cpu(), rtol=0, atol=1e-10)
    losses = sum(r["losses"] for r in ranks) / world
    want = torch.tensor(hist.losses, dtype=torch.float64)
    torch.testing.assert_close(losses, want, rtol=1e-10, atol=0)
    valid = torch.tensor(hist.valid_ppls, dtype=torch.float64)
    torch.testing.assert_close(ranks[0]["valid_ppls"], valid, rtol=1e-10, atol=0)
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [
        "best.safetensors",
        "last.safetensors",
    ]
