"""LanguageModel.save / load: the safetensors file, its validation and atomic writes."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import rustrnn  # noqa: F401
import torch
from lm_helpers import plain_copy, tiny_lm
from rustrnn.lm import LanguageModel
from safetensors import safe_open
from safetensors.torch import load_file, save_file


def _same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert sa[k].dtype == sb[k].dtype, k
        assert torch.equal(sa[k], sb[k]), k


@pytest.mark.parametrize(
    "cell,tie,dtype",
    [
        ("lstm", False, torch.float32),
        ("gru", True, torch.float64),
        ("rnn_tanh", False, torch.float64),
        ("lstm", "projected", torch.float32),
    ],
)
def test_round_trip(tmp_path, cell, tie, dtype):
    model = tiny_lm(cell, tie=tie, dropout=0.3, dtype=dtype)
    path = tmp_path / "m.safetensors"
    model.save(path)
    back = LanguageModel.load(path)
    assert back.config == model.config
    assert back.vocab.tokens() == model.vocab.tokens()
    assert back.vocab.level == model.vocab.level
    _same_state(model, back)
    assert not back.training
    if tie:
        assert back.head.weight is back.embedding.weight
    ids = model.vocab.encode("the quick fox").unsqueeze(1)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(back(ids)[0], model(ids)[0], rtol=0, atol=0)


def test_load_leaves_the_global_rng_alone(tmp_path):
    path = tmp_path / "m.safetensors"
    tiny_lm().save(path)
    before = torch.get_rng_state()
    LanguageModel.load(str(path))
    assert torch.equal(before, torch.get_rng_state())


@pytest.mark.parametrize("cell, tie", [("lstm", False), ("gru", False), ("lstm", "projected")])
def test_plain_torch_loads_the_file(tmp_path, cell, tie):
    model = tiny_lm(cell, tie=tie).eval()
    path = tmp_path / "m.safetensors"
    model.save(path)
    tensors = load_file(path)
    assert list(tensors) == sorted(model.state_dict())  # safetensors sorts names
    ref = plain_copy(model)
    for p in ref.parameters():
        torch.nn.init.zeros_(p)
    ref.load_state_dict(tensors, strict=True)
    ids = torch.randint(len(model.vocab), (9, 3))
    with torch.no_grad():
        torch.testing.assert_close(ref(ids)[0], model(ids)[0], rtol=1e-12, atol=1e-12)
    with safe_open(path, "pt") as f:
        meta = f.metadata()
    assert meta["format"] == "rustrnn.checkpoint"
    assert meta["version"] == "1"
    assert meta["kind"] == "model"
    # A full head's fields are not stored (its config is the JSON it always was).
    full_head = {"head": "full", "cutoffs": None, "div_value": 4.0}
    assert {**json.loads(meta["config"]), **full_head} == model.config


def _rewrite(path, edit):
    """Re-saves `path` with plain safetensors after `edit(tensors, metadata)`."""
    tensors = load_file(path)
    with safe_open(path, "pt") as f:
        meta = dict(f.metadata())
    edit(tensors, meta)
    save_file(tensors, path, metadata=meta)


def _drop(name):
    return lambda t, m: t.pop(name)


def _add(name):
    return lambda t, m: t.__setitem__(name, torch.zeros(3))


def _reshape(name):
    return lambda t, m: t.__setitem__(name, t[name][:-1].clone())


def _retype(name):
    return lambda t, m: t.__setitem__(name, t[name].float())


def _meta(key, value):
    return lambda t, m: m.__setitem__(key, value) if value is not None else m.pop(key)


@pytest.mark.parametrize(
    "edit,needle",
    [
        (_drop("rnn.weight_hh_l1"), "missing tensor 'rnn.weight_hh_l1'"),
        (_add("rnn.weight_ih_l7"), "unexpected tensor 'rnn.weight_ih_l7'"),
        (_reshape("head.bias"), "tensor 'head.bias' has shape"),
        (_retype("embedding.weight"), "tensor 'embedding.weight' has dtype float32"),
        (_meta("format", None), "not a rustrnn checkpoint"),
        (_meta("format", "something.else"), "not a rustrnn checkpoint"),
        (_meta("version", "99"), "unsupported checkpoint version"),
        (_meta("config", "{}"), "invalid model config"),
        (_meta("vocab", "[]"), "invalid vocabulary"),
    ],
)
def test_rejects_a_file_that_does_not_fit(tmp_path, edit, needle):
    path = tmp_path / "m.safetensors"
    tiny_lm(dtype=torch.float64).save(path)
    _rewrite(path, edit)
    with pytest.raises(ValueError) as err:
        LanguageModel.load(path)
    assert needle in str(err.value)
    assert str(path) in str(err.value)


@pytest.mark.parametrize(
    "edit,needle",
    [
        (_drop("projection.weight"), "missing tensor 'projection.weight'"),
        (_reshape("projection.weight"), "tensor 'projection.weight' has shape"),
        (_reshape("head.weight"), "tensor 'head.weight' has shape"),
    ],
)
def test_rejects_a_projected_tie_that_does_not_fit(tmp_path, edit, needle):
    path = tmp_path / "m.safetensors"
    tiny_lm(tie="projected").save(path)
    _rewrite(path, edit)
    with pytest.raises(ValueError) as err:
        LanguageModel.load(path)
    assert needle in str(err.value)


def test_rejects_a_foreign_safetensors_file(tmp_path):
    path = tmp_path / "foreign.safetensors"
    save_file({"weight": torch.zeros(2, 2)}, path)
    with pytest.raises(ValueError, match="not a rustrnn checkpoint") as err:
        LanguageModel.load(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize(
    "content,needle",
    [
        (b"", "empty file"),
        (b"just some text that is long enough", "not a safetensors file"),
        (b"\x10\x00\x00\x00\x00\x00\x00\x00{", "truncated"),
    ],
)
def test_rejects_files_that_are_not_safetensors(tmp_path, content, needle):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=needle) as err:
        LanguageModel.load(path)
    assert str(path) in str(err.value)


def test_rejects_a_truncated_file(tmp_path):
    path = tmp_path / "m.safetensors"
    tiny_lm().save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 10])
    with pytest.raises(ValueError, match="truncated") as err:
        LanguageModel.load(path)
    assert str(path) in str(err.value)


def test_missing_file_is_an_os_error(tmp_path):
    with pytest.raises(OSError):
        LanguageModel.load(tmp_path / "nope.safetensors")


def test_a_failed_write_leaves_the_previous_file_loadable(tmp_path):
    """A write that fails mid-way (the file-size limit is hit) leaves the old checkpoint
    in place, loadable, and no temporary file behind."""
    old = tiny_lm(hidden=5)
    path = tmp_path / "m.safetensors"
    old.save(path)
    limit = os.path.getsize(path) + 4096  # the new, larger model cannot fit
    script = textwrap.dedent(
        f"""
        import resource, signal, sys
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from lm_helpers import tiny_lm
        big = tiny_lm(hidden=300)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
        try:
            big.save({str(path)!r})
        except OSError as e:
            print("OSError", e)
            sys.exit(3)
        sys.exit(0)
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert run.returncode == 3, run.stdout + run.stderr
    assert str(path) in run.stdout
    back = LanguageModel.load(path)
    _same_state(old, back)
    assert sorted(os.listdir(tmp_path)) == ["m.safetensors"]
