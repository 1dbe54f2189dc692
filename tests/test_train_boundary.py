"""The boundary between rustrnn.train and the Rust core: the model crosses as one handle
(its config, Vocab and Parameters by name), the options as typed values (a wrong type is
a TypeError naming the option, where torch refuses the same value), and the History comes
back field by field from the Rust struct, with the stop reason the core recorded."""

import dataclasses
import fractions
import json
import math
import operator
import typing

import pytest
import rustrnn
import torch
from lm_helpers import TEXT, tiny_lm
from rustrnn import _rustrnn, training
from rustrnn.training import History, StopReason
from safetensors import safe_open

KW = {"batch_size": 2, "bptt": 8, "progress": False}
INT_OPTIONS = ["batch_size", "bptt", "epochs", "max_steps", "patience", "eval_every", "nonmono"]
FLOAT_OPTIONS = ["time_budget", "lr", "weight_decay", "momentum", "clip", "lr_decay"]
FLOAT_OPTIONS += ["weight_drop", "dropout_input", "dropout_hidden", "dropout_output"]
FLOAT_OPTIONS += ["dropout_embedding", "alpha", "beta"]


def _train(**kw):
    return rustrnn.train(tiny_lm(), TEXT, TEXT[:200], **{**KW, "max_steps": 2, **kw})


# ---------------------------------------------------------------------- options


@pytest.mark.parametrize("value", [2.0, "2", [2], 1j])
@pytest.mark.parametrize("option", INT_OPTIONS)
def test_an_integer_option_of_another_type_is_a_type_error_naming_it(option, value):
    with pytest.raises(TypeError):
        operator.index(value)  # the rule torch applies to counts and sizes
    with pytest.raises(
        TypeError, match=rf"^{option} must be an integer, got {type(value).__name__}$"
    ):
        _train(**{option: value})


@pytest.mark.parametrize("option", INT_OPTIONS)
def test_a_bool_is_not_taken_for_an_integer_option(option):
    with pytest.raises(TypeError, match=rf"^{option} must be an integer, got True$"):
        _train(**{option: True})


@pytest.mark.parametrize("value", ["0.5", [0.5], object()])
@pytest.mark.parametrize("option", FLOAT_OPTIONS)
def test_a_float_option_of_another_type_is_a_type_error_naming_it(option, value):
    with pytest.raises(TypeError):
        torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=value)  # torch refuses it too
    with pytest.raises(
        TypeError, match=rf"^{option} must be a number, got {type(value).__name__}$"
    ):
        _train(**{option: value, "optimizer": "sgd"})


@pytest.mark.parametrize(
    "option,value,message",
    [
        ("optimizer", 1, "optimizer must be a str, got int"),
        ("checkpoint_dir", 3, "checkpoint_dir must be a str or os.PathLike, got int"),
    ],
)
def test_other_options_of_another_type_are_type_errors_naming_them(option, value, message):
    with pytest.raises(TypeError, match=f"^{message}$"):
        _train(**{option: value})


def test_values_past_the_cores_types_are_value_errors_naming_the_option():
    with pytest.raises(ValueError, match=rf"^batch_size must fit in 64 bits, got {2**63}$"):
        _train(batch_size=2**63)
    with pytest.raises(ValueError, match="^lr does not fit in a float"):
        _train(lr=10**400)
    with pytest.raises(ValueError, match="unknown optimizer 'lbfgs'"):
        _train(optimizer="lbfgs")


def test_numbers_of_other_types_train_as_the_plain_ones():
    torch.manual_seed(0)
    plain = _train(batch_size=2, max_steps=3, lr=0.5, clip=0.25, optimizer="sgd")
    torch.manual_seed(0)
    other = _train(
        batch_size=torch.tensor(2),
        max_steps=torch.tensor(3),
        lr=torch.tensor(0.5),
        clip=fractions.Fraction(1, 4),
        optimizer="SGD",
    )
    for name in ("steps", "losses", "lrs", "grad_norms", "stop_reason"):
        assert getattr(other, name) == getattr(plain, name), name


# ------------------------------------------------------------------ the handle


