"""Runs the ranks of a data-parallel test (tests/dist_train_worker.py), each in its own
process on 127.0.0.1, and reads back what each rank saved."""

import os
import socket
import subprocess
import sys

from safetensors.torch import load_file

HERE = os.path.dirname(os.path.abspath(__file__))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def run_ranks(world: int, out, backend: str = "gloo", timeout: float = 300):
    """Each rank's saved tensors (``rank{r}.safetensors`` under ``out``), in rank order;
    a rank that fails fails the test with its output."""
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=HERE + os.pathsep + os.environ.get("PYTHONPATH", ""))
    worker = os.path.join(HERE, "dist_train_worker.py")
    procs = [
        subprocess.Popen(
            [sys.executable, worker, str(r), str(world), port, str(out), backend],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for r in range(world)
    ]
    for p in procs:
        text, _ = p.communicate(timeout=timeout)
        assert p.returncode == 0, text
    return [load_file(os.path.join(out, f"rank{r}.safetensors")) for r in range(world)]
