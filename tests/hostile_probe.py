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


def _run(argv, what: str, timeout: float, cwd=None, memory_gb=None, input=None, env=None):
    """``argv`` in a child interpreter; a timeout fails the test, naming ``what``.
    ``env``: variables set (over this process's) for the child."""
    try:
        return subprocess.run(
            [sys.executable, *argv],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**ENV, **(env or {})},
            cwd=cwd,
            preexec_fn=_limit(memory_gb),
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{what} hung (no answer in {timeout} s)")


def probe(code: str, *args: str, timeout: float, memory_gb=None):
    """Runs ``code`` (torch and rustrnn imported) with ``args`` as sys.argv[1:]."""
    prelude = "import sys, torch, rustrnn\n"
    argv = ["-c", prelude + textwrap.dedent(code), *args]
    return _run(argv, f"the probe\n{code}\n", timeout, memory_gb=memory_gb)


def cli(*args: str, timeout: float, cwd=None, memory_gb=None, input=None, env=None):
    """Runs ``python -m rustrnn ARGS`` (``input``: its standard input, a str)."""
    what = f"rustrnn {' '.join(args)}"
    return _run(["-m", "rustrnn", *args], what, timeout, cwd, memory_gb, input, env)
