"""``rustrnn train`` under torchrun: the processes join one process group (gloo on the
CPU here; NCCL on GPUs, tests/test_cuda.py), train in step, and rank 0 alone claims
``--out``, writes the model and prints."""

import os
import socket
import subprocess
import sys

import pytest
import torch
from rustrnn import checkpoint


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed missing")
def test_two_processes_train_one_model(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog.\n" * 200, encoding="utf-8")
    out = tmp_path / "run"
    args = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2"]
    args += ["--master-addr", "127.0.0.1", "--master-port", _free_port(), "-m", "rustrnn"]
    args += ["train", str(corpus), "--embed", "8", "--hidden", "16", "--layers", "2"]
    args += ["--bptt", "8", "--batch-size", "2", "--max-steps", "4", "--eval-every", "2"]
    args += ["--no-progress", "--out", str(out), "--seed", "3"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(args, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    # Rank 0 alone reports (a second rank would print its own line) and writes.
    assert done.stdout.count("validation perplexity") == 1, done.stdout
    saved = checkpoint.read(out / "model.safetensors")
    assert saved.config["hidden_size"] == 16
    assert (out / "last.safetensors").is_file()
