"""Probes for the hostile-input tests: code or a ``rustrnn`` command run in a fresh
interpreter with a timeout (and optionally an address-space limit), so a hang, an abort
or a panic fails the test instead of taking pytest down."""

import os
import subprocess
import sys
import textwrap

import pytest

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def _limit(memory_gb):
    def apply():  # pragma: no cover - runs in the child
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory_gb << 30, memory_gb << 30))

    return apply if memory_gb else None


def probe(code: str, *args: str, timeout: float, memory_gb=None):
    """Runs ``code`` (torch and rustrnn imported) with ``args`` as sys.argv[1:]."""
    prelude = "import sys, torch, rustrnn\n"
    try:
        return subprocess.run(
            [sys.executable, "-c", prelude + textwrap.dedent(code), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=ENV,
            preexec_fn=_limit(memory_gb),
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"the probe hung (no answer in {timeout} s):\n{code}")


def cli(*args: str, timeout: float, cwd=None, memory_gb=None, input=None):
    """Runs ``python -m rustrnn ARGS`` (``input``: its standard input, a str)."""
    try:
        return subprocess.run(
            [sys.executable, "-m", "rustrnn", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=ENV,
            cwd=cwd,
            preexec_fn=_limit(memory_gb),
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"rustrnn {' '.join(args)} hung")
