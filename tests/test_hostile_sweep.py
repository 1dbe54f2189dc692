"""Every public function and method (and command line) under the hostile-input sweep of
``tests/hostile_sweep.py``: one interpreter per group, under a timeout and a 6 GB
address-space limit, so a signal, an abort, a PanicException, a size allocated instead of
refused or a hang fails here, naming the probe."""

import os
import subprocess
import sys

import pytest

SWEEP = os.path.join(os.path.dirname(__file__), "hostile_sweep.py")
GROUPS = [
    "stacks",
    "cells",
    "sampler",
    "vocab",
    "lm",
    "train",
    "ngram",
    "vectors",
    "extension",
    "cli",
]
TIMEOUT = 600


def _limit():  # pragma: no cover - runs in the child
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))


@pytest.mark.parametrize("group", GROUPS)
def test_no_probe_kills_panics_or_hangs(group, tmp_path):
    log = tmp_path / "sweep.log"
    with open(log, "w+b") as out:
        try:
            r = subprocess.run(
                [sys.executable, SWEEP, group],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=TIMEOUT,
                preexec_fn=_limit,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
            rc = r.returncode
        except subprocess.TimeoutExpired:
            rc = "a hang"
    text = log.read_bytes().decode("utf-8", "replace")
    probes = [line for line in text.splitlines() if line.startswith("PROBE ")]
    if rc != 0 or f"DONE {group}:" not in text:
        last = probes[-1] if probes else "(before the first probe)"
        tail = "\n".join(line for line in text.splitlines()[-40:] if not line.startswith("PROBE"))
        pytest.fail(f"{group}: exit {rc} at {last}\n{tail[-4000:]}")
    assert len(probes) > 300, f"{group} ran only {len(probes)} probes"
