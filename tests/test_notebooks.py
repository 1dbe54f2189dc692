"""Executes every notebook in notebooks/ top to bottom; an exception in any cell fails.

The kernel is this interpreter (``sys.executable``) whatever kernelspecs the machine has:
a kernelspec naming it is written to a temporary directory that ``JUPYTER_PATH`` puts
first. So the notebooks import the rustrnn under test, in a fresh virtualenv as much as
in a developer's (ipykernel, from the ``test`` extra, is all it needs). Figures go to
matplotlib's Agg backend.

The notebooks run in file order; 02 saves its model to ``RUSTRNN_NOTEBOOK_MODEL`` and 03
and 04 load it from there (each trains its own small model when run alone).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")
pytest.importorskip("ipykernel")

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
KERNEL_NAME = "rustrnn-test-python"
TIMEOUT_PER_CELL = 300
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
INTERPRETER_CHECK = """\
import sys, matplotlib
assert sys.executable == {!r}, sys.executable
assert matplotlib.get_backend().lower() == "agg", matplotlib.get_backend()
"""


@pytest.fixture(scope="module")
def shared_dir(tmp_path_factory):
    """Where notebook 02 leaves its model for 03 and 04."""
    return tmp_path_factory.mktemp("notebook-models")


@pytest.fixture(scope="module")
def kernel_dir(tmp_path_factory):
    """A Jupyter data directory holding one kernelspec: this interpreter's ipykernel."""
    root = tmp_path_factory.mktemp("jupyter")
    spec_dir = root / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": f"Python {sys.version_info.major} (rustrnn tests)",
        "language": "python",
        "env": {"MPLBACKEND": "Agg"},
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    return root


def test_notebooks_found():
    names = [p.name for p in NOTEBOOKS]
    assert names == [
        "01-quickstart.ipynb",
        "02-language-model.ipynb",
        "03-sampling.ipynb",
        "04-word-vectors.ipynb",
    ], names


def test_notebooks_are_committed_clean():
    """No outputs or execution counts in the repository (they go stale)."""
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, (
                    f"{path.name} has stored outputs; clear them before committing"
                )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, kernel_dir, shared_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("JUPYTER_PATH", str(kernel_dir))
    # Connection files and IPython's profile go to temporary directories, not $HOME.
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(kernel_dir / "runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(kernel_dir / "ipython"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("RUSTRNN_NOTEBOOK_MODEL", str(shared_dir / "char-lm.safetensors"))
    nb = nbformat.read(path, as_version=4)
    # First, in the kernel: it is this interpreter, and figures go to Agg.
    nb.cells.insert(0, nbformat.v4.new_code_cell(INTERPRETER_CHECK.format(sys.executable)))
    client = nbclient.NotebookClient(
        nb,
        timeout=TIMEOUT_PER_CELL,
        kernel_name=KERNEL_NAME,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as e:
        error = ANSI_ESCAPE.sub("", str(e))
    else:
        return
    pytest.fail(f"{path.name} failed:\n{error}", pytrace=False)
