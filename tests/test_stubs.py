"""The hand-written stub python/rustrnn/_rustrnn.pyi matches the built extension.

mypy's stubtest imports ``rustrnn._rustrnn`` and compares every name, signature and
class in it with the stub; an export added in Rust without a stub entry (or a changed
signature) fails here.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import rustrnn

pytest.importorskip("mypy")


def test_stub_and_marker_ship_with_the_package():
    pkg = Path(rustrnn.__file__).parent
    assert (pkg / "_rustrnn.pyi").is_file()
    assert (pkg / "py.typed").is_file()


def test_stubtest(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "rustrnn._rustrnn"],
        cwd=tmp_path,  # mypy's cache and any stray files stay out of the checkout
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(f"stubtest found differences:\n{proc.stdout}\n{proc.stderr}", pytrace=False)
