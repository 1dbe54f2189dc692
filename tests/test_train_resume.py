"""Training checkpoints (last/best) and resume: an interrupted-and-resumed run
reproduces the uninterrupted run's losses and weights exactly."""

import pytest
import rustrnn
import torch
from lm_helpers import TEXT, tiny_lm
from rustrnn.lm import LanguageModel
from safetensors import safe_open

VALID = TEXT[:150]
KW = {"batch_size": 3, "bptt": 16, "eval_every": 2, "progress": False, "lr": 0.01}


def _run(model, ckpt, **kw):
    return rustrnn.train(model, TEXT, VALID, checkpoint_dir=ckpt, **{**KW, **kw})


def _fresh(seed):
    torch.manual_seed(seed)
    return tiny_lm("lstm", dropout=0.3)  # dropout on embeddings, between layers, before the head


@pytest.mark.parametrize("optimizer,kw", [("adam", {}), ("sgd", {"momentum": 0.9})])
def test_resume_reproduces_an_uninterrupted_run(tmp_path, optimizer, kw):
    # An epoch is 14 windows at this size: stop mid-epoch at step 10, then resume across
    # the epoch boundary to step 16.
    a = _fresh(0)
    full = _run(a, tmp_path / "a", seed=7, epochs=2, max_steps=16, optimizer=optimizer, **kw)
    b = _fresh(0)
    first = _run(b, tmp_path / "b", seed=7, epochs=2, max_steps=10, optimizer=optimizer, **kw)
    assert first.stop_reason == "max_steps"
    c = _fresh(99)  # a different initialisation: resuming must restore the weights
    torch.manual_seed(12345)  # and the RNG
    rest = _run(c, tmp_path / "b", epochs=2, max_steps=16, resume=True, optimizer=optimizer, **kw)
    assert rest.steps == full.steps
    assert rest.losses == full.losses  # exactly
    assert rest.lrs == full.lrs
    assert rest.eval_steps == full.eval_steps and rest.valid_ppls == full.valid_ppls
    assert rest.epochs == full.epochs and 1 in rest.epochs
    for k, v in a.state_dict().items():
        assert torch.equal(c.state_dict()[k], v), k


@pytest.mark.parametrize(
    "event,at",
    # after step 4 an evaluation is due; step 14 ends the first epoch
    [("step", 4), ("step", 5), ("step", 14), ("eval", 4), ("eval", 14)],
)
def test_resume_after_keyboard_interrupt(tmp_path, event, at):
    a = _fresh(1)
    full = _run(a, tmp_path / "a", seed=3, max_steps=16, epochs=2)

    def stop(step, m):
        if m["event"] == event and step == at:
            raise KeyboardInterrupt

    b = _fresh(1)
    with pytest.raises(KeyboardInterrupt):
        _run(b, tmp_path / "b", seed=3, max_steps=16, epochs=2, callback=stop)
    c = _fresh(2)
    rest = _run(c, tmp_path / "b", max_steps=16, epochs=2, resume=True)
    assert rest.losses == full.losses
    assert rest.eval_steps == full.eval_steps and rest.valid_ppls == full.valid_ppls
    assert rest.lrs == full.lrs
    assert rest.stop_reason == "max_steps"
    for k, v in a.state_dict().items():
        assert torch.equal(c.state_dict()[k], v), k


def test_training_checkpoint_contents(tmp_path):
    model = _fresh(0)
    hist = _run(model, tmp_path, max_steps=3, seed=0)
    path = tmp_path / "last.safetensors"
    with safe_open(path, "pt") as f:
        meta = f.metadata()
        names = set(f.keys())
        rng = f.get_tensor("rng.cpu")
    assert meta["format"] == "rustrnn.checkpoint" and meta["kind"] == "training"
    params = set(model.state_dict())
    assert params <= names
    for p in params:
        assert f"optimizer.exp_avg.{p}" in names and f"optimizer.exp_avg_sq.{p}" in names
    assert {"state.h", "state.c"} <= names  # mid-epoch: the carried state
    assert rng.dtype == torch.uint8 and torch.equal(rng, torch.get_rng_state())
    import json

    training = json.loads(meta["training"])
    assert training["step"] == 3 and training["position"] == 3 and training["epoch"] == 0
    assert training["history"]["losses"] == hist.losses
    # Both files load as models.
    LanguageModel.load(path)
    LanguageModel.load(tmp_path / "best.safetensors")


def test_best_checkpoint_holds_the_best_model(tmp_path):
    model = _fresh(0)
    hist = _run(model, tmp_path, max_steps=8, lr=0.05)
    best = LanguageModel.load(tmp_path / "best.safetensors")
    ppl = rustrnn.evaluate(best, VALID, batch_size=3, bptt=16)
    assert ppl == pytest.approx(hist.best_valid_ppl, rel=1e-12)
    assert hist.best_valid_ppl == min(hist.valid_ppls)


def test_resume_without_a_checkpoint_starts_afresh(tmp_path):
    a, b = _fresh(0), _fresh(0)
    h1 = _run(a, tmp_path / "x", seed=1, max_steps=3, resume=True)
    h2 = _run(b, None, seed=1, max_steps=3)
    assert h1.losses == h2.losses
    with pytest.raises(ValueError, match="checkpoint_dir"):
        rustrnn.train(a, TEXT, resume=True, progress=False)


@pytest.mark.parametrize(
    "change,needle",
    [
        ({"batch_size": 2}, "batch_size"),
        ({"optimizer": "sgd"}, "optimizer"),
        ({"model": {"hidden": 5}}, "model config"),
    ],
)
def test_resume_refuses_a_different_run(tmp_path, change, needle):
    _run(_fresh(0), tmp_path, max_steps=2)
    model = tiny_lm("lstm", dropout=0.3, **change.pop("model", {}))
    with pytest.raises(ValueError, match=needle) as err:
        _run(model, tmp_path, max_steps=4, resume=True, **change)
    assert "last.safetensors" in str(err.value)


def test_resume_refuses_a_model_checkpoint(tmp_path):
    model = _fresh(0)
    model.save(tmp_path / "last.safetensors")
    with pytest.raises(ValueError, match="not a training checkpoint"):
        _run(model, tmp_path, max_steps=2, resume=True)
