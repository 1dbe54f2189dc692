"""Executes every notebook in notebooks/ top to bottom; an exception in any cell fails,
and so does a notebook whose displayed results are not what it claims (checked from the
executed outputs: the parity figures, the scores, the diversity and similarity numbers).

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
        pytest.fail(f"{path.name} failed:\n{error}", pytrace=False)
    CHECKS[path.stem](Shown(nb))


# ---------------------------------------------------------------------------
# What each notebook shows: read back from the executed cells' outputs (what a reader
# sees), not from the kernel's variables.


class Shown:
    """The text the executed notebook displays (figures go to Agg: none is shown)."""

    def __init__(self, nb):
        parts = []
        for cell in nb.cells:
            for out in cell.get("outputs", []):
                if out.get("output_type") == "stream":  # a print may come in pieces
                    parts.append(out["text"])
                elif "text/plain" in out.get("data", {}):
                    parts.append(f"\n{out['data']['text/plain']}\n")
        self.text = ANSI_ESCAPE.sub("", "".join(parts))

    def numbers(self, pattern: str):
        """The float groups of every match of ``pattern``."""
        found = [tuple(float(g) for g in m.groups()) for m in re.finditer(pattern, self.text)]
        assert found, f"the notebook shows nothing like {pattern!r}:\n{self.text[-2000:]}"
        return found


NUM = r"([-+]?[0-9.]+(?:e-?[0-9]+)?)"


def check_quickstart(shown: Shown) -> None:
    ((before, after),) = shown.numbers(rf"test MSE: {NUM} before training, {NUM} after")
    assert after < before / 4
    ((diff,),) = shown.numbers(rf"rustrnn -> torch.nn: max \|difference\| = {NUM}")
    assert diff < 1e-5
    ((n,),) = shown.numbers(r"torch.nn -> rustrnn: outputs and all (\d+) gradients match")
    assert n == 8  # a 2-layer GRU: 4 tensors a layer


def check_language_model(shown: Shown) -> None:
    ((untrained, uniform),) = shown.numbers(
        rf"untrained perplexity on validation text: {NUM} \(a uniform guess over (\d+)"
    )
    ((best,),) = shown.numbers(rf"best validation perplexity {NUM}")
    assert best < untrained / 2 and untrained > uniform / 2
    scores = shown.numbers(rf"log P = +{NUM} +ppl = +{NUM} +'[^\n]*'(?:  \(words shuffled\))?")
    natural = [lp for lp, _ in scores[0:6:2]]
    shuffled = [lp for lp, _ in scores[1:6:2]]
    assert "(words shuffled)" in shown.text and sum(natural) > sum(shuffled)


def check_sampling(shown: Shown) -> None:
    ((greedy, k),) = shown.numbers(r"greedy: +(\d+) distinct continuation\(s\) out of (\d+)")
    ((sampled, k2),) = shown.numbers(r"sampled: +(\d+) distinct continuations out of (\d+)")
    assert greedy == 1 and k == k2 == 16 and sampled > k / 2
    rows = shown.numbers(rf"T={NUM} +distinct +(\d+)/32 +entropy {NUM} bits")
    temperatures = [t for t, _, _ in rows]
    entropy = [e for _, _, e in rows]
    assert temperatures == sorted(temperatures) and len(rows) == 10
    # Shown to 2 decimals, so low temperatures' near-zero entropies may print equal.
    assert all(a <= b for a, b in zip(entropy, entropy[1:])) and entropy[0] < entropy[-1]
    assert rows[0][1] < rows[-1][1]


def check_word_vectors(shown: Shown) -> None:
    ((within, across),) = shown.numbers(rf"mean cosine digit-digit {NUM}, digit-letter {NUM}")
    assert within > across
    sims = shown.numbers(rf"similarity\('\S+', '\S+'\) = {NUM}")
    assert len(sims) == 6 and all(-1 <= s <= 1 for (s,) in sims)


CHECKS = {
    "01-quickstart": check_quickstart,
    "02-language-model": check_language_model,
    "03-sampling": check_sampling,
    "04-word-vectors": check_word_vectors,
}


def test_every_notebook_has_checks():
    assert sorted(CHECKS) == [p.stem for p in NOTEBOOKS]