class _Duck:
    """Not a LanguageModel, but with what the Rust core reads of one."""

    def __init__(self, model):
        self.config, self.vocab, self._model = model.config, model.vocab, model

    def state_dict(self, keep_vars=False):
        return self._model.state_dict(keep_vars=keep_vars)


def test_the_model_crosses_as_one_duck_typed_handle():
    model = tiny_lm()
    ids = model.vocab.encode(TEXT)
    want = rustrnn.evaluate(model, ids, batch_size=2, bptt=8)
    assert _rustrnn.evaluate_lm(_Duck(model), ids, 2, 8) == want
    for wrong, needle in [
        (model.config, "got dict"),
        (object(), "got object"),
        (model.embedding, "got Embedding"),
    ]:
        with pytest.raises(TypeError, match=f"expected a rustrnn.LanguageModel.*{needle}"):
            _rustrnn.evaluate_lm(wrong, ids, 2, 8)
    duck = _Duck(model)
    duck.vocab = "abc"
    with pytest.raises(TypeError, match="vocab must be a rustrnn.Vocab, got str"):
        _rustrnn.evaluate_lm(duck, ids, 2, 8)


def test_training_through_the_handle_updates_the_parameters_in_place():
    model = tiny_lm()
    params = dict(model.named_parameters())
    before = {k: p.detach().clone() for k, p in params.items()}
    rustrnn.train(model, TEXT, max_steps=2, **KW)
    assert all(p is params[k] for k, p in model.named_parameters())  # not replaced
    assert all(not torch.equal(p, before[k]) for k, p in params.items())


# --------------------------------------------------------------------- History


def test_the_history_has_the_rust_structs_fields(tmp_path):
    names = [f.name for f in dataclasses.fields(History)]
    assert names == list(_rustrnn.HISTORY_FIELDS)
    hist = _train(max_steps=3, eval_every=2, checkpoint_dir=tmp_path)
    with safe_open(tmp_path / "last.safetensors", "pt") as f:
        stored = json.loads(f.metadata()["training"])["history"]
    # serde's names for the same struct; averaged_from is written only once NT-ASGD
    # averages, so other runs' records are as they were before it existed
    assert list(stored) == [n for n in names if n != "averaged_from"]
    assert History.from_json(json.dumps(stored)) == hist


def test_the_documented_stop_reasons_are_the_cores():
    assert typing.get_args(StopReason) == _rustrnn.STOP_REASONS
    for reason in _rustrnn.STOP_REASONS:
        assert f'``"{reason}"``' in History.__doc__


@pytest.mark.parametrize(
    "limits,reason",
    [
        ({"epochs": 1}, "epochs"),
        ({"epochs": 50, "max_steps": 3}, "max_steps"),
        ({"epochs": 10**6, "time_budget": 0.3}, "time_budget"),
    ],
)
def test_the_stop_reason_of_a_finished_run_reaches_the_history(monkeypatch, limits, reason):
    finished = []
    monkeypatch.setattr(training._Hooks, "finish", lambda self, r: finished.append(r))
    model = tiny_lm()
    ids = model.vocab.encode(TEXT)
    seen = []
    hist = rustrnn.train(model, ids, callback=lambda step, m: seen.append(step), **KW, **limits)
    assert hist.stop_reason == reason and finished == [reason]
    assert hist.steps == seen
    per_epoch = math.ceil((ids.numel() // 2 - 1) / 8)
    if reason == "epochs":
        assert len(seen) == per_epoch
    elif reason == "max_steps":
        assert seen == [1, 2, 3]
    else:
        assert seen  # the budget is checked before each step: the first one ran


def test_a_callbacks_exception_is_an_interrupted_run():
    def callback(step, m):
        if step == 2:
            raise LookupError("enough")

    with pytest.raises(LookupError, match="enough") as err:
        rustrnn.train(tiny_lm(), TEXT, max_steps=5, callback=callback, **KW)
    assert err.value.history.stop_reason == "interrupted"
    assert err.value.history.steps == [1, 2]


def test_a_run_refused_before_its_first_step_records_an_error(tmp_path):
    (tmp_path / "best.safetensors").write_bytes(b"another run's")
    with pytest.raises(FileExistsError) as err:
        _train(checkpoint_dir=tmp_path)
    assert err.value.history == History(stop_reason="error")
