"""Shared helpers for the benchmarks: machine description, timing, the default dataset."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
DATA = REPO / "data" / "shapes.npz"


def machine() -> str:
    """One line naming the machine: CPU model, cores, memory, Python and TF versions."""
    from sbd_vae.hardware import cpu_model

    cpu = cpu_model(default=platform.processor() or "?")
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, Python {platform.python_version()}"


def ensure_data(path: Path = DATA) -> Path:
    """The default render (data/shapes.npz), rendered once if missing."""
    if not path.exists():
        subprocess.run(
            [sys.executable, str(REPO / "blender" / "render_shapes.py"), "--out", str(path)],
            check=True,
        )
    return path


def best_rate(fn, items: int, repeats: int = 3) -> float:
    """Items per second of the fastest of ``repeats`` calls of ``fn`` (the machine is shared and
    noisy; the fastest run is the least disturbed one)."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return items / best
