"""Which budget gets a model past position and size? Loss curves and KL per latent over training.

Reads only each run's ``history.csv`` (no evaluation pass), so it also works on runs that are still
training. Writes to ``--out``:

- ``curves.png``: loss, reconstruction and KL against step, the runs overlaid
  (``trainviz.plot_curves``);
- ``kl_<run>.png``: the KL of every latent against step, one figure per run
  (``trainviz.plot_kl_dims``);
- ``budget.md``: per run and chosen step, the losses and the latents above
  ``trainviz.ONSET_NATS``, and each latent's onset (``trainviz.latent_onsets``: the step from which
  its KL stays above the threshold). Under the β-VAE objective units open one at a time
  (Burgess et al. 2018, §4); at 32² the first ones carry position and size (results/study), so a
  unit that opens later is the first sign of shape or pose. Which factor a unit carries is the
  scored snapshots' job (``latentSpace.py evaluate RUN --steps ...``), not this table's.

    python scripts/training_budget.py results/seed_128/beta1_seed0 results/seed_128/beta102_seed0 \\
        --steps 500 1000 2000 3000 4000 --out results/seed_128
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _row_at(rows: list[dict], step: int) -> dict | None:
    return next((r for r in rows if r["step"] == step), None)


def budget_table(run_dirs: list[Path], steps: list[int]) -> str:
    """The markdown of budget.md for ``run_dirs`` at the logged ``steps`` (a step a run has not
    logged yet is left out of its rows)."""
    from sbd_vae import rundir, trainviz

    nats = trainviz.ONSET_NATS
    lines = [
        "# Loss and KL per latent over training",
        "",
        f"Latents above {nats:g} nat of KL (history.csv: the mean over the logging interval that "
        "ends at the step), and each latent's onset: the step from which its KL stays above "
        f"{nats:g} nat to the run's last logged step. Written by `scripts/training_budget.py`.",
        "",
        f"| run | β | step | images seen | loss | recon | KL | latents > {nats:g} nat (KL, nats) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    onset_lines = ["", "| run | last step | onsets (latent: step), in order |", "|---|---|---|"]
    for run in run_dirs:
        cfg = rundir.read_json(run / "config.json", "run config", "pass a run directory")
        rows = rundir.read_history(run)
        if not rows:
            raise SystemExit(f"{run}: no history.csv rows yet; pass a run that has logged a step")
        for step in steps:
            r = _row_at(rows, step)
            if r is None:
                continue
            dims = sorted((k for k in r if k.startswith("kl_")), key=lambda k: -r[k])
            on = [f"z{k[3:]} {r[k]:.1f}" for k in dims if r[k] > nats]
            lines.append(
                f"| {run.name} | {cfg['beta']:g} | {step} | {step * cfg['batch_size']:,} | "
                f"{r['loss']:.1f} | {r['recon']:.1f} | {r['kl']:.1f} | "
                f"{len(on)}: {', '.join(on) or '—'} |"
            )
        onsets = trainviz.latent_onsets(rows)
        opened = sorted((s, d) for d, s in onsets.items() if s is not None)
        text = ", ".join(f"z{d}: {s}" for s, d in opened) or "none"
        onset_lines.append(f"| {run.name} | {rows[-1]['step']} | {text} |")
    return "\n".join(lines + onset_lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path, help="run directories (with history.csv)")
    p.add_argument("--steps", nargs="+", type=int, required=True,
                   help="logged steps to tabulate in budget.md (multiples of --log_every)")  # fmt: skip
    p.add_argument("--out", type=Path, required=True, help="folder for the figures and budget.md")
    args = p.parse_args(argv)
    for run in args.runs:
        if not (run / "config.json").is_file():
            p.error(f"{run} is not a run directory (no config.json): pass runs/NAME or results/…")
    from sbd_vae import rundir, trainviz

    args.out.mkdir(parents=True, exist_ok=True)
    rundir.write_text(args.out / "budget.md", budget_table(args.runs, args.steps))
    trainviz.plot_curves(args.runs, out=args.out / "curves.png")
    for run in args.runs:
        trainviz.plot_kl_dims(run, out=args.out / f"kl_{run.name}.png")
    print(f"wrote {args.out / 'budget.md'}, curves.png and kl_<run>.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
