"""What the machine is: CPU feature flags, GPUs, the "auto" precision, and the machine in words.

Every published figure names its machine (``machine()``), and ``--precision auto`` picks bf16 only
where it is fast (``resolve_precision``; the measurements behind the rule are in BENCHMARKS.md).
TensorFlow is imported only by the functions that ask it about GPUs.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path


def _cpuinfo(field: str) -> str | None:
    """The value of the first ``field : value`` line of /proc/cpuinfo (x86 repeats each field
    once per core, all alike); None off Linux or when the file or field is missing."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(field):
            return line.partition(":")[2].strip()
    return None


def cpu_flags() -> set[str]:
    """The CPU feature flags of /proc/cpuinfo (``avx2``, ``amx_bf16``, …); empty off Linux."""
    return set((_cpuinfo("flags") or "").split())


def cpu_model(default: str | None = None) -> str:
    """The CPU's model name ("Intel(R) Xeon(R) Processor"); ``default`` (else what ``platform``
    knows) where /proc/cpuinfo does not say."""
    return _cpuinfo("model name") or default or platform.processor() or platform.machine()


def machine() -> str:
    """The machine in words, for every published figure: CPU model, core count and the vector
    units that decide speed here (AMX / AVX-512 / AVX2-only), e.g.
    "Intel(R) Xeon(R) Processor, 2 cores, AMX-BF16 + AVX-512"."""
    model = cpu_model()
    flags = cpu_flags()
    units = ("AMX-BF16 + AVX-512" if "amx_bf16" in flags else "AVX-512" if "avx512f" in flags
             else "AVX2-only" if "avx2" in flags else "no AVX2")  # fmt: skip
    return f"{model}, {os.cpu_count()} cores, {units}"


def gpu_compute_capabilities() -> list[tuple[int, int]]:
    """(major, minor) CUDA compute capability of each GPU the Keras backend sees; [] on a CPU."""
    from . import backend

    caps = []
    if backend.is_jax():
        import jax

        for dev in jax.devices():
            if dev.platform == "gpu":
                cc = str(getattr(dev, "compute_capability", "0.0")).split(".")
                caps.append((int(cc[0]), int(cc[1]) if len(cc) > 1 else 0))
        return caps
    import tensorflow as tf

    for gpu in tf.config.list_physical_devices("GPU"):
        cc = tf.config.experimental.get_device_details(gpu).get("compute_capability")
        caps.append(tuple(cc) if cc else (0, 0))
    return caps


# CPU flags of the kinds measured to run the bf16 train step faster than float32 (bench_bf16.py).
BF16_FAST_CPU_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})


def resolve_precision(requested: str) -> str:
    """The Keras dtype policy for ``--precision requested``: itself, unless it is "auto".

    "auto" is "mixed_bfloat16" only where bf16 is measured fast: GPUs with bf16 tensor cores
    (compute capability ≥ 8.0, every visible GPU) or, without a GPU, a CPU of a kind measured to
    run the bf16 step faster (``BF16_FAST_CPU_FLAGS``: AMX-BF16 2.98×, AVX512_BF16 without AMX
    1.80× at 128²). Elsewhere "float32": an AVX2-only CPU ran the bf16 step at 0.1× float32
    (BENCHMARKS.md, "bf16 against float32 by CPU"; ``bench/bench_bf16.py`` re-measures a machine).
    Tests replace ``cpu_flags`` and ``gpu_compute_capabilities`` of this module (looked up at call
    time) to mock the hardware.
    """
    if requested != "auto":
        return requested
    caps = gpu_compute_capabilities()
    if caps:
        return "mixed_bfloat16" if min(caps) >= (8, 0) else "float32"
    return "mixed_bfloat16" if BF16_FAST_CPU_FLAGS & cpu_flags() else "float32"
