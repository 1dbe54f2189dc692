"""Hostile files: FIFOs and devices where a checkpoint or vocabulary should be, a header
that promises a billion layers, saves killed half-way, symbolic links.

Every probe that could hang or abort runs in a subprocess with a timeout (and, where
today's failure is an allocation, a memory limit), so a failure fails the test instead
of taking pytest down.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import hostile_probe
import pytest
import rustrnn
import torch
from lm_helpers import tiny_lm
from safetensors import safe_open
from safetensors.torch import save_file

PROBE_TIMEOUT = 60


def probe(code: str, *args: str, memory_gb: int | None = None, timeout: float = PROBE_TIMEOUT):
    return hostile_probe.probe(code, *args, timeout=timeout, memory_gb=memory_gb)


def cli(*args, timeout=PROBE_TIMEOUT):
    return hostile_probe.cli(*args, timeout=timeout)


def one_line_error(r):
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    return lines[0]


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "model.safetensors"
    os.mkfifo(path)
    return path


LOADS = {
    "LanguageModel.load": "rustrnn.LanguageModel.load(sys.argv[1])",
    "Vocab.load": "rustrnn.Vocab.load(sys.argv[1])",
    "train on a path": (
        "v = rustrnn.Vocab.build('abcabc', level='char')\n"
        "m = rustrnn.LanguageModel(v, embed_size=4, hidden_size=4, num_layers=1)\n"
        "rustrnn.train(m, sys.argv[1], progress=False)"
    ),
}


def _refused(code, path):
    wrapped = f"""
try:
{textwrap.indent(code, "    ")}
except OSError as e:
    print("OSError", type(e).__name__, e)
