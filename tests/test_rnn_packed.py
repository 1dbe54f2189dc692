"""PackedSequence input against torch.nn with the same weights: the packed output with
its indices, each sequence's final state in the caller's order, and every gradient."""

import itertools

import pytest
import torch
from rnn_helpers import KINDS, flatten_state, make_pair, make_state
from torch.nn.utils.rnn import (
    PackedSequence,
    pack_padded_sequence,
    pack_sequence,
    pad_packed_sequence,
)

IN, H = 4, 6
LENGTHS = [3, 5, 1, 5, 2]  # unsorted, with a tie and a length-1 sequence

CONFIGS = [
    (kind, bias, bidir, layers, with_hx, proj, enforce_sorted)
    for kind, bias, bidir, layers, with_hx, proj, enforce_sorted in itertools.product(
        KINDS, [True, False], [False, True], [1, 2], [False, True], [0, 3], [False, True]
    )
    if proj == 0 or kind == "lstm"
]


def config_id(c):
    kind, bias, bidir, layers, hx, proj, srt = c
    flags = f"bias{int(bias)}-bi{int(bidir)}-L{layers}-hx{int(hx)}"
    return f"{kind}-{flags}-proj{proj}-sorted{int(srt)}"


def packed_input(dtype, enforce_sorted, lengths=LENGTHS, features=IN):
    lengths = sorted(lengths, reverse=True) if enforce_sorted else lengths
    padded = torch.randn(max(lengths), len(lengths), features, dtype=dtype)
    packed = pack_padded_sequence(padded, lengths, enforce_sorted=enforce_sorted)
    return PackedSequence(
        packed.data.clone().requires_grad_(True),
        packed.batch_sizes,
        packed.sorted_indices,
        packed.unsorted_indices,
    )


def run_both(ours, ref, packed, state, dtype):
    results = []
    for module in (ours, ref):
        for p in module.parameters():
            p.grad = None
        packed.data.grad = None
        leaves = flatten_state(state) if state is not None else []
        for t in leaves:
            t.grad = None
        out, final = module(packed, state)
        assert isinstance(out, PackedSequence)
        finals = flatten_state(final)
        w = torch.linspace(-1, 1, out.data.numel(), dtype=dtype).view_as(out.data)
        loss = (out.data * w).sum()
        for f in finals:
            loss = loss + (f * torch.cos(torch.arange(f.numel(), dtype=dtype)).view_as(f)).sum()
        loss.backward()
        results.append(
            dict(
                out=out,
                finals=[f.detach() for f in finals],
                grads=[p.grad.clone() for p in module.parameters()],
                dx=packed.data.grad.clone(),
                dstate=[t.grad.clone() for t in leaves],
            )
        )
    return results


def check(ours_r, ref_r, tol):
    a, b = ours_r["out"], ref_r["out"]
    torch.testing.assert_close(a.data, b.data, rtol=tol, atol=tol)
    assert torch.equal(a.batch_sizes, b.batch_sizes)
    for x, y in ((a.sorted_indices, b.sorted_indices), (a.unsorted_indices, b.unsorted_indices)):
        assert (x is None and y is None) or torch.equal(x, y)
    for key in ("finals", "grads", "dstate"):
        assert len(ours_r[key]) == len(ref_r[key])
        for x, y in zip(ours_r[key], ref_r[key]):
            torch.testing.assert_close(x, y, rtol=tol, atol=tol)
    torch.testing.assert_close(ours_r["dx"], ref_r["dx"], rtol=tol, atol=tol)


@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_packed_matches_torch(config, dtype):
    kind, bias, bidir, layers, with_hx, proj, enforce_sorted = config
    torch.manual_seed(0)
    kwargs = dict(num_layers=layers, bias=bias, bidirectional=bidir)
    if proj:
        kwargs["proj_size"] = proj
    ours, ref = make_pair(kind, IN, H, dtype=dtype, **kwargs)
    packed = packed_input(dtype, enforce_sorted)
    state = make_state(kind, ours, len(LENGTHS), False, dtype) if with_hx else None
    ours_r, ref_r = run_both(ours, ref, packed, state, dtype)
    check(ours_r, ref_r, 1e-10 if dtype == torch.float64 else 1e-5)


@pytest.mark.parametrize("kind", list(KINDS))
def test_packed_float32_fused_sizes_against_float64_torch(kind):
    """The float32 CPU engines (fused kernels, thread teams) at sizes that fill
    whole blocks and not, on many ragged sequences, against float64 torch.nn."""
    torch.manual_seed(1)
    lengths = torch.randint(1, 40, (37,)).tolist()
    for hidden, bidir in ((17, True), (128, False)):
        ours, ref = make_pair(
            kind, 24, hidden, dtype=torch.float32, num_layers=2, bidirectional=bidir
        )
        ref = ref.double()
        packed = packed_input(torch.float32, False, lengths, 24)
        packed64 = PackedSequence(
            packed.data.detach().double().requires_grad_(True),
            packed.batch_sizes,
            packed.sorted_indices,
            packed.unsorted_indices,
        )
        a = run_both(ours, ours, packed, None, torch.float32)[0]
        b = run_both(ref, ref, packed64, None, torch.float64)[0]
        a["out"] = PackedSequence(a["out"].data.double(), *a["out"][1:])
        for key in ("finals", "grads"):
            a[key] = [t.double() for t in a[key]]
        a["dx"] = a["dx"].double()
        check(a, b, 2e-4)


