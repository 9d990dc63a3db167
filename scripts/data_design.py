"""How much each factor moves the pixels, for several data designs: the evidence, measured without
training, for choosing the image size, object scale and position range of a study.

The ELBO pays for a factor in reconstruction nats, roughly in proportion to how many pixels change
when that factor changes. For each design and factor this draws ``--n`` random factor vectors,
re-draws that one factor (to a different value of its grid) and measures the mean absolute pixel
change of the image (L1, in units of one fully inked pixel), beside the object's mean ink. A factor
whose change moves few pixels is cheap to drop at any β, and one that moves pixels along a nearly
linear path gives the ELBO little reason to align an axis with it (issue 18, point 3).

    python scripts/data_design.py                    # the narrow, wide and wide-64² designs
    python scripts/data_design.py --out results/study_wide/data_design.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# name: (image_size, scale_range, pos_range). "narrow" is the committed study (results/study),
# "wide" the long study (results/study_wide), "wide64" the same design at 64².
DESIGNS = {
    "narrow 32² (study)": (32, (0.6, 0.9), (-0.1, 0.1)),
    "wide 32² (wide)": (32, (0.3, 0.45), (-0.3, 0.3)),
    "wide 64²": (64, (0.3, 0.45), (-0.3, 0.3)),
}


def factor_effects(ds, n: int, seed: int = 0) -> dict:
    """{factor: mean L1 pixel change when only it is re-drawn} and "ink" (mean object ink), over
    ``n`` random factor vectors of ``ds`` (a ``dataset.ShapesDataset``)."""
    rng = np.random.RandomState(seed)
    base = ds.sample_factors(n, rng)  # (n, K) int
    x0 = ds.images_from_factors(base)  # (n, S, S, 1) float32 in [0, 1]
    out = {"ink": float(x0.reshape(n, -1).sum(axis=1).mean())}
    for k, (name, size) in enumerate(zip(ds.factor_names, ds.factor_sizes)):
        if size < 2:
            out[name] = float("nan")
            continue
        moved = base.copy()
        moved[:, k] = (base[:, k] + rng.randint(1, size, n)) % size  # another value, uniformly
        x1 = ds.images_from_factors(moved)
        out[name] = float(np.abs(x1 - x0).reshape(n, -1).sum(axis=1).mean())
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data", default="data/shapes.npz", help="base renders (make data)")
    p.add_argument("--n", type=int, default=2000, help="factor vectors per design (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="RNG seed of the factor vectors")
    p.add_argument("--out", default=None, help="also write the markdown table to this file")
    args = p.parse_args(argv)
    from dataset import ShapesDataset

    rows = []
    for name, (size, scale, pos) in DESIGNS.items():
        ds = ShapesDataset(args.data, image_size=size, scale_range=scale, pos_range=pos)
        eff = factor_effects(ds, args.n, args.seed)
        rows.append((name, size, scale, pos, ds, eff))
    factors = list(rows[0][4].factor_names)
    head = ["design", "image", "scale", "pos", "object ink (px)", *factors]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, size, scale, pos, _ds, eff in rows:
        cells = [
            name,
            f"{size}²",
            f"{scale[0]:g}–{scale[1]:g}",
            f"±{pos[1]:g}",
            f"{eff['ink']:.1f}",
        ]
        cells += [f"{eff[f]:.1f} ({eff[f] / eff['ink']:.2f})" for f in factors]
        lines.append("| " + " | ".join(cells) + " |")
    text = (
        f"Mean L1 pixel change when one factor is re-drawn (units: one fully inked pixel; in "
        f"brackets, as a fraction of the object's ink), {args.n} random factor vectors, seed "
        f"{args.seed}, `python scripts/data_design.py`.\n\n" + "\n".join(lines) + "\n"
    )
    print(text)
    if args.out:
        from sbd_vae import rundir

        rundir.write_text(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
