"""Hostile training inputs: wrong gradient dtypes, directories and float ids as data,
learning rates that spoil the weights, doctored resume state, callbacks that replace
Parameters, non-finite options, checkpoint directories of other runs, and the CLI's
promise of one-line errors with status 2.

Probes whose failure today is a panic, an abort or a hang run in a subprocess with a
timeout."""

import copy
import json
import math
import os
import re

import hostile_probe
import pytest
import rustrnn
import torch
from lm_helpers import TEXT, tiny_lm
from safetensors import safe_open
from safetensors.torch import save_file

TIMEOUT = 120
KW = {"batch_size": 2, "bptt": 8, "progress": False}


def probe(code: str, memory_gb: int | None = None):
    return hostile_probe.probe(code, timeout=TIMEOUT, memory_gb=memory_gb)


def cli(*args, cwd=None, memory_gb: int | None = None):
    return hostile_probe.cli(*args, timeout=TIMEOUT, cwd=cwd, memory_gb=memory_gb)


def one_line_error(r):
    assert r.returncode == 2, (r.returncode, r.stdout[-500:], r.stderr[-2000:])
    assert "Traceback" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    return lines[0]


def _finite(model):
    return all(torch.isfinite(p).all() for p in model.parameters())


# ------------------------------------------------------------------ the optimizer


def test_a_gradient_of_another_dtype_is_an_error_and_the_optimizer_lives_on():
    r = probe(
        """
        p = torch.zeros(3)
        opt = rustrnn._rustrnn.Optimizer("adam", [p], 0.1)
        try:
            opt.step([torch.ones(3, dtype=torch.float64)])
        except RuntimeError as e:
            print("RuntimeError:", e)
        assert torch.equal(p, torch.zeros(3)), p  # nothing was changed
        opt.step([torch.ones(3)])
        print("after", p.tolist())
        """
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "RuntimeError:" in r.stdout and "float64" in r.stdout and "float32" in r.stdout
    after = json.loads(r.stdout.split("after", 1)[1].strip())
    ref = torch.zeros(3, requires_grad=True)
    torch_opt = torch.optim.Adam([ref], lr=0.1)
    ref.grad = torch.ones(3)
    torch_opt.step()
    assert after == pytest.approx(ref.detach().tolist())


# ------------------------------------------------------------------------- data


def test_a_directory_as_data_is_is_a_directory_error(tmp_path):
    model = tiny_lm()
    for path in (str(tmp_path) + "/", str(tmp_path), tmp_path):
        with pytest.raises(IsADirectoryError):
            rustrnn.train(model, path, **KW)
    with pytest.raises(IsADirectoryError):
        rustrnn.train(model, TEXT, str(tmp_path) + "/", **KW)


def _embedding_error(ids):
    """What torch.nn.Embedding raises for these ids."""
    with pytest.raises(Exception) as err:
        torch.nn.Embedding(10, 3)(torch.as_tensor(ids))
    return type(err.value), str(err.value)


@pytest.mark.parametrize(
    "ids",
    [
        [1.5, 2.0, 3.0] * 20,
        torch.tensor([1.0, 2.0, 3.0] * 20),
        torch.tensor([1, 2, 3] * 20, dtype=torch.float64),
        [True, False] * 30,
    ],
    ids=["float list", "float32 tensor", "float64 tensor", "bool list"],
)
def test_float_ids_raise_as_embedding_does(ids):
    cls, message = _embedding_error(ids)
    model = tiny_lm()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(cls) as err:
        rustrnn.train(model, ids, max_steps=1, **KW)
    assert str(err.value) == message
    with pytest.raises(cls) as err:
        model.log_prob(ids[:5])
    assert str(err.value) == message
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_int32_ids_are_taken_as_embedding_takes_them():
    model = tiny_lm()
    twin = copy.deepcopy(model)
    ids = model.vocab.encode(TEXT)
    a = rustrnn.train(model, ids, max_steps=2, seed=0, **KW)
    b = rustrnn.train(twin, ids.to(torch.int32), max_steps=2, seed=0, **KW)
    assert a.losses == b.losses


# ------------------------------------------------------- updates that spoil weights


def test_an_update_that_makes_weights_non_finite_says_so():
    model = tiny_lm(dtype=torch.float32)
    with pytest.raises(FloatingPointError) as err:
        rustrnn.train(model, TEXT, max_steps=5, lr=1e300, **KW)
    message = str(err.value)
    assert "before updating" not in message
    assert "update of step 1" in message and "non-finite" in message
    assert not _finite(model)  # as the message says
    assert err.value.history.stop_reason == "non_finite"


def _doctored(src, dst, **fields):
    with safe_open(src, "pt") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    state = json.loads(meta["training"])
    state.update(fields)
    meta["training"] = json.dumps(state)
    save_file(tensors, dst, metadata=meta)


@pytest.mark.parametrize(
    "field,value", [("optimizer_steps", -1), ("step", -3), ("lr", -1.0), ("optimizer_steps", 99)]
)
def test_a_resumed_checkpoint_with_a_bad_training_state_is_refused(tmp_path, field, value):
    model = tiny_lm()
    rustrnn.train(model, TEXT, max_steps=2, checkpoint_dir=tmp_path, **KW)
    last = tmp_path / "last.safetensors"
    _doctored(last, last, **{field: value})
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=field) as err:
        rustrnn.train(model, TEXT, max_steps=4, checkpoint_dir=tmp_path, resume=True, **KW)
    assert "last.safetensors" in str(err.value)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