"""
    # The memory limit: a device like /dev/zero would otherwise be read until it runs out.
    return probe(wrapped, str(path), memory_gb=6)


@pytest.mark.parametrize("what", sorted(LOADS))
def test_a_fifo_is_refused_at_once(fifo, what):
    r = _refused(LOADS[what], fifo)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("OSError"), r.stdout + r.stderr
    assert "FIFO" in r.stdout and str(fifo) in r.stdout


@pytest.mark.parametrize("what", ["LanguageModel.load", "Vocab.load"])
def test_a_character_device_is_refused(what):
    r = _refused(LOADS[what], "/dev/zero")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("OSError") and "character device" in r.stdout, r.stdout


def test_a_directory_is_refused_as_is_a_directory_error(tmp_path):
    with pytest.raises(IsADirectoryError, match=str(tmp_path)):
        rustrnn.LanguageModel.load(tmp_path)
    with pytest.raises(IsADirectoryError, match=str(tmp_path)):
        rustrnn.Vocab.load(tmp_path)


def test_generate_on_a_fifo_is_a_one_line_error(fifo):
    line = one_line_error(cli("generate", str(fifo), "--max-tokens", "3"))
    assert "FIFO" in line and str(fifo) in line


@pytest.mark.parametrize("command", ["perplexity", "score"])
def test_a_fifo_corpus_is_a_one_line_error(tmp_path, command):
    # score streams its files: it opened a FIFO with open() and waited for a writer forever
    model = tiny_lm()
    model.save(tmp_path / "m.safetensors")
    corpus = tmp_path / "corpus.txt"
    os.mkfifo(corpus)
    line = one_line_error(cli(command, str(tmp_path / "m.safetensors"), str(corpus)))
    assert "FIFO" in line


def _with_metadata(src, dst, **changes):
    """A copy of the checkpoint ``src`` whose metadata fields are replaced."""
    with safe_open(src, "pt") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    for key, edit in changes.items():
        meta[key] = edit(meta[key])
    save_file(tensors, dst, metadata=meta)
    return dst


def test_a_header_promising_a_billion_layers_costs_nothing(tmp_path):
    model = tiny_lm(layers=1, embed=4, hidden=4)
    model.save(tmp_path / "m.safetensors")

    def layers(config):
        c = json.loads(config)
        c["num_layers"] = 1_000_000_000
        return json.dumps(c)

    bad = _with_metadata(tmp_path / "m.safetensors", tmp_path / "bad.safetensors", config=layers)
    assert bad.stat().st_size < 20_000
    r = probe(
        """
        try:
            rustrnn.LanguageModel.load(sys.argv[1])
        except ValueError as e:
            print("ValueError", e)
        """,
        str(bad),
        memory_gb=6,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.startswith("ValueError"), r.stdout
    assert "num_layers=1000000000" in r.stdout and "bad.safetensors" in r.stdout


def _temp_files(directory):
    return sorted(n for n in os.listdir(directory) if n.endswith(".tmp"))


def test_saves_killed_half_way_leave_nothing_behind(tmp_path):
    """kill -9 a process in the middle of saving a model, several times: the next save
    (and the next load) removes what the killed save left."""
    target = tmp_path / "model.safetensors"
    saver = textwrap.dedent(
        """
        import sys, torch, rustrnn
        v = rustrnn.Vocab.build("abcdefgh", level="char")
        m = rustrnn.LanguageModel(v, embed_size=64, hidden_size=512, num_layers=4)
        print("ready", flush=True)
        while True:
            m.save(sys.argv[1])
        """
    )
    kills = 0
    for _ in range(4):
        p = subprocess.Popen(
            [sys.executable, "-c", saver, str(target)], stdout=subprocess.PIPE, text=True
        )
        try:
            assert p.stdout.readline().strip() == "ready"
            deadline = time.monotonic() + PROBE_TIMEOUT
            while not _temp_files(tmp_path) and time.monotonic() < deadline:
                time.sleep(0.002)
            p.send_signal(signal.SIGKILL)
            p.wait(timeout=PROBE_TIMEOUT)
            kills += bool(_temp_files(tmp_path))
        finally:
            if p.poll() is None:
                p.kill()
    assert kills >= 1, "no kill landed during a save"
    assert len(_temp_files(tmp_path)) <= 1, _temp_files(tmp_path)
    model = tiny_lm()
    model.save(target)
    assert _temp_files(tmp_path) == []
    # A stray file is removed by a load too.
    (tmp_path / ".model.safetensors.tmp").write_bytes(b"half a checkpoint")
    back = rustrnn.LanguageModel.load(target)
    assert _temp_files(tmp_path) == []
    for k, v in model.state_dict().items():
        assert torch.equal(back.state_dict()[k], v)


def test_saving_to_a_symbolic_link_writes_through_it(tmp_path):
    real_dir = tmp_path / "store"
    real_dir.mkdir()
    real = real_dir / "model.safetensors"
    old, new = tiny_lm(), tiny_lm()
    old.save(real)
    link = tmp_path / "current.safetensors"
    link.symlink_to(os.path.relpath(real, tmp_path))
    new.save(link)
    assert link.is_symlink() and os.readlink(link) == os.path.relpath(real, tmp_path)
    back = rustrnn.LanguageModel.load(real)
    for k, v in new.state_dict().items():
        assert torch.equal(back.state_dict()[k], v)
    assert sorted(os.listdir(real_dir)) == ["model.safetensors"]
    # The vocabulary's save shares the rule.
    vocab_link = tmp_path / "vocab.json"
    vocab_link.symlink_to(real_dir / "vocab.json")  # dangling: the save creates the target
    new.vocab.save(vocab_link)
    assert vocab_link.is_symlink() and (real_dir / "vocab.json").is_file()
    assert rustrnn.Vocab.load(vocab_link).tokens() == new.vocab.tokens()


def test_generate_falls_back_from_a_corrupt_best_to_last(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    model = tiny_lm(dtype=torch.float32)
    model.save(run / "last.safetensors")
    (run / "best.safetensors").write_bytes(b"\0" * 100)
    r = cli("generate", str(run), "--prompt", "the ", "--max-tokens", "5", "--greedy")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("the ")
    warning = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(warning) == 1 and "warning" in warning[0]
    assert "best.safetensors" in warning[0] and "last.safetensors" in warning[0]
    # With nothing to fall back on, the one-line error names the bad file.
    (run / "last.safetensors").unlink()
    assert "best.safetensors" in one_line_error(cli("generate", str(run)))