def test_pack_sequence_and_padded_round_trip():
    torch.manual_seed(2)
    ours, ref = make_pair("gru", IN, H, dtype=torch.float64, batch_first=True)
    seqs = [torch.randn(n, IN, dtype=torch.float64) for n in (4, 2, 3)]
    packed = pack_sequence(seqs, enforce_sorted=False)
    out, h = ours(packed)
    ref_out, ref_h = ref(packed)
    padded, lengths = pad_packed_sequence(out, batch_first=True)
    ref_padded, _ = pad_packed_sequence(ref_out, batch_first=True)
    torch.testing.assert_close(padded, ref_padded)
    torch.testing.assert_close(h, ref_h)
    # Each sequence alone gives the same outputs and final state.
    for b, seq in enumerate(seqs):
        alone, h_alone = ours(seq.unsqueeze(0))
        torch.testing.assert_close(padded[b, : len(seq)], alone[0])
        torch.testing.assert_close(h[:, b], h_alone[:, 0])


def test_hand_built_packed_sequence_without_indices():
    torch.manual_seed(3)
    ours, ref = make_pair("lstm", IN, H, dtype=torch.float64)
    data = torch.randn(6, IN, dtype=torch.float64)
    packed = PackedSequence(data, torch.tensor([3, 2, 1]))
    out, (h, c) = ours(packed)
    ref_out, (ref_h, ref_c) = ref(packed)
    torch.testing.assert_close(out.data, ref_out.data)
    torch.testing.assert_close(h, ref_h)
    torch.testing.assert_close(c, ref_c)
    assert out.sorted_indices is None and out.unsorted_indices is None


def test_packed_inference_without_grad_equals_with_grad():
    torch.manual_seed(4)
    ours, _ = make_pair("lstm", IN, H, dtype=torch.float32, num_layers=2)
    packed = packed_input(torch.float32, False)
    with torch.no_grad():
        a, (ha, ca) = ours(packed)
    b, (hb, cb) = ours(packed)
    torch.testing.assert_close(a.data, b.data.detach())
    torch.testing.assert_close(ha, hb.detach())


@pytest.mark.parametrize(
    "batch_sizes, rows, match",
    [
        ([2, 3], 5, "non-increasing"),
        ([2, 0], 2, "non-increasing"),
        ([3, 2], 4, "add up to 5 rows"),
    ],
)
def test_bad_batch_sizes_are_value_errors(batch_sizes, rows, match):
    ours, _ = make_pair("gru", IN, H, dtype=torch.float64)
    packed = PackedSequence(torch.randn(rows, IN, dtype=torch.float64), torch.tensor(batch_sizes))
    with pytest.raises((ValueError, RuntimeError), match=match):
        ours(packed)


def test_packed_hx_of_the_wrong_batch_is_rejected_like_torch():
    ours, ref = make_pair("rnn_tanh", IN, H, dtype=torch.float64)
    packed = packed_input(torch.float64, True)
    hx = torch.zeros(1, len(LENGTHS) + 1, H, dtype=torch.float64)
    with pytest.raises(RuntimeError) as theirs:
        ref(packed, hx)
    with pytest.raises(type(theirs.value)) as mine:
        ours(packed, hx)
    assert str(mine.value) == str(theirs.value)


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_packed_dropout_between_layers_is_a_layerwise_reference(kind, dtype):
    """A 2-layer stack in training mode with dropout equals torch.nn's layer 0, rustrnn's
    dropout on the packed rows (the same draw from torch's generator), then torch.nn's
    layer 1: outputs and gradients; another seed draws another mask."""
    import rustrnn

    ours, _ = make_pair(kind, IN, H, dtype=dtype, num_layers=2, dropout=0.4)
    ours.train()
    _, cls, extra = KINDS[kind]
    first, second = (cls(n, H, **extra).to(dtype) for n in (IN, H))
    for layer, module in enumerate((first, second)):
        for name, p in module.named_parameters():
            p.data.copy_(getattr(ours, name.replace("_l0", f"_l{layer}")))
    packed = packed_input(dtype, False)
    torch.manual_seed(7)
    out, _ = ours(packed)
    torch.manual_seed(7)
    mid, _ = first(packed)
    ref, _ = second(mid._replace(data=rustrnn.functional.dropout(mid.data, 0.4)))
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(out.data, ref.data, rtol=tol, atol=tol)
    out.data.sum().backward()
    ref.data.sum().backward()
    torch.testing.assert_close(ours.weight_ih_l0.grad, first.weight_ih_l0.grad, rtol=tol, atol=tol)
    torch.testing.assert_close(ours.weight_hh_l1.grad, second.weight_hh_l0.grad, rtol=tol, atol=tol)
    torch.manual_seed(8)
    other, _ = ours(packed)
    assert not torch.allclose(other.data, out.data)


@pytest.mark.parametrize("kind", list(KINDS))
def test_packed_gradcheck(kind):
    torch.manual_seed(5)
    ours, _ = make_pair(kind, 3, 4, dtype=torch.float64, bidirectional=True)
    packed = packed_input(torch.float64, False, [3, 1, 2], 3)
    h0 = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    state = (h0, torch.randn_like(h0).requires_grad_(True)) if kind == "lstm" else h0

    def run(data, *state):
        out, final = ours(packed._replace(data=data), state if kind == "lstm" else state[0])
        return (out.data, *flatten_state(final))

    leaves = flatten_state(state)
    assert torch.autograd.gradcheck(run, (packed.data, *leaves))
