"""How β-TCVAE's total-correlation estimate depends on the batch, the estimator and N.

    python scripts/tc_batch_bias.py                       # the simulation only
    python scripts/tc_batch_bias.py results/objectives/tcvae_beta4_seed0 results/study/beta4_seed0

``variationAutoEncoder.total_correlation`` estimates log q(z) and each log q(z_l) on one batch
of M codes, by minibatch weighted sampling ("mws", Chen et al. 2018, App. C.1, constants kept)
or minibatch stratified sampling ("mss", App. C.2), both with the dataset size N. Two tables:

- Simulation, where the truth is known: D independent latents, posterior means μ ~ N(0, I) and
  a fixed posterior standard deviation σ, so q(z) = N(0, (1 + σ²) I) factorises and TC = 0.
  One row per σ, estimator and N (``--sizes``), the mean estimate over the consecutive batches
  of each size (``--batches``) of ``--images`` codes. A last row per σ is disentanglement_lib's
  value, MWS without its constant: mws − (D − 1)·log(N·M), the same for every N.
- Each finished run given: encode ``--images`` images of its data (fixed seed), draw one z per
  image from q(z|x), and the same means, with both estimators at the run's own N (``--run_n``
  overrides it): the ``tc_dataset_size`` of its model.keras, which is its data's number of
  distinct images for a tcvae run trained since N came from the data, and 589 824
  (hparams.TC_DATASET_SIZE) for every other run. In a tcvae run the estimator's batch is the
  training batch, so the run's own estimator at the training batch size is what the β-weighted
  term of its loss measured.

Prints the markdown tables.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

ESTIMATORS = ("mws", "mss")
# N of the presets' grids (ShapesDataset.num_points): study 56 448 and wide 147 456 at 32², paper
# 589 824 at 128² (hparams.TC_DATASET_SIZE, the N of every run before N came from the data);
# dSprites (Chen et al.'s data) has 737 280.
SIZES = (56_448, 147_456, 589_824, 737_280)


def batch_means(z, mean, logvar, batches, estimator: str, dataset_size: float) -> dict[int, float]:
    """{M: mean TC estimate (nats) over the consecutive batches of M of the codes (n, D)}."""
    import variationAutoEncoder as V

    z, mean, logvar = (np.asarray(a, "float32") for a in (z, mean, logvar))
    out = {}
    for b in batches:
        est = [
            float(
                V.total_correlation(
                    z[i : i + b], mean[i : i + b], logvar[i : i + b], dataset_size, estimator
                )
            )
            for i in range(0, len(z) - b + 1, b)
        ]
        out[b] = float(np.mean(est))
    return out


def simulated_codes(images: int, latent_dim: int, sigma: float, seed: int = 0):
    """(z, mean, logvar), each (images, latent_dim): μ ~ N(0, I), q(z|x) = N(μ, σ² I), so the
    aggregate posterior is N(0, (1 + σ²) I) and its total correlation is exactly 0."""
    rng = np.random.RandomState(seed)
    mean = rng.randn(images, latent_dim)
    logvar = np.full_like(mean, 2.0 * math.log(sigma))
    z = mean + sigma * rng.randn(images, latent_dim)
    return z, mean, logvar


def simulate(batches, sizes, sigmas, images: int, latent_dim: int, seed: int = 0) -> list[dict]:
    """One row per (σ, estimator, N): {"sigma", "estimator", "n", "tc": {M: mean estimate}}, and
    per σ disentanglement_lib's dropped-constant MWS (estimator "mws, no constant", n None)."""
    rows = []
    for sigma in sigmas:
        codes = simulated_codes(images, latent_dim, sigma, seed)
        for est in ESTIMATORS:
            for n in sizes:
                tc = batch_means(*codes, batches, est, n)
                rows.append({"sigma": sigma, "estimator": est, "n": n, "tc": tc})
        n = sizes[0]  # any N: the constant (D − 1)·log(N·M) is all of N's effect on MWS
        mws = next(r["tc"] for r in rows if r["sigma"] == sigma and r["estimator"] == "mws")
        shift = {b: (latent_dim - 1) * math.log(n * b) for b in batches}
        rows.append({"sigma": sigma, "estimator": "mws, no constant", "n": None,
                     "tc": {b: mws[b] - shift[b] for b in batches}})  # fmt: skip
    return rows


def run_codes(run, images: int, seed: int = 0):
    """(model, z, mean, logvar) of a finished run: ``images`` images of its data (fixed seed),
    their posterior means and log-variances, and one z per image drawn from q(z|x)."""
    import latentSpace
    from sbd_vae import encoding

    model, _, data = latentSpace.load_run(run)
    x = data.images_from_factors(data.sample_factors(images, np.random.RandomState(seed)))
    mean, logvar = encoding.encode(model, x)  # (n, D) each
    z = mean + np.exp(0.5 * logvar) * np.random.RandomState(seed + 1).randn(*mean.shape)
    return model, z, mean, logvar


