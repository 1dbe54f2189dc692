"""The device a benchmark runs on (``--device``, default cpu) and its clock.

CUDA kernels run asynchronously: a call returns once its work is queued. So on CUDA a
timed region starts and ends with ``torch.cuda.synchronize()``, and measures the work
rather than its launch; on the CPU the clock is read as it always was.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch


def add_argument(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--device", default="cpu", help="torch device: cpu (default) or cuda[:N]")


def parse(name: str) -> torch.device:
    """``--device`` as a torch.device both sides of a benchmark can run on; anything
    else ends the run with one line."""
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as e:
        sys.exit(f"--device {name}: {e}")
    if device.type not in ("cpu", "cuda"):
        sys.exit(f"--device {name}: the benchmarks run on cpu or cuda, not {device.type}")
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit(f"--device {name}: CUDA is not available here")
    return device


def now(device: torch.device) -> float:
    """``time.perf_counter()`` once the work queued on ``device`` is done."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def describe(device: torch.device) -> str:
    """The GPU, for a benchmark's header line (torch's CUDA and cuDNN versions with it)."""
    cudnn = torch.backends.cudnn.version()
    return (
        f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda}, cuDNN {cudnn}, "
        f"TF32 in cuDNN {'on' if torch.backends.cudnn.allow_tf32 else 'off'})"
    )
