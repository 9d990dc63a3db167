"""Two studies at equal training steps: does the data design change the scores at a given β?

The wide study (results/study_wide) differs from the narrow one (results/study) in its data and
its budget. Its snapshots separate the two: at the narrow study's whole budget (8 000 steps) the
only difference left is the data. This compares, for every β both studies trained, each run's
score at ``--step`` (a snapshot score, or the final score when the run ended there), with the
report's statistics (``sbd_vae.significance``): Welch's t-test per β, Holm-corrected over the β of
each score, the 95% Welch interval of the difference and the difference the seeds could detect at
80% power. The test was fixed before the wide study's β = 4 and seed-2 runs were scored.

    python scripts/compare_studies.py results/study results/study_wide --step 8000 \\
        --out results/study_wide/narrow_vs_wide.md

Caveat printed with the table: the two studies score on different metric grids (the factor
ranges differ, and each grid is sized so neighbouring values are ≥ 1 px apart), so a score
difference is a difference of designs, metric grid included.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

KEYS = ("mig", "dci_disentanglement")  # the two scores the settle rule and the README use


def scores_at(study: Path, step: int, key: str) -> dict[float, list[float]]:
    """{β: [score of each seed's run at ``step``]} for the β-VAE runs of a published study.
    A run counts when it has a scored snapshot at ``step`` or ended (and was scored) at it."""
    out: dict[float, list[float]] = {}
    for path in sorted(study.glob("*/metrics.json")):
        m = json.loads(path.read_text())
        snaps = (m.get("snapshots") or {}).get("steps") or {}
        if str(step) in snaps:
            value = snaps[str(step)].get(key)
        elif int(m.get("step", -1)) == step:
            value = m.get(key)
        else:
            continue
        if value is not None:
            out.setdefault(float(m["beta"]), []).append(float(value))
    return out


def compare(a: Path, b: Path, step: int, keys=KEYS) -> list[dict]:
    """One row per (score, β in both studies): Welch's test of b − a (mean_a, mean_b, n_a, n_b,
    diff, ci, p), Holm-adjusted over the β of each score (p_holm), and the difference the seeds
    could detect at 80% power (detectable). p is NaN with fewer than ``MIN_SEEDS`` seeds a side."""
    from sbd_vae import significance as sig

    rows = []
    for key in keys:
        sa, sb = scores_at(a, step, key), scores_at(b, step, key)
        family = []
        for beta in sorted(set(sa) & set(sb)):
            # welch_pair's first group is b (so diff = b − a); the table names the groups a, b
            w = sig.welch_pair(sb[beta], sa[beta], sig.MIN_SEEDS, sig.ALPHA, sig.POWER)
            family.append(dict(w, key=key, beta=beta, n_a=w["n_b"], n_b=w["n_a"],
                               mean_a=w["mean_b"], mean_b=w["mean_a"]))  # fmt: skip
        rows += sig.holm_rows(family, sig.ALPHA)
    return rows


def markdown(rows: list[dict], a: Path, b: Path, step: int) -> str:
    def f(x, fmt="{:.3f}"):
        return "—" if x is None or not np.isfinite(x) else fmt.format(x)

    lines = [
        f"# {b.name} − {a.name} at step {step}, per β",
        "",
        f"Each run's score at step {step} (a scored snapshot, or the final score of a run that "
        f"ended there). Welch's t-test per β, Holm-corrected over the β of each score; 95% "
        f"interval of the difference {b.name} − {a.name}; 'detectable' is the difference the "
        f"seeds could detect at 80% power (pooled seed SD). Made by `scripts/compare_studies.py`.",
        "",
        f"| score | β | n ({a.name}, {b.name}) | {a.name} | {b.name} | difference | 95% CI | "
        f"p | Holm p | detectable |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        note = f" ({r['note']})" if r.get("note") else ""
        lines.append(
            f"| {r['key']} | {r['beta']:g} | {r['n_a']}, {r['n_b']} | {f(r['mean_a'])} | "
            f"{f(r['mean_b'])} | {f(r['diff'], '{:+.3f}')} | [{f(r['ci'][0], '{:+.3f}')}, "
            f"{f(r['ci'][1], '{:+.3f}')}] | {f(r['p'], '{:.3g}')}{note} | "
            f"{f(r.get('p_holm'), '{:.3g}')} | {f(r['detectable'])} |"
        )
    lines += [
        "",
        "The studies score on different metric grids (factor ranges differ; each grid is sized so "
        "that neighbouring values are ≥ 1 px apart), so a difference is one of designs, metric "
        "grid included.",
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("a", type=Path, help="the reference study, e.g. results/study")
    p.add_argument("b", type=Path, help="the compared study, e.g. results/study_wide")
    p.add_argument("--step", type=int, default=8000,
                   help="the training step both are compared at (default 8000)")  # fmt: skip
    p.add_argument("--out", type=Path, default=None,
                   help="write the markdown table here (default: print it)")  # fmt: skip
    args = p.parse_args(argv)
    for d in (args.a, args.b):
        if not any(d.glob("*/metrics.json")):
            p.error(f"{d}: no scored runs (*/metrics.json); publish and score a study there first")
    md = markdown(compare(args.a, args.b, args.step), args.a, args.b, args.step)
    if args.out is None:
        print(md)
        return
    tmp = args.out.with_suffix(args.out.suffix + ".tmp")
    tmp.write_text(md)
    tmp.replace(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