def tc_by_batch(run, batches, images: int, seed: int = 0, estimator=None, dataset_size=None):
    """{batch size: mean TC estimate (nats) over the consecutive batches of ``images`` codes of
    ``run``}, by ``estimator`` with N = ``dataset_size`` (default: the run model's own)."""
    model, z, mean, logvar = run_codes(run, images, seed)
    estimator = estimator or model.tc_estimator
    return batch_means(z, mean, logvar, batches, estimator, dataset_size or model.tc_dataset_size)


def _fmt_n(n) -> str:
    return "any" if n is None else f"{n:,}".replace(",", " ")


def main(argv=None) -> str:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 2)[2],
    )  # fmt: skip
    p.add_argument("runs", nargs="*", help="finished run directories to re-estimate (optional)")
    p.add_argument(
        "--batches",
        type=int,
        nargs="+",
        default=[16, 32, 64, 256, 1024],
        help="batch sizes M to estimate on, each in [2, --images]",
    )
    p.add_argument(
        "--images",
        type=int,
        default=4096,
        help="codes per simulation or run; a size M averages its images // M batches",
    )
    p.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=list(SIZES),
        help="dataset sizes N of the simulation (default: the presets' grids, dSprites)",
    )
    p.add_argument(
        "--sigmas",
        type=float,
        nargs="+",
        default=[0.1, 0.5, 1.0],
        help="posterior standard deviations σ of the simulation (the prior's is 1)",
    )
    p.add_argument("--latent_dim", type=int, default=10, help="latents D of the simulation")
    p.add_argument(
        "--estimators",
        nargs="+",
        choices=ESTIMATORS,
        default=list(ESTIMATORS),
        help="estimators to report for the runs",
    )
    p.add_argument(
        "--run_n",
        type=int,
        default=None,
        help="N for the runs (default: each model's tc_dataset_size)",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the simulated codes, the run's images and z"
    )
    p.add_argument("--no_simulation", action="store_true", help="report the runs only")
    a = p.parse_args(argv)
    if any(b < 2 or b > a.images for b in a.batches):
        p.error(f"--batches must lie in [2, --images {a.images}]")
    if any(n < max(a.batches) for n in a.sizes):
        p.error(f"--sizes must be at least the largest batch, {max(a.batches)} (MSS needs N ≥ M)")
    if any(not s > 0 for s in a.sigmas) or a.latent_dim < 1:
        p.error("--sigmas must be > 0 and --latent_dim ≥ 1")
    from tqdm.auto import tqdm

    cols = " | ".join(f"M = {b}" for b in a.batches)
    rule = "|---|---|---|" + "---|" * len(a.batches)
    out = []
    if not a.no_simulation:
        out += [f"Simulation: D = {a.latent_dim} independent latents, μ ~ N(0, I), posterior "
                f"std σ, true TC = 0; mean estimate (nats) over {a.images} codes (seed {a.seed}).",
                "", f"| σ | estimator | N | {cols} |", rule]  # fmt: skip
        rows = simulate(a.batches, a.sizes, a.sigmas, a.images, a.latent_dim, a.seed)
        for r in rows:
            out.append(f"| {r['sigma']:g} | {r['estimator']} | {_fmt_n(r['n'])} | "
                       + " | ".join(f"{r['tc'][b]:.2f}" for b in a.batches) + " |")  # fmt: skip
    if a.runs:
        where = f"N = {_fmt_n(a.run_n)}" if a.run_n else "each run's own N"
        out += [""] * bool(out) + [
            f"Trained runs ({a.images} codes, seed {a.seed}), at {where}; * marks the estimator "
            "a tcvae run trained with.", "", f"| run | estimator | N | {cols} |", rule,
        ]  # fmt: skip
        for run in tqdm(a.runs, desc="runs", unit="run"):
            model, *codes = run_codes(run, a.images, a.seed)
            n = a.run_n or model.tc_dataset_size
            for est in a.estimators:
                tc = batch_means(*codes, a.batches, est, n)
                own = "*" if model.objective == "tcvae" and est == model.tc_estimator else ""
                out.append(f"| {Path(run).name} | {est}{own} | {_fmt_n(n)} | "
                           + " | ".join(f"{tc[b]:.2f}" for b in a.batches) + " |")  # fmt: skip
    table = "\n".join(out)
    print(table)
    return table


if __name__ == "__main__":
    main()
