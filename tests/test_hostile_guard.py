"""No Rust panic reaches Python as pyo3's PanicException (a BaseException that
`except Exception:` does not catch): every binding runs inside src/python/guard.rs."""

import subprocess
import sys
from pathlib import Path

import pytest
from guard_scan import unguarded

BINDINGS = sorted((Path(__file__).parent.parent / "src" / "python").glob("*.rs"))


def test_a_panic_is_a_runtime_error_naming_the_function():
    probe = (
        "import torch, rustrnn\n"
        "try:\n"
        "    rustrnn._rustrnn._guard_selftest('index 7 out of range')\n"
        "except Exception as e:\n"
        "    print(type(e).__name__, e)\n"
    )
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("RuntimeError")
    assert "_guard_selftest" in run.stdout and "index 7 out of range" in run.stdout


@pytest.mark.parametrize("path", BINDINGS, ids=lambda p: p.name)
def test_every_binding_runs_inside_the_guard(path):
    assert unguarded(path) == [], f"{path.name}: wrap these in guard(...)"
