"""`import rustrnn` loads torch first and refuses a torch it was not built for."""

import subprocess
import sys


def run(code):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_import_loads_torch_first():
    r = run("import rustrnn, sys; print('torch' in sys.modules, rustrnn.__version__)")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[0] == "True"


def test_a_torch_version_mismatch_is_a_clear_import_error():
    r = run(
        "import torch\n"
        "torch.__version__ = '2.99.0+cpu'\n"
        "try:\n"
        "    import rustrnn\n"
        "except ImportError as e:\n"
        "    print('ImportError:', e)\n"
    )
    assert r.returncode == 0, r.stderr
    assert "ImportError:" in r.stdout
    assert "2.13.0" in r.stdout and "2.99.0" in r.stdout


def test_import_does_not_load_dynamo():
    """``import rustrnn`` took a second when a decorator imported torch._dynamo (and sympy)
    at import time; torch itself imports neither until compile is used."""
    code = "import sys, torch, rustrnn; print('torch._dynamo' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
