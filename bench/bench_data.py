"""Data benchmarks: the on-the-fly tf.data pipeline (dataset.ShapesDataset.tf_dataset), the
backend-neutral stream (param_stream + the keras.ops warp) on TensorFlow and on JAX, and the
Blender renderer (blender/render_shapes.py).

    python bench/bench_data.py [--quick]       # prints a markdown section
    python bench/bench_data.py --backends      # only the tf.data / TF / JAX stream comparison
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

from common import REPO, best_rate, ensure_data, machine

GOAL = 2000  # img/s at 128x128, batch 64, on 2 cores (issue 2)


def _pipeline_rate(path, image_size: int, batch: int, batches: int, discrete=False) -> float:
    """img/s of iterating ds.tf_dataset after a warm-up (tracing, AUTOTUNE, prefetch fill)."""
    import dataset

    ds = dataset.ShapesDataset(str(path), image_size=image_size)
    it = iter(ds.tf_dataset(batch, seed=0, discrete=discrete))
    for _ in range(10):
        next(it)

    def run():
        for _ in range(batches):
            x, _f = next(it)
        x.numpy()

    return best_rate(run, batches * batch, repeats=3)


def _image_stream_rates(path, sizes, batch: int, batches: int) -> dict:
    """{size: img/s} of ds.image_stream on the running Keras backend: numpy warp parameters per
    batch (param_stream), the warp compiled with backend.jit, the images back as numpy. What a
    train step fed by param_stream pays for its data, plus the copy back to the host."""
    import dataset

    rates = {}
    for size in sizes:
        ds = dataset.ShapesDataset(str(path), image_size=size)
        it = ds.image_stream(batch, seed=0)
        for _ in range(10):  # compile, warm caches
            next(it)

        def run(it=it):
            for _ in range(batches):
                next(it)

        rates[size] = best_rate(run, batches * batch, repeats=3)
    return rates


def _backend_rows(path, quick: bool) -> list[str]:
    """tf.data (TF) vs param_stream + warp on TF and on JAX (a subprocess with
    KERAS_BACKEND=jax), at 32² and 128², batch 64, in one run: a markdown table."""
    sizes, batch, batches = (32, 128), 64, 20 if quick else 60
    tfdata = {s: _pipeline_rate(path, s, batch, batches) for s in sizes}
    tf_stream = _image_stream_rates(path, sizes, batch, batches)
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); import bench_data; "
        "r = bench_data._image_stream_rates(sys.argv[2], (32, 128), 64, int(sys.argv[3])); "
        "print(json.dumps(r))"
    )
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    cmd = [sys.executable, "-c", code, str(REPO / "bench"), str(path), str(batches)]
    r = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=REPO, env=env)
    jax_stream = {int(k): v for k, v in json.loads(r.stdout.strip().splitlines()[-1]).items()}
    rows = [
        f"| {s}x{s} | {tfdata[s]:,.0f} | {tf_stream[s]:,.0f} | {jax_stream[s]:,.0f} | "
        f"{tf_stream[s] / tfdata[s]:.2f} | {jax_stream[s] / tfdata[s]:.2f} |"
        for s in sizes
    ]
    return [
        f"tf.data vs the backend-neutral stream (batch 64, {batches} batches after a 10-batch "
        "warm-up, best of 3; continuous scale/position). `param_stream + warp` is "
        "`ShapesDataset.image_stream`: numpy Philox parameters, the keras.ops warp compiled "
        "with backend.jit (tf.function / jax.jit, CPU), images back to numpy, one batch in "
        "flight; JAX runs in a subprocess with KERAS_BACKEND=jax.",
        "",
        "| image size | tf.data img/s (TF) | param_stream + warp, TF | param_stream + warp, JAX "
        "| TF stream / tf.data | JAX stream / tf.data |",
        "|---|---|---|---|---|---|",
        *rows,
    ]


def _sampler_rate(path, n: int) -> float:
    """img/s of ds.images_from_factors (the metrics' path: numpy in, numpy out, 128 px)."""
    import numpy as np

    import dataset

    ds = dataset.ShapesDataset(str(path), image_size=128)
    f = ds.sample_factors(n, np.random.RandomState(0))
    ds.images_from_factors(f[:64])  # trace
    return best_rate(lambda: ds.images_from_factors(f), n, repeats=2)


def _render(workers: int, num_azimuths: int, out_dir: str) -> dict:
    """Render 2 shapes x num_azimuths x 1 tilt at 128 px, 16 samples, in a fresh process."""
    out = os.path.join(out_dir, f"bench_w{workers}.npz")
    cmd = [sys.executable, str(REPO / "blender" / "render_shapes.py"), "--out", out, "--force"]
    cmd += ["--shapes", "torus", "monkey", "--num_azimuths", str(num_azimuths), "--tilts", "35"]
    cmd += ["--workers", str(workers), "--no_progress"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, cwd=REPO)
    wall = time.perf_counter() - t0
    import numpy as np

    with np.load(out) as z:
        meta = json.loads(str(z["meta"]))
    n = 2 * num_azimuths
    return dict(n=n, wall=wall, render=meta["render_seconds"], setup=meta["setup_seconds"])


def run(quick: bool = False) -> str:
    path = ensure_data()
    batches = 20 if quick else 60
    rows = []
    for size, discrete in ((128, False), (128, True), (64, False), (32, False)):
        rate = _pipeline_rate(path, size, 64, batches, discrete)
        rows.append((size, "grid" if discrete else "continuous", rate))
    sampler = _sampler_rate(path, 1024 if quick else 4096)
    backend_rows = _backend_rows(path, quick)
    with tempfile.TemporaryDirectory() as tmp:
        renders = [(1, _render(1, 4 if quick else 8, tmp))]
        if not quick:
            renders.append((2, _render(2, 8, tmp)))
    main_rate = rows[0][2]
    verdict = "meets" if main_rate >= GOAL else "MISSES"
    lines = [
        "## Data: on-the-fly pipeline and renderer",
        "",
        f"Command: `python bench/bench_data.py{' --quick' if quick else ''}` "
        f"(or `make bench`). Machine: {machine()} "
        f"({platform.machine()}, os.cpu_count()={os.cpu_count()}).",
        "",
        f"On-the-fly pipeline (`ShapesDataset.tf_dataset`, batch 64, {batches} batches after a "
        "10-batch warm-up, best of 3): gather + one ImageProjectiveTransformV3 per batch, "
        "map(num_parallel_calls=AUTOTUNE) + prefetch.",
        "",
        "| image size | scale/position | img/s |",
        "|---|---|---|",
        *[f"| {s}x{s} | {kind} | {r:,.0f} |" for s, kind, r in rows],
        "",
        f"At 128x128, batch 64: **{main_rate:,.0f} img/s**, which {verdict} the goal of "
        f"{GOAL:,} img/s.",
        f"`images_from_factors` (numpy in/out, 128 px, chunks of 512): {sampler:,.0f} img/s.",
        "",
        *backend_rows,
        "",
        "Renderer (`blender/render_shapes.py`, Cycles CPU, 16 samples, 128x128, torus + monkey, "
        "one tilt, in a fresh process. With 1 worker 'render s' excludes the bpy import and scene "
        "set-up ('setup s'); with 2 it includes the spawned children's start-up:",
        "",
        "| workers | images | setup s | render s | s/img | img/s | process wall s |",
        "|---|---|---|---|---|---|---|",
        *[
            f"| {w} | {r['n']} | {'-' if r['setup'] is None else format(r['setup'], '.2f')} | "
            f"{r['render']:.2f} | {r['render'] / r['n']:.3f} | {r['n'] / r['render']:.1f} | "
            f"{r['wall']:.1f} |"
            for w, r in renders
        ],
        "",
        f"Load average while measuring (shared machine): "
        f"{', '.join(f'{v:.1f}' for v in os.getloadavg())}.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--backends", action="store_true", help="only the tf.data/TF/JAX comparison")
    a = p.parse_args()
    if a.backends:
        print(f"Machine: {machine()}\n")
        print("\n".join(_backend_rows(ensure_data(), a.quick)))
    else:
        print(run(quick=a.quick))
