"""The command line: each subcommand end to end on tiny runs, and one-line error exits."""

import hostile_probe
import pytest


def run(*args, cwd=None):
    return hostile_probe.cli(*args, timeout=300, cwd=cwd)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    corpus = d / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog.\n" * 200, encoding="utf-8")
    out = d / "run"
    r = run(
        "train",
        str(corpus),
        "--embed",
        "16",
        "--hidden",
        "32",
        "--layers",
        "1",
        "--bptt",
        "16",
        "--batch-size",
        "4",
        "--max-steps",
        "5",
        "--no-progress",
        "--out",
        str(out),
        "--seed",
        "1",
    )
    assert r.returncode == 0, r.stderr
    return corpus, out, r


def test_train_saves_a_model_and_prints_both_continuations(trained):
    _, out, r = trained
    assert (out / "model.safetensors").is_file()
    assert "greedy" in r.stdout and "sampled" in r.stdout
    assert "validation perplexity" in r.stdout


def test_generate_from_the_checkpoint(trained):
    _, out, _ = trained
    ckpt = str(out / "model.safetensors")
    r = run("generate", ckpt, "--prompt", "the ", "--max-tokens", "20", "--greedy")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("the ")
    a = run("generate", ckpt, "--prompt", "the ", "--max-tokens", "30", "--seed", "3")
    b = run("generate", ckpt, "--prompt", "the ", "--max-tokens", "30", "--seed", "3")
    assert a.returncode == 0 and a.stdout == b.stdout
    r = run("generate", ckpt, "--max-tokens", "10", "--num-samples", "3", "--top-k", "5")
    assert r.returncode == 0, r.stderr


def test_perplexity_of_a_file(trained):
    corpus, out, _ = trained
    r = run("perplexity", str(out / "model.safetensors"), str(corpus))
    assert r.returncode == 0, r.stderr
    assert 1.0 <= float(r.stdout.strip()) < 100.0


def test_default_corpus_runs_with_a_tiny_step_count(tmp_path):
    r = run(
        "train",
        "--embed",
        "8",
        "--hidden",
        "16",
        "--layers",
        "1",
        "--bptt",
        "8",
        "--batch-size",
        "4",
        "--max-steps",
        "2",
        "--no-progress",
        "--out",
        str(tmp_path / "d"),
    )
    assert r.returncode == 0, r.stderr
    assert "pydoc" in r.stderr or "characters" in r.stderr


def one_line_error(r):
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    return lines[0]


def test_error_exits_are_one_line(tmp_path):
    line = one_line_error(run("train", str(tmp_path / "missing.txt"), "--max-steps", "1"))
    assert "missing.txt" in line
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint at all")
    assert "bad.safetensors" in one_line_error(run("generate", str(bad)))
    assert "nope" in one_line_error(run("generate", str(tmp_path / "nope.safetensors")))
    assert "--lr" in one_line_error(run("train", "--lr", "-1"))
    assert "--cell" in one_line_error(run("train", "--cell", "transformer"))
    assert "invalid choice" in one_line_error(run("frobnicate"))


def test_train_on_cuda_without_cuda_is_a_one_line_error(tmp_path):
    """``--device cuda`` where CUDA is absent: one line naming the device, status 2, and
    nothing trained. An empty CUDA_VISIBLE_DEVICES hides any GPU, so this runs on every
    machine (the GPU run itself is tests/test_cuda.py's)."""
    out = tmp_path / "out"
    for device in ("cuda", "cuda:0"):
        r = hostile_probe.cli(
            "train",
            "--device",
            device,
            "--max-steps",
            "1",
            "--no-progress",
            "--out",
            str(out),
            timeout=300,
            env={"CUDA_VISIBLE_DEVICES": ""},
        )
        assert r.returncode == 2
        line = one_line_error(r)
        assert f"--device {device}" in line and "CUDA is not available" in line, line
        assert not out.exists()


@pytest.mark.parametrize("extra, method", [((), "nt_asgd"), (("--optimizer", "sgd"), "sgd")])
def test_train_with_the_awd_recipe(tmp_path, extra, method):
    """--recipe awd sets AWD-LSTM's options (the run's record says nt_asgd with variable
    windows); a flag given explicitly overrides its recipe value."""
    import json

    from safetensors import safe_open

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog.\n" * 200, encoding="utf-8")
    out = tmp_path / "run"
    args = ["train", str(corpus), "--recipe", "awd", "--embed", "8", "--hidden", "16"]
    args += ["--bptt", "12", "--batch-size", "4", "--max-steps", "3", "--lr", "1"]
    r = run(*args, *extra, "--no-progress", "--out", str(out))
    assert r.returncode == 0, r.stderr
    with safe_open(str(out / "last.safetensors"), "pt") as f:
        progress = json.loads(f.metadata()["training"])
    assert progress["method"] == method
    assert progress["variable_bptt"] is True and progress["bptt"] == 12
