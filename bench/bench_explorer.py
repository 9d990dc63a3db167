"""How instant is the latent explorer at 128²? Time from a slider move to the new image, on a
``paper``-preset model (Watters et al. 2019 at 128²: SBD, 64 channels, 10 latents).

    python bench/bench_explorer.py [--repeats 30]     # prints a markdown section (~1 min)

The decoder's cost does not depend on its weights, so the model is built, not trained. For each
precision the preset can resolve to here (float32, and ``--precision auto`` where it differs):
- ``decoder.predict``: Keras' predict on one latent vector (1, 10);
- eager call: ``model.decoder(z)``;
- compiled decode: ``encoding.decode`` (the ``tf.function``/``jax.jit`` decoder the explorer uses),
  sigmoid included;
- slider callback: ``LatentExplorer``: set one slider's value, its observer decodes, encodes the
  PNG and hands it to the image widget (everything the kernel does before the browser draws).
Median and fastest of ``repeats`` calls after one warm-up, in ms.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from common import DATA, ensure_data, machine

INSTANT_MS = 100  # the usual bound for a response that feels instant (Nielsen 1993, ch. 5)


def _times(fn, repeats: int) -> tuple[float, float]:
    """(median, fastest) ms of ``repeats`` calls of ``fn`` after one warm-up call."""
    import numpy as np

    fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(1e3 * (time.perf_counter() - t0))
    return float(np.median(ts)), float(min(ts))


def _paths(model, sampler) -> dict:
    """{path name: a no-argument call that decodes one latent vector of ``model`` that way}."""
    import numpy as np

    from sbd_vae.encoding import decode
    from sbd_vae.explorer import LatentExplorer

    z = np.random.RandomState(0).randn(1, model.latent_dim).astype(np.float32)  # (1, D)
    ex = LatentExplorer(model, sampler)
    slider = ex.sliders[int(ex.order[0])]
    values = iter(np.tile([-1.0, 1.0], 10**6))  # alternate, so every set is a change
    return {
        "`decoder.predict`": lambda: model.decoder.predict(z, verbose=0),
        "eager `decoder(z)`": lambda: model.decoder(z),
        "compiled decode (`encoding.decode`)": lambda: decode(model, z),
        "slider callback (decode + PNG + widget)": lambda: setattr(slider, "value", next(values)),
    }


def measure(repeats: int = 30) -> list[dict]:
    """One row per (precision, path): dict(precision, path, median_ms, best_ms)."""
    import training
    from sbd_vae.hardware import resolve_precision

    rows = []
    for precision in dict.fromkeys(["float32", resolve_precision("auto")]):  # ordered, no repeat
        cfg = training.preset_config("paper", data_path=str(DATA), precision=precision)
        for name, fn in _paths(training.build_model(cfg), training.make_dataset(cfg)).items():
            med, best = _times(fn, repeats)
            rows.append(dict(precision=precision, path=name, median_ms=med, best_ms=best))
    return rows


def run(quick: bool = False, repeats: int | None = None) -> str:
    """The markdown section (``make bench`` adds the date); ``quick``: 10 repeats."""
    repeats = repeats or (10 if quick else 30)
    ensure_data()
    t0, load0 = time.time(), os.getloadavg()[0]
    rows = measure(repeats)
    load = max(load0, os.getloadavg()[0])  # the CPU's other work slows every path alike
    lines = [
        "## Latent explorer: slider to image at 128²",
        "",
        f"Machine: {machine()}. Command: `python bench/bench_explorer.py` (an untrained `paper`-"
        f"preset model, one latent vector; median and fastest of {repeats} calls after a warm-up, "
        f"{time.time() - t0:.0f} s; load average {load:.1f} on {os.cpu_count()} cores). Instant "
        f"means under {INSTANT_MS} ms.",
        "",
        "| precision | path | median ms | fastest ms |",
        "|---|---|---|---|",
    ]
    lines += [f"| {r['precision']} | {r['path']} | {r['median_ms']:.1f} | {r['best_ms']:.1f} |"
              for r in rows]  # fmt: skip
    lines += ["", "The explorer decodes through the compiled path (the slider callback row)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--repeats", type=int, default=30, help="timed calls per path [default 30]")
    print(run(repeats=p.parse_args().repeats))
    sys.exit(0)
