"""How the β-TCVAE total-correlation estimate depends on the batch it is computed on.

    python scripts/tc_batch_bias.py results/objectives/tcvae_beta4_seed0 results/study/beta4_seed0

For each finished run: encode ``--images`` images of its data (fixed seed), draw one z per image
from q(z|x), and average ``variationAutoEncoder.total_correlation`` (minibatch stratified
sampling, Chen et al. 2018, App. C.2, N = hparams.TC_DATASET_SIZE) over consecutive batches of
each size in ``--batches``. The estimator's batch is the training batch in a tcvae run, so this
shows what the β-weighted term of the training loss measured. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def tc_by_batch(run, batches, images: int, seed: int = 0) -> dict[int, float]:
    """{batch size: mean TC estimate (nats) over the consecutive batches of ``images`` codes}."""
    import latentSpace
    import variationAutoEncoder as V
    from sbd_vae import encoding

    model, _, data = latentSpace.load_run(run)
    x = data.images_from_factors(data.sample_factors(images, np.random.RandomState(seed)))
    mean, logvar = encoding.encode(model, x)  # (N, D) each
    z = mean + np.exp(0.5 * logvar) * np.random.RandomState(seed + 1).randn(*mean.shape)
    out = {}
    for b in batches:
        est = [
            float(
                V.total_correlation(
                    z[i : i + b].astype("float32"), mean[i : i + b], logvar[i : i + b]
                )
            )  # fmt: skip
            for i in range(0, images - b + 1, b)
        ]
        out[b] = float(np.mean(est))
    return out


def main(argv=None) -> str:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+")
    p.add_argument("--batches", type=int, nargs="+", default=[32, 256, 1024, 4096])
    p.add_argument("--images", type=int, default=4096)
    a = p.parse_args(argv)
    if any(b < 2 or b > a.images for b in a.batches):
        p.error(f"--batches must lie in [2, --images {a.images}]")
    from tqdm.auto import tqdm

    lines = ["| run | " + " | ".join(f"B = {b}" for b in a.batches) + " |",
             "|---|" + "---|" * len(a.batches)]  # fmt: skip
    for run in tqdm(a.runs, desc="runs", unit="run"):
        tc = tc_by_batch(run, a.batches, a.images)
        lines.append(
            f"| {Path(run).name} | " + " | ".join(f"{tc[b]:.2f}" for b in a.batches) + " |"
        )
    table = "\n".join(lines)
    print(table)
    return table


if __name__ == "__main__":
    main()
