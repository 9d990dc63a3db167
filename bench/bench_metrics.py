"""Benchmark of the disentanglement metrics: DCI backends and the whole suite's cost.

    python bench/bench_metrics.py            # full: DCI on 10000 codes, suite quick + study
    python bench/bench_metrics.py --quick    # DCI on 2000 codes, suite quick only

`run(quick)` returns a markdown section (bench/run_all.py collects these into BENCHMARKS.md).
Times are wall and CPU (process) seconds: the machine's cores are shared, and CPU time is the
figure that contention does not inflate; both ratios are taken in the same run.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sbd_vae.metrics import compute_metrics, dci  # noqa: E402
from sbd_vae.metrics.registry import metric_counts  # noqa: E402

# The project's metric grid: shape, azimuth, scale, pos_x, pos_y.
SIZES = (6, 16, 8, 16, 16)
NAMES = ("shape", "azimuth", "scale", "pos_x", "pos_y")


def partially_mixed_code(factors: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
    """(N, 10) noisy code: 5 dims mostly one factor each (some leakage), 2 mixtures of two
    factors, 1 pure-noise dim, 1 collapsed dim (std 0.01), 1 exactly constant dim."""
    x = (factors + rng.rand(*factors.shape)) / np.asarray(SIZES)  # (N, 5) in [0, 1)
    mix = np.zeros((5, 10))
    mix[np.arange(5), np.arange(5)] = 1.0
    mix[0, 1], mix[4, 3] = 0.3, 0.2  # leakage
    mix[0, 5], mix[1, 5], mix[2, 6], mix[3, 6] = 0.7, 0.7, 0.5, 0.9  # mixtures
    z = x @ mix + 0.05 * rng.randn(len(x), 10)
    z[:, 7], z[:, 8], z[:, 9] = rng.randn(len(x)), 0.01 * rng.randn(len(x)), 0.0
    return z


class SyntheticSampler:
    """Ground truth with the project's factor grid; an "image" is its factor row (n, 1, K, 1)."""

    factor_names, factor_sizes = list(NAMES), list(SIZES)

    def sample_factors(self, n, rng):
        return np.stack([rng.randint(s, size=n) for s in self.factor_sizes], axis=1)

    def images_from_factors(self, factors):
        return np.asarray(factors, np.float32).reshape(len(factors), 1, -1, 1)


def cheap_encoder(seed: int = 0):
    """A deterministic per-image code: the partially mixed code of each grid point."""
    r = np.random.RandomState(seed)
    grid = np.stack(np.unravel_index(np.arange(np.prod(SIZES)), SIZES), axis=1)
    table = partially_mixed_code(grid, r).astype(np.float32)  # (grid size, 10)

    def encode(images):
        f = np.rint(images.reshape(len(images), -1)).astype(np.int64)
        return table[np.ravel_multi_index(tuple(f.T), SIZES)]

    return encode


def _timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def bench_dci(n_train: int, n_test: int) -> list[str]:
    rng = np.random.RandomState(0)
    factors = SyntheticSampler().sample_factors(n_train + n_test, rng)
    codes = partially_mixed_code(factors, rng)
    tt = (codes[:n_train], factors[:n_train], codes[n_train:], factors[n_train:])
    ref, ref_wall, ref_cpu = _timed(lambda: dci(*tt, backend="reference"))
    fast, fast_wall, fast_cpu = _timed(lambda: dci(*tt, backend="fast"))
    rows = [
        f"### DCI: reference vs fast backend ({n_train} train / {n_test} test codes, 10 dims, "
        f"factor sizes {list(SIZES)})",
        "",
        "| backend | wall s | CPU s | disentanglement | completeness | informativeness test |",
        "|---|---|---|---|---|---|",
    ]
    for name, res, wall, cpu in (
        ("reference: GradientBoostingClassifier() (100 trees)", ref, ref_wall, ref_cpu),
        ("fast: same boosting on binned codes", fast, fast_wall, fast_cpu),
    ):
        rows.append(
            f"| {name} | {wall:.1f} | {cpu:.1f} | {res['disentanglement']:.4f} | "
            f"{res['completeness']:.4f} | {res['informativeness_test']:.4f} |"
        )
    d_d = fast["disentanglement"] - ref["disentanglement"]
    d_c = fast["completeness"] - ref["completeness"]
    ok = min(ref_wall / fast_wall, ref_cpu / fast_cpu) >= 3 and max(abs(d_d), abs(d_c)) <= 0.03
    rows += [
        "",
        f"Speed-up: **{ref_wall / fast_wall:.1f}× wall, {ref_cpu / fast_cpu:.1f}× CPU**; "
        f"ΔD = {d_d:+.4f}, ΔC = {d_c:+.4f} (goal ≥ 3×, |Δ| ≤ 0.03: {'met' if ok else 'NOT met'}).",
        "",
    ]
    return rows


def bench_suite(protocols: list[str]) -> list[str]:
    rows = [
        "### compute_metrics on a synthetic sampler (cheap table-lookup encoder)",
        "",
        "Encoding here costs almost nothing, so the times are the metric maths alone.",
        "",
        "| protocol | images requested | distinct images encoded | encode s | MIG s | DCI s | "
        "SAP s | Mod/Expl s | BetaVAE s | FactorVAE s | total wall s | total CPU s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for protocol in protocols:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out, _, cpu = _timed(
                lambda p=protocol: compute_metrics(
                    SyntheticSampler(), cheap_encoder(), np.random.RandomState(0), p, progress=False
                )
            )
        times = " | ".join(
            f"{out[f'time_{m}_s']:.1f}"
            for m in (
                "encode",
                "mig",
                "dci",
                "sap",
                "modularity_explicitness",
                "beta_vae",
                "factor_vae",
            )
        )
        rows.append(
            f"| {protocol} | {out['num_images_requested']} | {out['num_images_encoded']} | {times} | "
            f"{out['time_total_s']:.1f} | {cpu:.1f} |"
        )
    counts = ", ".join(f"{k}={v}" for k, v in metric_counts("quick").items())
    rows += ["", f"`quick` counts: {counts}.", ""]
    return rows


def run(quick: bool = False) -> str:
    """Markdown section: DCI backends (speed-up, D/C agreement) and suite times per protocol."""
    rows = ["## Disentanglement metrics (bench/bench_metrics.py)", ""]
    rows += bench_dci(2000, 1000) if quick else bench_dci(10000, 5000)
    rows += bench_suite(["quick"] if quick else ["quick", "study"])
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="DCI on 2000 codes, quick suite only")
    print(run(quick=parser.parse_args().quick))