# -------------------------------------------------------------------- callbacks


def test_a_callback_that_replaces_a_parameter_is_caught():
    model = tiny_lm()

    def callback(step, m):
        if step == 2:
            model.head.weight = torch.nn.Parameter(torch.zeros_like(model.head.weight))

    with pytest.raises(RuntimeError, match=r"replaced the model's Parameter 'head\.weight'") as e:
        rustrnn.train(model, TEXT, max_steps=5, callback=callback, **KW)
    assert e.value.history.steps == [1, 2]


def test_a_callback_changing_parameters_in_place_is_fine():
    model = tiny_lm()

    def callback(step, m):
        with torch.no_grad():
            model.head.bias.zero_()

    hist = rustrnn.train(model, TEXT, max_steps=3, callback=callback, **KW)
    assert hist.steps == [1, 2, 3]


# ---------------------------------------------------------------------- options


@pytest.mark.parametrize(
    "option,value",
    [
        ("lr", math.nan),
        ("lr", math.inf),
        ("lr_decay", math.nan),
        ("clip", math.nan),
        ("time_budget", math.nan),
        ("weight_decay", math.inf),
        ("momentum", math.nan),
    ],
)
def test_non_finite_options_are_named(option, value):
    kw = {**KW, "max_steps": 1, option: value}
    if option == "momentum":
        kw["optimizer"] = "sgd"
    with pytest.raises(ValueError) as err:
        rustrnn.train(tiny_lm(), TEXT, **kw)
    message = str(err.value)
    assert "expected value at line" not in message
    names = {"lr": "learning rate", "weight_decay": "weight_decay", "momentum": "momentum"}
    assert names.get(option, option) in message
    assert ("nan" if math.isnan(value) else "inf") in message


@pytest.mark.parametrize("option", ["clip", "time_budget"])
def test_infinite_clip_and_time_budget_mean_no_limit(option):
    a = rustrnn.train(tiny_lm(), TEXT, max_steps=3, seed=0, **{**KW, option: math.inf})
    b = rustrnn.train(tiny_lm(), TEXT, max_steps=3, seed=0, **{**KW, option: None})
    assert a.losses == b.losses and a.stop_reason == "max_steps"


def test_the_progress_bar_follows_the_time_budget(capsys):
    hist = rustrnn.train(tiny_lm(), TEXT, **{**KW, "progress": True}, epochs=10**6, time_budget=1.5)
    assert hist.stop_reason == "time_budget"
    err = capsys.readouterr().err
    counts = re.findall(r"\| (\d+)/(\d+) \[", err)
    assert counts, err[-1000:]
    done, total = map(int, counts[-1])
    assert done == total == len(hist.steps)


# ------------------------------------------------------------ checkpoint dirs


