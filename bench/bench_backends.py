"""Keras backends: training img/s of the same model on TensorFlow and on JAX, in one run.

Each measurement is a fresh subprocess (``KERAS_BACKEND`` is read once, when Keras is imported)
running the real training path of that backend: ``training.build_model`` and
``training.training_stream`` (TensorFlow: the tf.data image stream, the step a tf.function;
JAX: warp parameters, the warp inside the jitted step), timed over ``steps`` steps after a
warm-up that holds the compile. The backends alternate and the best of ``repeats`` is kept (the
machine is shared and noisy), so the ratio is measured under the same conditions.

    python bench/bench_backends.py [--quick]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from common import DATA, REPO, ensure_data

CHILD = r"""
import json, sys, time
import training

preset, size, steps, data = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
cfg = training.preset_config(preset, image_size=size, data_path=data, precision="float32",
                             steps=10**6)
model = training.build_model(cfg)
stream = training.training_stream(training.make_dataset(cfg), model, cfg, 0)
t0 = time.perf_counter()
model.fit(stream, epochs=1, steps_per_epoch=3, verbose=0)  # trace + compile
compile_s = time.perf_counter() - t0
t0 = time.perf_counter()
h = model.fit(stream, epochs=1, steps_per_epoch=steps, verbose=0)
float(h.history["loss"][-1])  # read back: every step has finished
dt = time.perf_counter() - t0
print(json.dumps({"img_per_s": steps * cfg.batch_size / dt, "compile_s": compile_s,
                  "batch": cfg.batch_size}))
"""

# (preset, image size, steps timed, steps timed with --quick)
CASES = [("study", 32, 200, 60), ("paper", 128, 12, 4)]
BACKENDS = ("tensorflow", "jax")


def measure(backend: str, preset: str, size: int, steps: int) -> dict:
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    r = subprocess.run(
        [sys.executable, "-c", CHILD, preset, str(size), str(steps), str(DATA)],
        env=env, capture_output=True, text=True, cwd=REPO, timeout=3600,
    )  # fmt: skip
    if r.returncode != 0:
        raise RuntimeError(f"{backend} {preset} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def run(quick: bool = False) -> str:
    ensure_data()
    repeats = 1 if quick else 2
    lines = [
        "## Keras backends: TensorFlow vs JAX (training img/s, float32)",
        "",
        "Same model, same preset, each backend's own training path (`training.training_stream`: "
        "tf.data images on TensorFlow; warp parameters and the warp inside the jitted step on "
        f"JAX). Fresh subprocess per measurement, backends alternated, best of {repeats}; "
        "compile time apart. `python bench/bench_backends.py`.",
        "",
        "| preset | size | batch | TF img/s | JAX img/s | JAX / TF | compile s (TF / JAX) |",
        "|---|---|---|---|---|---|---|",
    ]
    for preset, size, steps, quick_steps in CASES:
        best = {b: None for b in BACKENDS}
        for _ in range(repeats):
            for b in BACKENDS:
                m = measure(b, preset, size, quick_steps if quick else steps)
                if best[b] is None or m["img_per_s"] > best[b]["img_per_s"]:
                    best[b] = m
        tf, jx = best["tensorflow"], best["jax"]
        lines.append(
            f"| {preset} | {size}² | {tf['batch']} | {tf['img_per_s']:.0f} | "
            f"{jx['img_per_s']:.0f} | {jx['img_per_s'] / tf['img_per_s']:.2f} | "
            f"{tf['compile_s']:.1f} / {jx['compile_s']:.1f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
