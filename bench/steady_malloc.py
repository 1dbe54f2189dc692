"""Runs a benchmark under a glibc malloc that keeps freed memory.

By default glibc serves blocks above a (moving) threshold with fresh mmap
calls and trims the heap's top on free, so a training step's large tensors
(gates, workspaces, gradients: tens of MB) can come back as new pages each
step. Touching them costs page faults, about 5,000 a step at times on these
VMs, which made either side of a comparison 20-40% slower for a while, at
random. Both sides of every benchmark run in one process, so they share the
setting; `--system-malloc` measures with glibc's defaults instead.
"""

from __future__ import annotations

import os
import sys

SETTINGS = {
    # Serve every block from the heap (none mmapped on its own) ...
    "MALLOC_MMAP_THRESHOLD_": str(1 << 32),
    # ... and never give the heap's top back.
    "MALLOC_TRIM_THRESHOLD_": str(1 << 34),
}


def ensure(argv: list[str]) -> str:
    """Re-executes this process with SETTINGS unless already set or `--system-malloc`
    is in argv; returns a line that says which allocator settings are in force."""
    if "--system-malloc" in argv:
        return "allocator: glibc defaults"
    if any(os.environ.get(k) != v for k, v in SETTINGS.items()):
        os.environ.update(SETTINGS)
        os.execv(sys.executable, [sys.executable, *sys.argv])
    return "allocator: glibc, freed memory kept (bench/steady_malloc.py; --system-malloc to not)"
