"""rustrnn.train's loop: batching, epochs, evaluation and LR decay (against a plain
torch word_language_model run), stopping rules, History, progress, callback,
interrupts and non-finite losses."""

import math
import os
import signal
import threading

import pytest
import rustrnn
import torch
import torch.nn.functional as F
from lm_helpers import TEXT, plain_copy, tiny_lm
from rustrnn.lm import LanguageModel
from test_train_step import batchify, detach, windows


def _finite(model):
    return all(torch.isfinite(p).all() for p in model.parameters())


def test_steps_per_epoch_follow_batchify():
    model = tiny_lm()
    ids = model.vocab.encode(TEXT)
    hist = rustrnn.train(model, ids, batch_size=5, bptt=9, epochs=2, progress=False)
    per_epoch = math.ceil((ids.numel() // 5 - 1) / 9)
    assert hist.steps == list(range(1, 2 * per_epoch + 1))
    assert hist.epochs == [0] * per_epoch + [1] * per_epoch
    assert hist.stop_reason == "epochs"
    assert len(hist.losses) == len(hist.lrs) == len(hist.grad_norms) == len(hist.tokens_per_sec)
    assert all(t > 0 for t in hist.tokens_per_sec)


def torch_perplexity(ref, ids, bsz, bptt):
    ref.eval()
    data = batchify(ids, bsz)
    total, count, state = 0.0, 0, None
    with torch.no_grad():
        for x, y in windows(data, bptt):
            out, state = ref(x, state)
            total += F.cross_entropy(out.view(-1, out.size(-1)), y.reshape(-1), reduction="sum")
            count += y.numel()
    ref.train()
    return math.exp(total / count)


def test_evaluate_matches_plain_torch():
    model = tiny_lm("gru", dropout=0.5)
    ids = model.vocab.encode(TEXT[:300])
    want = torch_perplexity(plain_copy(model), ids, 4, 11)
    assert rustrnn.evaluate(model, ids, batch_size=4, bptt=11) == pytest.approx(want, rel=1e-10)


@pytest.mark.parametrize("tie", [False, "projected"])
def test_float32_evaluate_of_many_tokens_matches_plain_torch_in_float64(tie):
    """Thousands of float32 targets: on AVX-512 CPUs the head is packed for the fused
    kernels once for the evaluation (through the projection when tied); the perplexity
    still equals plain torch's in float64 with the same weights."""
    model = tiny_lm("lstm", tie=tie, dtype=torch.float32)
    with torch.no_grad():  # initialised to zeros: a bias lost would go unseen
        model.head.bias.copy_(torch.linspace(-1, 1, model.head.bias.numel()))
    ids = model.vocab.encode(TEXT * (3000 // len(TEXT) + 1))
    assert ids.numel() > 3000
    want = torch_perplexity(plain_copy(model).double(), ids, 4, 35)
    assert rustrnn.evaluate(model, ids, batch_size=4, bptt=35) == pytest.approx(want, rel=1e-5)


def test_plateau_decay_matches_word_language_model():
    """Training on 'a's makes 'b's less likely: the validation perplexity worsens after
    the first evaluation, so every later one decays the LR (patience 0), and the decayed
    LR drives the following updates, exactly as in the reference loop."""
    model = tiny_lm("lstm", text=TEXT + "ab")
    ref = plain_copy(model)
    train_ids = model.vocab.encode("a" * 160)
    valid_ids = model.vocab.encode("b" * 40)
    hist = rustrnn.train(
        model,
        train_ids,
        valid_ids,
        batch_size=4,
        bptt=6,
        epochs=3,
        eval_every=2,
        optimizer="sgd",
        lr=2.0,
        clip=0.25,
        lr_decay=0.5,
        progress=False,
    )
    # The reference: word_language_model's loop with its evaluate/decay rule.
    lr, best, losses, lrs, ppls, step = 2.0, None, [], [], [], 0
    opt = torch.optim.SGD(ref.parameters(), lr=lr)
    vb = min(4, valid_ids.numel() // 2)

    def evaluate():
        nonlocal lr, best
        ppl = torch_perplexity(ref, valid_ids, vb, 6)
        ppls.append(ppl)
        if best is None or ppl < best:
            best = ppl
        else:
            lr *= 0.5
            for g in opt.param_groups:
                g["lr"] = lr

    for _epoch in range(3):
        state = None
        for x, y in windows(batchify(train_ids, 4), 6):
            state = detach(state)
            ref.zero_grad()
            out, state = ref(x, state)
            loss = F.cross_entropy(out.view(-1, out.size(-1)), y.reshape(-1))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(ref.parameters(), 0.25)
            lrs.append(lr)
            opt.step()
            losses.append(loss.item())
            step += 1
            if step % 2 == 0:
                evaluate()
        if step % 2 != 0:
            evaluate()
    assert hist.losses == pytest.approx(losses, rel=1e-10)
    assert hist.valid_ppls == pytest.approx(ppls, rel=1e-10)
    assert hist.lrs == lrs
    assert lrs[-1] < 2.0 * 0.5**3  # the decay really happened, several times
    assert hist.best_valid_ppl == pytest.approx(min(ppls), rel=1e-12)


def test_patience_tolerates_non_improving_evaluations():
    """With a learning rate too small to move float64 weights, the perplexity never
    changes: after the first evaluation every one is a non-improvement."""
    model = tiny_lm()
    ids = model.vocab.encode(TEXT)
    hist = rustrnn.train(
        model,
        ids,
        ids[:200],
        batch_size=4,
        bptt=8,
        max_steps=12,
        eval_every=1,
        optimizer="sgd",
        lr=1e-300,
        lr_decay=0.5,
        patience=2,
        progress=False,
    )
    assert len(set(hist.valid_ppls)) == 1
    # evals 2,3 tolerated, 4 decays; 5,6 tolerated, 7 decays; ...
    want, lr, bad = [], 1e-300, 0
    for i in range(12):
        want.append(lr)
        if i >= 1:
            bad += 1
            if bad > 2:
                lr, bad = lr * 0.5, 0
    assert hist.lrs == want


def test_max_steps_and_time_budget():
    model = tiny_lm()
    hist = rustrnn.train(model, TEXT, batch_size=2, bptt=4, epochs=50, max_steps=7, progress=False)
    assert hist.steps == list(range(1, 8)) and hist.stop_reason == "max_steps"
    before = {k: v.clone() for k, v in model.state_dict().items()}
    hist = rustrnn.train(model, TEXT, batch_size=2, bptt=4, time_budget=0, progress=False)
    assert hist.steps == [] and hist.stop_reason == "time_budget"
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


@pytest.mark.parametrize("kind", ["text", "str_path", "path", "tensor", "list"])
def test_data_kinds(tmp_path, kind):
    model = tiny_lm()
    text = TEXT[:400]
    ids = model.vocab.encode(text)
    data = {
        "text": text,
        "str_path": str(tmp_path / "train.txt"),
        "path": tmp_path / "train.txt",
        "tensor": ids,
        "list": ids.tolist(),
    }[kind]
    (tmp_path / "train.txt").write_text(text, encoding="utf-8")
    ref = tiny_lm()
    ref.load_state_dict(model.state_dict())
    a = rustrnn.train(model, data, batch_size=3, bptt=5, max_steps=3, progress=False)
    b = rustrnn.train(ref, ids, batch_size=3, bptt=5, max_steps=3, progress=False)
    assert a.losses == b.losses


def test_bad_data():
    model = tiny_lm()
    with pytest.raises(ValueError, match="too few"):
        rustrnn.train(model, "abc", batch_size=4, progress=False)
    with pytest.raises(IndexError, match="outside the vocabulary"):
        rustrnn.train(model, torch.tensor([0, 1, 999, 2] * 10), batch_size=2, progress=False)
    with pytest.raises(FileNotFoundError, match="no such file"):
        rustrnn.train(model, "data/missing.txt", progress=False)
    with pytest.raises(ValueError, match="1-D LongTensor"):
        rustrnn.train(model, torch.zeros(3, 3, dtype=torch.long), progress=False)
    with pytest.raises(ValueError, match="optimizer"):
        rustrnn.train(model, TEXT, optimizer="lbfgs", progress=False)
    with pytest.raises(ValueError, match="bptt"):
        rustrnn.train(model, TEXT, bptt=0, progress=False)


def test_frozen_parameters_are_not_updated():
    model = tiny_lm()
    model.embedding.weight.requires_grad_(False)
    before = model.embedding.weight.clone()
    head = model.head.weight.clone()
    rustrnn.train(model, TEXT, batch_size=2, bptt=4, max_steps=2, progress=False)
    assert torch.equal(model.embedding.weight, before)
    assert not torch.equal(model.head.weight, head)


def test_callback_and_progress(capsys):
    model = tiny_lm()
    seen = []
    hist = rustrnn.train(
        model,
        TEXT,
        TEXT[:100],
        batch_size=2,
        bptt=8,
        max_steps=6,
        eval_every=3,
        callback=lambda step, m: seen.append((step, dict(m))),
        progress=True,
    )
    steps = [(s, m) for s, m in seen if m["event"] == "step"]
    evals = [(s, m) for s, m in seen if m["event"] == "eval"]
    assert [s for s, _ in steps] == hist.steps
    assert [m["loss"] for _, m in steps] == hist.losses
    assert [m["ppl"] for _, m in steps] == [math.exp(x) for x in hist.losses]
    assert [s for s, _ in evals] == hist.eval_steps == [3, 6]
    assert [m["valid_ppl"] for _, m in evals] == hist.valid_ppls
    err = capsys.readouterr().err
    assert "train" in err and "6/6" in err and "tok_s" in err
    rustrnn.train(model, TEXT, batch_size=2, bptt=8, max_steps=2, progress=False)
    assert capsys.readouterr().err == ""


def test_history_plot():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    hist = rustrnn.train(
        tiny_lm(), TEXT, TEXT[:80], batch_size=2, bptt=8, max_steps=4, eval_every=2, progress=False
    )
    fig = hist.plot()
    assert isinstance(fig, matplotlib.figure.Figure)
    assert len(fig.axes) == 3
    assert hist.evals == list(zip(hist.eval_steps, hist.valid_ppls))
    assert rustrnn.History.from_json(__import__("json").dumps(hist.to_dict())) == hist


def _stop_at(n, exc=KeyboardInterrupt):
    def callback(step, m):
        if m["event"] == "step" and step == n:
            raise exc()

    return callback


def test_keyboard_interrupt_from_the_callback(tmp_path):
    model = tiny_lm(dropout=0.2)
    with pytest.raises(KeyboardInterrupt) as err:
        rustrnn.train(
            model,
            TEXT,
            batch_size=2,
            bptt=8,
            max_steps=50,
            progress=False,
            checkpoint_dir=tmp_path,
            callback=_stop_at(3),
        )
    hist = err.value.history
    assert hist.steps == [1, 2, 3] and hist.stop_reason == "interrupted" and hist.interrupted
    assert _finite(model)
    assert all(p.requires_grad and p.grad is None for p in model.parameters())
    # The checkpoint holds the weights as they were at the interrupt.
    back = LanguageModel.load(tmp_path / "last.safetensors")
    for k, v in model.state_dict().items():
        assert torch.equal(back.state_dict()[k], v)
    # The model is usable: forward, backward, more training.
    logits, _ = model(model.vocab.encode("the fox").unsqueeze(1))
    logits.sum().backward()
    rustrnn.train(model, TEXT, batch_size=2, bptt=8, max_steps=1, progress=False)


def test_other_callback_errors_propagate_as_they_are():
    model = tiny_lm()
    with pytest.raises(ZeroDivisionError) as err:
        rustrnn.train(
            model,
            TEXT,
            batch_size=2,
            bptt=8,
            progress=False,
            callback=_stop_at(2, ZeroDivisionError),
        )
    assert err.value.history.steps == [1, 2]


def test_ctrl_c_stops_the_rust_loop_within_a_step():
    """SIGINT arrives from another thread while the GIL is released in Rust;
    the loop's per-step check_signals turns it into KeyboardInterrupt."""
    model = tiny_lm()
    sent = []

    def callback(step, m):
        if step == 3 and not sent:
            sent.append(step)
            threading.Thread(target=os.kill, args=(os.getpid(), signal.SIGINT)).start()

    with pytest.raises(KeyboardInterrupt) as err:
        rustrnn.train(
            model,
            TEXT,
            batch_size=2,
            bptt=8,
            epochs=10**6,
            time_budget=300,
            progress=False,
            callback=callback,
        )
    assert err.value.history.stop_reason == "interrupted"
    assert err.value.history.steps[-1] >= 3
    assert _finite(model)


def test_non_finite_loss_stops_and_keeps_the_good_checkpoint(tmp_path):
    model = tiny_lm()
    rustrnn.train(
        model, TEXT, batch_size=2, bptt=8, max_steps=2, progress=False, checkpoint_dir=tmp_path
    )
    good = (tmp_path / "last.safetensors").read_bytes()
    with torch.no_grad():
        model.head.bias[0] = float("nan")
    snapshot = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(FloatingPointError, match="at step 1") as err:
        rustrnn.train(
            model,
            TEXT,
            batch_size=2,
            bptt=8,
            max_steps=5,
            progress=False,
            checkpoint_dir=tmp_path,
            overwrite=True,  # a second run into the directory must say so
        )
    assert err.value.history.stop_reason == "non_finite"
    assert (tmp_path / "last.safetensors").read_bytes() == good
    for k, v in model.state_dict().items():  # nothing was updated
        torch.testing.assert_close(v, snapshot[k], equal_nan=True, rtol=0, atol=0)


def test_diverging_training_names_the_step():
    # A ReLU RNN does not saturate: after an update of ~1e30 per weight its float32
    # activations overflow (3.4e38), on every CPU; a saturated LSTM can keep the loss
    # finite for many steps, depending on how the BLAS sums infinities.
    model = tiny_lm(cell="rnn_relu", dtype=torch.float32)
    with pytest.raises(FloatingPointError, match=r"\bstep \d+\b"):
        rustrnn.train(
            model,
            TEXT,
            batch_size=2,
            bptt=8,
            max_steps=20,
            optimizer="sgd",
            lr=1e30,
            clip=None,
            progress=False,
        )


def test_non_finite_weights_are_never_written(tmp_path):
    model = tiny_lm()
    rustrnn.train(
        model, TEXT, batch_size=2, bptt=8, max_steps=1, progress=False, checkpoint_dir=tmp_path
    )
    good = (tmp_path / "last.safetensors").read_bytes()
    with torch.no_grad():
        model.rnn.weight_hh_l1[0, 0] = float("inf")
    with pytest.raises(FloatingPointError, match="not written.*weight_hh_l1"):
        # no step runs (epochs=0), but the run's end still writes `last`
        rustrnn.train(
            model, TEXT, epochs=0, progress=False, checkpoint_dir=tmp_path, overwrite=True
        )
    assert (tmp_path / "last.safetensors").read_bytes() == good


def test_word_level_model_trains_and_round_trips(tmp_path):
    vocab = rustrnn.Vocab.build(TEXT, level="word")
    model = LanguageModel(vocab, embed_size=6, hidden_size=6, num_layers=1, cell="gru")
    hist = rustrnn.train(model, TEXT, batch_size=2, bptt=5, max_steps=3, progress=False)
    assert hist.steps == [1, 2, 3]
    model.save(tmp_path / "w.safetensors")
    back = LanguageModel.load(tmp_path / "w.safetensors")
    assert back.vocab == vocab and back.vocab.level == "word"
    for k, v in model.state_dict().items():
        assert torch.equal(back.state_dict()[k], v)