def test_a_fresh_run_never_replaces_another_runs_checkpoints(tmp_path):
    first = tiny_lm()
    rustrnn.train(first, TEXT, TEXT[:200], max_steps=2, eval_every=1, checkpoint_dir=tmp_path, **KW)
    best = (tmp_path / "best.safetensors").read_bytes()
    last = (tmp_path / "last.safetensors").read_bytes()
    with pytest.raises(FileExistsError, match="best.safetensors") as err:
        rustrnn.train(tiny_lm(), TEXT, TEXT[:200], max_steps=2, checkpoint_dir=tmp_path, **KW)
    assert "resume" in str(err.value) and "overwrite" in str(err.value)
    assert (tmp_path / "best.safetensors").read_bytes() == best
    assert (tmp_path / "last.safetensors").read_bytes() == last
    # resume=True continues the run.
    hist = rustrnn.train(
        tiny_lm(), TEXT, TEXT[:200], max_steps=3, checkpoint_dir=tmp_path, resume=True, **KW
    )
    assert hist.steps == [1, 2, 3]
    # overwrite=True starts afresh; the replaced run's best does not outlive it.
    hist = rustrnn.train(
        tiny_lm(), TEXT, max_steps=1, checkpoint_dir=tmp_path, overwrite=True, **KW
    )
    assert hist.steps == [1]
    assert sorted(os.listdir(tmp_path)) == ["last.safetensors"]


def test_a_checkpoint_dir_that_is_a_file_is_refused_before_training(tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    steps = []
    with pytest.raises(NotADirectoryError):
        rustrnn.train(
            tiny_lm(),
            TEXT,
            max_steps=2,
            checkpoint_dir=path,
            callback=lambda s, m: steps.append(s),
            **KW,
        )
    assert steps == []


# -------------------------------------------------------------------------- CLI

TINY = ["--embed", "8", "--hidden", "8", "--layers", "1", "--no-progress", "--max-steps", "1"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    (d / "text.txt").write_text("the quick brown fox jumps over the lazy dog.\n" * 30)
    (d / "empty.txt").write_text("")
    (d / "tiny.txt").write_text("abc")
    (d / "afile").write_text("not a directory")
    return d


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--lr", "inf"], "--lr"),
        (["--lr", "nan"], "--lr"),
        (["--clip", "0"], "--clip"),
        (["--clip", "nan"], "--clip"),
        (["--device", "meta"], "meta"),
        (["--device", "nonsense"], "--device"),
        (["--seed", str(2**70)], "--seed"),
        (["--batch-size", "100000"], "--batch-size"),
        (["--out", "{corpus}/afile"], "not a directory"),
        (["--out", "/proc/rustrnn-cannot-be-made"], "/proc/rustrnn-cannot-be-made"),
        (["--layers", "1000000000"], "--layers 1000000000"),
    ],
)
def test_cli_mistakes_are_one_line_with_status_2(corpus, tmp_path, args, needle):
    args = [a.format(corpus=corpus) for a in args]
    out = [] if "--out" in args else ["--out", str(tmp_path / "out")]
    r = cli("train", str(corpus / "text.txt"), *TINY, *out, *args, memory_gb=6)
    assert needle in one_line_error(r)


@pytest.mark.parametrize("name,needle", [("empty.txt", "empty"), ("tiny.txt", "too few")])
def test_cli_a_corpus_too_small_is_one_line(corpus, tmp_path, name, needle):
    r = cli("train", str(corpus / name), *TINY, "--out", str(tmp_path / "out"))
    assert needle in one_line_error(r)


@pytest.mark.parametrize("args", [["--clip", "inf"], ["--time-budget", "inf"]])
def test_cli_inf_means_no_limit(corpus, tmp_path, args):
    r = cli("train", str(corpus / "text.txt"), *TINY, "--out", str(tmp_path / "out"), *args)
    assert r.returncode == 0, r.stderr[-2000:]


def test_cli_a_second_run_into_the_same_out_needs_resume_or_overwrite(corpus, tmp_path):
    out = tmp_path / "runs" / "default"
    args = ["train", str(corpus / "text.txt"), *TINY]
    r = cli(*args, cwd=tmp_path)  # the default --out, runs/default
    assert r.returncode == 0, r.stderr[-2000:]
    model = (out / "model.safetensors").read_bytes()
    line = one_line_error(cli(*args, cwd=tmp_path))
    assert "--resume" in line and "--overwrite" in line and "runs/default" in line
    assert (out / "model.safetensors").read_bytes() == model
    r = cli(*args, "--overwrite", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    r = cli(*args[:-1], "2", "--resume", cwd=tmp_path)  # --max-steps 2: one more step
    assert r.returncode == 0, r.stderr[-2000:]
    assert "after 2 steps" in r.stdout
