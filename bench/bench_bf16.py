"""Is bf16 fast on this CPU? The raw train step in float32 against mixed_bfloat16, at 128² (paper
preset) and 32² (study preset), in alternating rounds of one process, so the ratio is measured
under the same load. The evidence behind ``--precision auto`` (``sbd_vae.hardware``): bf16 is
chosen only on CPUs of a kind measured to run it faster.

    python bench/bench_bf16.py [--rounds 3]     # prints a markdown section (~3 min on 2 cores)
"""

from __future__ import annotations

import argparse
import sys
import time

from bench_train import _raw_stepper
from common import ensure_data, machine

SETUPS = (("paper", 128, 8), ("study", 32, 60))  # preset, image size, steps per round


def _rate(run, steps: int, batch: int) -> float:
    t = time.perf_counter()
    run(steps)
    return steps * batch / (time.perf_counter() - t)


def measure(rounds: int = 3) -> list[dict]:
    """Best img/s of float32 and mixed_bfloat16 per setup over ``rounds`` alternating rounds."""
    import training

    rows = []
    for preset, size, steps in SETUPS:
        runs = {p: _raw_stepper(training.preset_config(preset, precision=p))
                for p in ("float32", "mixed_bfloat16")}  # fmt: skip
        batch = training.preset_config(preset).batch_size
        best = {p: 0.0 for p in runs}
        for i in range(rounds):
            order = list(runs) if i % 2 == 0 else list(runs)[::-1]  # alternate who goes first
            for p in order:
                best[p] = max(best[p], _rate(runs[p], steps, batch))
        rows.append(dict(preset=preset, size=size, batch=batch, **best))
    return rows


def run(quick: bool = False, rounds: int | None = None) -> str:
    """The markdown section (``make bench`` adds the date); ``quick``: one round."""
    rounds = rounds or (1 if quick else 3)
    ensure_data()
    from sbd_vae.hardware import cpu_flags, resolve_precision

    t0 = time.time()
    rows = measure(rounds)
    flags = cpu_flags()
    bf16 = ", ".join(f for f in ("amx_bf16", "avx512_bf16") if f in flags) or "none"
    lines = [
        "## bf16 against float32 by CPU (raw train step)",
        "",
        f"Machine: {machine()}; bf16 flags: {bf16}. Command: `python bench/bench_bf16.py` "
        f"(best of {rounds} alternating rounds each, {time.time() - t0:.0f} s).",
        "",
        "| setup | float32 img/s | mixed_bfloat16 img/s | bf16 / float32 |",
        "|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['preset']} preset, {r['size']}², batch {r['batch']} | "
                     f"{r['float32']:.1f} | {r['mixed_bfloat16']:.1f} | "
                     f"{r['mixed_bfloat16'] / r['float32']:.2f}× |")  # fmt: skip
    lines += ["", f"`--precision auto` resolves to `{resolve_precision('auto')}` here."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds per setup [default 3]")
    print(run(rounds=p.parse_args().rounds))
    sys.exit(0)
