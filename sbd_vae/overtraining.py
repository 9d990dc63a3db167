"""Scores over training: the snapshot scores of a sweep's runs (``metrics.json["snapshots"]``,
written by ``latentSpace.evaluate --all-snapshots``) as a table, plots, and the tests the report
prints about them.

Three questions, each answered by a rule fixed before the data (issue 18):
- **Have the scores settled?** A run's score is "settled" when its last two snapshots agree within
  ``SETTLE_TOL`` (absolute, on [0, 1] scores); otherwise the run is labelled by its budget, never
  "converged". The loss settling is not enough (convergence.py checks that separately).
- **Do the scores climb with training?** Each run is its own before/after pair: the score at its
  last snapshot minus the score at ``BEFORE_STEP`` (the narrow study's whole budget), a paired
  t-test over all runs (scipy.stats.ttest_1samp of the differences) with a 95% interval.
- **Does a β effect appear with budget?** The report's trend test on log β at every snapshot step.

Nothing is computed when this module is imported.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from . import plotting
from .significance import values_by_beta

# |score(last) − score(second to last)| ≤ SETTLE_TOL on every SETTLE_KEYS: the scores have settled.
# 0.03 is about half the narrow study's seed std of MIG (0.07 at β=1): a change below it is not
# one a 3-seed study can resolve anyway.
SETTLE_TOL = 0.03
SETTLE_KEYS = ("mig", "dci_disentanglement")
# The "before" of every run's before/after pair: the narrow study's budget (8 000 steps of 32).
BEFORE_STEP = 8000
# Scores followed over training in the report (and every per-factor MIG gap).
CURVE_KEYS = ("mig", "dci_disentanglement", "dci_completeness", "dci_informativeness_test",
              "sap_discrete", "factor_vae_eval_accuracy", "active_units", "kl_total",
              "recon_excess")  # fmt: skip


def snapshot_records(rows) -> list[dict]:
    """One record per (run, snapshot step) from the report's scored rows (``report.collect``):
    run, objective, beta, beta_norm, seed, step, images_seen, every score, ``mig_<factor>`` and
    ``informativeness_<factor>``, recon_excess, kl_total, active_units. Sorted by run, step."""
    out = []
    for row in rows:
        block = (row["metrics"].get("snapshots") or {}).get("steps") or {}
        r = row["run"]
        for key in sorted(block, key=int):
            s = block[key]
            rec = {"run": r["name"], "objective": r["objective"], "beta": r["beta"],
                   "beta_norm": r["beta_norm"], "seed": r["seed"]}  # fmt: skip
            rec.update({k: v for k, v in s.items() if isinstance(v, int | float)})
            for kind, scores in (s.get("per_factor") or {}).items():
                rec.update({f"{kind}_{f}": float(v) for f, v in scores.items()})
            out.append(rec)
    return out


def snapshot_steps(records) -> list[int]:
    """The snapshot steps every run of ``records`` has, ascending (runs compare only there)."""
    by_run = {}
    for r in records:
        by_run.setdefault(r["run"], set()).add(int(r["step"]))
    return sorted(set.intersection(*by_run.values())) if by_run else []


def at_step(records, step: int) -> list[dict]:
    return [r for r in records if int(r["step"]) == int(step)]


def settled(records, keys=SETTLE_KEYS, tol=SETTLE_TOL) -> list[dict]:
    """Per run: its last two snapshot steps, the change of each of ``keys`` between them, and
    settled = every |change| ≤ ``tol``. A run with one snapshot is not settled (nothing to compare)."""
    out = []
    for run in dict.fromkeys(r["run"] for r in records):
        rs = sorted((r for r in records if r["run"] == run), key=lambda r: int(r["step"]))
        row = {"run": run, "beta": rs[0]["beta"], "seed": rs[0]["seed"], "steps": None,
               "change": {}, "settled": False}  # fmt: skip
        if len(rs) >= 2:
            a, b = rs[-2], rs[-1]
            row["steps"] = (int(a["step"]), int(b["step"]))
            row["change"] = {k: float(b.get(k, math.nan)) - float(a.get(k, math.nan)) for k in keys}
            row["settled"] = all(abs(v) <= tol for v in row["change"].values())
        out.append(row)
    return out


def climb(records, key: str, before: int = BEFORE_STEP) -> dict | None:
    """The paired before/after test of ``key``: per run, its value at its last snapshot minus its
    value at step ``before``; the mean of those differences over runs, its 95% t interval and the
    two-sided p of a one-sample t-test against 0 (= a paired t-test; scipy.stats.ttest_1samp).
    None when fewer than 2 runs have both steps."""
    from scipy import stats

    diffs, last_steps = [], set()
    for run in dict.fromkeys(r["run"] for r in records):
        rs = {int(r["step"]): r for r in records if r["run"] == run}
        last = max(rs)
        if before in rs and last > before and key in rs[last] and key in rs[before]:
            diffs.append(float(rs[last][key]) - float(rs[before][key]))
            last_steps.add(last)
    d = np.asarray(diffs)
    d = d[np.isfinite(d)]
    if len(d) < 2:
        return None
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    half = float(stats.t.ppf(0.975, len(d) - 1) * sd / math.sqrt(len(d)))
    p = float(stats.ttest_1samp(d, 0.0).pvalue) if sd > 0 else math.nan  # no spread: not testable
    return dict(key=key, n=len(d), before=before, after=sorted(last_steps), mean=mean, sd=sd,
                ci=(mean - half, mean + half), p=p)  # fmt: skip


# ----------------------------------------------------------------------------- plots
def plot_over_training(records, keys, out, title, labels=None) -> Path:
    """One panel per key: the score against images seen (log x), one line per β (mean over seeds)
    with a band of ± sample std, single seeds as thin lines. PNG, atomic."""
    cols = min(3, len(keys)) or 1
    rows = -(-len(keys) // cols) or 1
    fig = plotting.figure(max(4.0 * cols, 8.0), 3.0 * rows + 0.9)
    axes = fig.subplots(rows, cols, squeeze=False)
    betas = sorted({r["beta"] for r in records})
    for ax, key in zip(axes.flat, keys):
        for i, b in enumerate(betas):
            rs = [r for r in records if r["beta"] == b]
            for run in dict.fromkeys(r["run"] for r in rs):  # each seed, thin
                pts = sorted((r["images_seen"], r.get(key, np.nan)) for r in rs if r["run"] == run)
                ax.plot(*zip(*pts), color=f"C{i}", lw=0.6, alpha=0.35)
            x = sorted({r["images_seen"] for r in rs})
            v = [
                np.array([r.get(key, np.nan) for r in rs if r["images_seen"] == s], float)
                for s in x
            ]
            n = np.array([np.isfinite(a).sum() for a in v])
            m = np.array([np.nanmean(a) if k else np.nan for a, k in zip(v, n)])
            sd = np.array([np.nanstd(a, ddof=1) if k > 1 else 0.0 for a, k in zip(v, n)])
            ax.plot(x, m, color=f"C{i}", marker="o", ms=3, label=f"β={b:g} (n={n.max()})")
            ax.fill_between(x, m - sd, m + sd, color=f"C{i}", alpha=0.15, lw=0)
        ax.set_xscale("log")
        ax.set_title((labels or {}).get(key, key), fontsize=9)
        ax.set_xlabel("images seen", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(keys) :]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(f"{title}\nmean ± sample std over seeds (thin: single seeds)", fontsize=9)
    fig.tight_layout()
    out = plotting.save(fig, out)
    fig.clear()
    return out


# ----------------------------------------------------------------------------- the report
def _pm(v) -> str:
    v = np.asarray(v, float)
    v = v[np.isfinite(v)]
    if not len(v):
        return "-"
    return f"{v.mean():.3f} ± {v.std(ddof=1):.3f}" if len(v) > 1 else f"{v.mean():.3f}"


def steps_table(records, keys, display) -> list[str]:
    """Markdown: one row per (snapshot step, β), mean ± sample std over seeds of ``keys``."""
    head = ["step", "images seen", "β", "seeds", *map(display, keys)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for step in snapshot_steps(records):
        rs = at_step(records, step)
        for b, vals in values_by_beta(rs, keys[0]).items():
            cells = [str(step), f"{rs[0]['images_seen']:,}", f"{b:g}", str(len(vals))]
            cells += [_pm(values_by_beta(rs, k)[b]) for k in keys]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def over_training_md(records, display, trend=None, plots=None) -> list[str]:
    """The report's "Scores over training" section: the per-step table, the settle rule per run,
    the paired climb of each score from step ``BEFORE_STEP`` to the last snapshot, the trend test
    across β at each step (``trend(records, key) -> str``, the report's pre-specified test) and the
    plots (``plots``: {title: file name})."""
    if not records:
        return []
    factor_keys = sorted({k for r in records for k in r if k.startswith("mig_")})
    keys = [k for k in CURVE_KEYS if any(k in r for r in records)]
    lines = ["## Scores over training", "",
             "Every run's weights were kept at its `--snapshot_steps` and scored with the same "
             "protocol and metric seed as its final model (`latentSpace.py evaluate RUN "
             "--all-snapshots`), so each run is its own before/after pair.", "",
             *steps_table(records, keys, display), "", "Per-factor MIG gap over training:", "",
             *steps_table(records, factor_keys, display)]  # fmt: skip
    rows = settled(records)
    n_ok = sum(r["settled"] for r in rows)
    lines += ["", f"**Settled scores** (rule fixed before the data: the last two snapshots agree "
              f"within {SETTLE_TOL:g} on {', '.join(map(display, SETTLE_KEYS))}): {n_ok} of "
              f"{len(rows)} runs. A run that has not settled is described by its budget, not "
              "called converged.", "",
              "| run | β | seed | steps compared | " + " | ".join(f"Δ {display(k)}" for k in SETTLE_KEYS)
              + " | settled |", "|" + "---|" * (5 + len(SETTLE_KEYS))]  # fmt: skip
    for r in rows:
        ch = [f"{r['change'].get(k, math.nan):+.3f}" for k in SETTLE_KEYS]
        steps = f"{r['steps'][0]} → {r['steps'][1]}" if r["steps"] else "-"
        lines.append(f"| {r['run']} | {r['beta']:g} | {r['seed']} | {steps} | {' | '.join(ch)} | "
                     f"{'yes' if r['settled'] else 'no'} |")  # fmt: skip
    climbs = [c for k in [*SETTLE_KEYS, *factor_keys] if (c := climb(records, k))]
    if climbs:
        lines += ["", f"**Do the scores climb with training?** Per run, the score at its last "
                  f"snapshot minus the score at step {BEFORE_STEP} (the narrow study's budget); "
                  "mean over runs, 95% t interval, paired t-test p (pre-specified: one test per "
                  "score, all β pooled; p uncorrected across scores).", "",
                  "| score | runs | steps | mean change | 95% CI | p |", "|---|---|---|---|---|---|"]  # fmt: skip
        for c in climbs:
            lines.append(f"| {display(c['key'])} | {c['n']} | {c['before']} → "
                         f"{'/'.join(map(str, c['after']))} | {c['mean']:+.3f} | "
                         f"[{c['ci'][0]:+.3f}, {c['ci'][1]:+.3f}] | {_p(c['p'])} |")  # fmt: skip
    if trend is not None:
        lines += ["", "**Does a β effect appear with budget?** The trend test across β at each "
                  "snapshot step:", ""]  # fmt: skip
        for step in snapshot_steps(records):
            for key in SETTLE_KEYS:
                lines.append(f"- step {step}, {display(key)}: {trend(at_step(records, step), key)}")
    for title, name in (plots or {}).items():
        lines += ["", f"### {title}", "", f"![{title}]({name})"]
    return lines


def _p(p: float) -> str:
    return "n/a (no spread)" if not math.isfinite(p) else f"{p:.3g}"


__all__ = ["BEFORE_STEP", "SETTLE_KEYS", "SETTLE_TOL", "at_step", "climb", "over_training_md",
           "plot_over_training", "settled", "snapshot_records", "snapshot_steps", "steps_table"]  # fmt: skip
