"""The report of a sweep: every finished run scored, ``<sweep>/report/`` (scores.csv, score-vs-β
plots, index.md with the pre-specified tests (significance.py: the trend on log β, Holm-corrected
Welch pairs), convergence, and the scores over training (overtraining.py)), and the README figure set.

``latentSpace.report`` and ``latentSpace.figures`` are the public entry points: they pass their
``evaluate`` (which loads a run with the repository's model and dataset classes) to the functions
here, which otherwise only read run directories.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from pathlib import Path

import numpy as np

from . import datasets, overtraining, rundir
from .config import load_config
from .convergence import KL_TOL_NATS, KL_TOL_REL, LOSS_TOL, TAIL, run_convergence
from .encoding import ACTIVE_VAR
from .evaluation import FIGURES, HEADLINE, METRICS_SCHEMA, metric_order, read_metrics
from .figures import plot_vs_beta, seed_std
from .hparams import OBJECTIVES
from .metrics.irs import DIFF_QUANTILE
from .metrics.registry import REGISTRY, metric_counts
from .protocol import QUICK_NOTE
from .rundir import RunDirError
from .significance import (
    ALPHA,
    MIN_SEEDS,
    POWER,
    by_objective,
    compare_objectives,
    pairwise_betas,
    trend,
    values_by_beta,
)

# How tables and plots name a score; scores.csv keeps the keys. "SAP" is the discrete SAP of
# disentanglement_lib's study (Kumar et al. 2018); the continuous variant is labelled as such.
DISPLAY = {
    "mig": "MIG", "dci_disentanglement": "DCI disentanglement", "dci_completeness": "DCI completeness",
    "dci_informativeness_test": "DCI informativeness", "sap_discrete": "SAP",
    "sap_continuous": "SAP (continuous)", "modularity": "Modularity",
    "explicitness_test": "Explicitness", "beta_vae_eval_accuracy": "BetaVAE score",
    "factor_vae_eval_accuracy": "FactorVAE score", "active_units": "active units",
    "recon": "recon −log p(x|μ) (nats)", "recon_excess": "recon excess over entropy floor (nats)",
    "recon_mse": "pixel MSE", "kl_total": "total KL (nats)", "irs": "IRS",
    "gaussian_total_correlation": "Gaussian TC",
    "gaussian_total_correlation_active": "Gaussian TC (active latents)",
    "gaussian_wasserstein_correlation": "Gaussian WC",
    "gaussian_wasserstein_correlation_norm": "Gaussian WC (norm.)", "mutual_info_score": "MI score",
}  # fmt: skip
# The scores that need no ground truth (Locatello et al. 2019): 0 is a factorised code, and more is
# more dependence between latents, so their plots say so and the index says which way they point.
# (A trend that rises with β on these is a *less* factorised code at larger β.)
LOWER_IS_FACTORISED = (
    "gaussian_total_correlation", "gaussian_total_correlation_active",
    "gaussian_wasserstein_correlation",
    "gaussian_wasserstein_correlation_norm", "mutual_info_score",
)  # fmt: skip
# Per-run columns of scores.csv after the metrics: reconstruction, active units, KL.
RUN_COLUMNS = ("recon", "recon_floor", "recon_excess", "recon_mse", "active_units", "kl_total")


def display(key: str) -> str:
    """The table/plot name of a scores.csv column (``DISPLAY``, or the key itself)."""
    if key.startswith("mig_"):
        return f"MIG gap: {key[4:]}"
    if key.startswith("informativeness_"):
        return f"informativeness: {key[16:]}"
    return DISPLAY.get(key, key)


# ----------------------------------------------------------------------------- sweeps
def sweep_runs(sweep_dir) -> list[dict]:
    """Every run of a sweep: sweep.json's entries plus run directories found beside them.

    Each dict has name, path, objective (sweep.json's, else config.json's), beta, beta_norm,
    seed, finished (summary.json and model.keras exist), status (sweep.json's, or
    "done"/"unfinished") and error (if the sweep recorded one). Sorted by objective, β, seed.
    """
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise RunDirError(f"{sweep_dir}: no such sweep directory")
    entries = {}
    if (sweep_dir / "sweep.json").exists():
        index = rundir.read_json(sweep_dir / "sweep.json", "sweep index",
                                 "re-run `python training.py sweep ... --out SWEEP` to rewrite it")  # fmt: skip
        for r in index.get("runs", []):
            entries[r["name"]] = dict(r)
    for d in sorted(sweep_dir.iterdir()):
        # hidden folders are a killed publish's .<run>.tmp<pid> / .old<pid> (sweep.publish_run)
        hidden = d.name.startswith(".")
        if d.is_dir() and not hidden and (d / "config.json").exists() and d.name not in entries:
            cfg = load_config(d)
            entries[d.name] = {"name": d.name, "beta": cfg.beta, "seed": cfg.seed,
                               "beta_norm": cfg.beta_norm, "objective": cfg.objective}  # fmt: skip
    if not entries and not (sweep_dir / "sweep.json").exists():
        raise RunDirError(
            f"{sweep_dir}: not a sweep directory (no sweep.json and no run directories); create one "
            "with `python training.py sweep --preset demo --betas 1 8 32 --out SWEEP`"
        )
    runs = []
    for name, e in entries.items():
        path = sweep_dir / name
        finished = (path / "summary.json").exists() and (path / "model.keras").exists()
        status = (
            "done"
            if finished
            else (e.get("status") if e.get("status") not in (None, "done") else "unfinished")
        )
        objective = e.get("objective")
        if objective is None:  # a sweep.json written before --objectives
            objective = load_config(path).objective if (path / "config.json").exists() else "beta"
        runs.append(dict(name=name, path=path, objective=objective, beta=float(e["beta"]),
                         seed=int(e["seed"]), beta_norm=float(e.get("beta_norm", float("nan"))),
                         finished=finished, status=status, error=e.get("error")))  # fmt: skip
    return [r for group in by_objective(runs).values()
            for r in sorted(group, key=lambda r: (r["beta"], r["seed"]))]  # fmt: skip


def needs_evaluation(m, protocol, seed, run_dir, figures=True, metric_options=None) -> bool:
    """Whether metrics.json ``m`` must be re-computed: absent, of another protocol, seed, schema
    or options, of other sample counts than the protocol's now, without a metric that is to run
    (registered since, or asked for in ``metric_options["metrics"]``), or missing a listed figure.

    Which metrics ran is read from their timings, ``extra["time_<name>_s"]``, which
    ``compute_metrics`` writes for every metric it runs."""
    if m is None or m.get("protocol") != protocol or m.get("seed") != seed:
        return True
    if m.get("schema") != METRICS_SCHEMA:
        return True  # written by an older evaluate (e.g. without recon_excess or per-factor scores)
    same = json.dumps(m.get("metric_options") or {}, sort_keys=True, default=str)
    if same != json.dumps(metric_options or {}, sort_keys=True, default=str):
        return True
    counts = m.get("counts") or {}
    if any(counts.get(k) != v for k, v in metric_counts(protocol).items()):
        return True  # the protocol's sample counts changed since: these numbers are stale
    ran = {k[len("time_") : -len("_s")] for k in m.get("extra") or {} if k.startswith("time_")}
    if any(name not in ran for name in (metric_options or {}).get("metrics") or REGISTRY):
        return True  # a metric registered since was not computed: its columns would be empty
    listed = (m.get("figures") or {}).values()
    if figures and (not listed or not all((Path(run_dir) / f).exists() for f in listed)):
        return True
    return False


def collect(
    sweep_dir,
    evaluate,
    protocol="study",
    seed=0,
    progress=True,
    metric_options=None,
    all_snapshots=False,
) -> dict:
    """Evaluates every finished run of the sweep that lacks metrics of ``protocol`` and ``seed``
    (or has a corrupt metrics.json, which is re-evaluated with a warning naming it), with
    ``evaluate(run_dir, protocol, seed, progress=..., metric_options=...)`` (latentSpace.evaluate).

    Returns dict(rows [per finished, scored run], unfinished [run dicts], failed [(run, error)]).
    """
    runs = sweep_runs(sweep_dir)
    rows, unfinished, failed = [], [r for r in runs if not r["finished"]], []
    done = [r for r in runs if r["finished"]]
    it = done
    if progress and done:
        from tqdm.auto import tqdm

        it = tqdm(done, desc="report", unit="run")
    for r in it:
        try:
            try:
                m = read_metrics(r["path"])
            except RunDirError as e:
                print(f"warning: {e}; re-evaluating", file=sys.stderr)
                m = None
            more = all_snapshots and _unscored_snapshots(m, r["path"], protocol, seed)
            if more or needs_evaluation(
                m, protocol, seed, r["path"], metric_options=metric_options
            ):
                extra = {"all_snapshots": True} if more else {}
                m = evaluate(r["path"], protocol, seed, progress=progress,
                             metric_options=metric_options, **extra)  # fmt: skip
            summary = rundir.read_json(r["path"] / "summary.json", "run summary")
            rows.append({"run": r, "metrics": m, "summary": summary,
                         "convergence": run_convergence(r["path"])})  # fmt: skip
        except (RunDirError, ValueError, OSError) as e:
            failed.append((r, str(e)))
            print(f"warning: {r['name']} could not be evaluated: {e}", file=sys.stderr)
    return dict(rows=rows, unfinished=unfinished, failed=failed, runs=runs)


def _unscored_snapshots(m, run_dir, protocol, seed) -> bool:
    """The run kept snapshots (snapshots/) that its metrics.json has no scores of, for this
    protocol and seed (``--all-snapshots``: score them)."""
    kept = rundir.list_snapshots(run_dir)
    block = (m or {}).get("snapshots") or {}
    if not kept:
        return False
    if (block.get("protocol"), block.get("seed")) != (protocol, seed):
        return True
    return any(str(s) not in (block.get("steps") or {}) for s in kept)


def per_factor_columns(rows) -> list[str]:
    """``mig_<factor>`` then ``informativeness_<factor>`` for every factor the runs were scored on."""
    names = []
    for row in rows:
        for score in (row["metrics"].get("per_factor") or {}).values():
            names += [n for n in score if n not in names]
    pf = [row["metrics"].get("per_factor") or {} for row in rows]
    return [f"{kind}_{n}" for kind in ("mig", "informativeness") for n in names
            if any(n in (p.get(kind) or {}) for p in pf)]  # fmt: skip


def score_table(rows) -> tuple[list[str], list[dict]]:
    """(columns, records) of scores.csv: one record per (objective, β, seed).

    Columns: run, beta, beta_norm, seed (training), eval_seed (metric RNG), protocol, objective
    (README.md, "Objectives"), every metric,
    per-factor scores (``mig_<f>``: the factor's MIG gap; ``informativeness_<f>``: DCI test
    accuracy of predicting it from the whole code), RUN_COLUMNS, kl_0 … kl_{D-1}, then the run's
    training facts: steps, convergence (``converged``, ``loss_change``, ``kl_change_max``: see
    convergence.py), train_seconds and machine."""
    metric_names = metric_order({k for row in rows for k in row["metrics"]["metric_names"]})
    factor_cols = per_factor_columns(rows)
    dims = max((len(row["metrics"].get("kl_per_latent") or []) for row in rows), default=0)
    cols = ["run", "beta", "beta_norm", "seed", "eval_seed", "protocol", "objective", *metric_names,
            *factor_cols, *RUN_COLUMNS, *[f"kl_{i}" for i in range(dims)], "steps", "converged",
            "loss_change", "kl_change_max", "train_seconds", "machine"]  # fmt: skip
    records = []
    for row in rows:
        m, r = row["metrics"], row["run"]
        rec = {"run": r["name"], "objective": r["objective"], "beta": m.get("beta", r["beta"]),
               "seed": r["seed"],
               "beta_norm": m.get("beta_norm", r["beta_norm"]), "eval_seed": m.get("seed"),
               "protocol": m["protocol"]}  # fmt: skip
        rec.update({k: m.get(k, float("nan")) for k in metric_names})
        pf = m.get("per_factor") or {}
        for c in factor_cols:
            kind, name = c.split("_", 1)
            rec[c] = (pf.get(kind) or {}).get(name, float("nan"))
        rec.update({k: m.get(k, float("nan")) for k in RUN_COLUMNS})
        rec.update({f"kl_{i}": v for i, v in enumerate(m.get("kl_per_latent") or [])})
        conv = row.get("convergence") or {}
        summary = row.get("summary") or {}
        rec.update(
            steps=m.get("step"), converged=conv.get("converged"),
            loss_change=conv.get("loss_change", float("nan")),
            kl_change_max=max((abs(v) for v in conv.get("kl_change") or []), default=float("nan")),
            train_seconds=summary.get("train_seconds", float("nan")),
            machine=summary.get("machine", "unknown"),
        )  # fmt: skip
        records.append(rec)
    return cols, records


def _fmt(v) -> str:
    if isinstance(v, str):
        return v
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _md_table(cols, records) -> str:
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |" for r in records]
    return "\n".join(lines)


# report/<file> of each plot; index.md links them in this order.
PLOTS = {
    "scores": "scores_vs_beta.png",
    "factors": "factors_vs_beta.png",
    "recon": "recon_vs_beta.png",
    "active": "active_units_vs_beta.png",
    "over_training": "scores_over_training.png",
    "factors_over_training": "factors_over_training.png",
}
PLOT_TITLES = {
    "scores": "Scores vs β",
    "factors": "Per-factor scores vs β",
    "recon": "Reconstruction vs β",
    "active": "Active units vs β",
    "over_training": "Scores over training",
    "factors_over_training": "Per-factor MIG over training",
}
OVER_TRAINING_PLOTS = ("over_training", "factors_over_training")  # in their own index section
# The index's summary table and significance tests: these columns, mean ± std over seeds.
SUMMARY_EXTRA = ("recon", "recon_excess", "active_units", "kl_total")


def report(
    sweep_dir,
    evaluate,
    protocol="study",
    seed=0,
    progress=True,
    metric_options=None,
    all_snapshots=False,
    baselines_fn=None,
) -> Path:
    """Evaluates what is missing in a sweep (with ``evaluate``, see ``collect``) and writes
    ``<sweep>/report/``; returns its path.

    report/scores.csv         one row per (β, seed): see ``score_table``
    report/scores_vs_beta.png every metric against β (β_norm on top): mean ± sample std over seeds
    report/factors_vs_beta.png per-factor MIG gap and informativeness against β
    report/recon_vs_beta.png, report/active_units_vs_beta.png
    report/index.md           the tables (mean ± std over seeds), the trend test across β and
                              Holm-corrected Welch pairs (significance.py), each run's convergence (convergence.py), the
                              plots, and per β the traversals, factor response, geometry and
                              training GIF of the run (relative links)
    report/scores_over_training.csv, scores_over_training.png, factors_over_training.png
                              where runs have snapshot scores (``all_snapshots=True`` scores every
                              snapshot a run kept): one row per (run, step), the curves, and
                              index.md's "Scores over training" (overtraining.py)
    report/baselines.json     with ``baselines_fn`` (``latentSpace._noise_baselines``): every
                              score of a random code on the sweep's data, cached, and index.md's
                              "Calibration: scores of a random code" (``_baselines_md``)
    Unfinished runs are skipped and listed (stdout and index.md); a sweep with no finished run
    still gets an index.md saying so. ``protocol="quick"`` is labelled in every plot and table.
    """
    return _report(sweep_dir, evaluate, protocol, seed, progress, metric_options, all_snapshots,
                   baselines_fn)[0]  # fmt: skip


def _report(sweep_dir, evaluate, protocol="study", seed=0, progress=True, metric_options=None,
            all_snapshots=False, baselines_fn=None):  # fmt: skip
    sweep_dir = Path(sweep_dir)
    res = collect(sweep_dir, evaluate, protocol, seed, progress, metric_options, all_snapshots)
    out = sweep_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    cols, records = score_table(res["rows"])
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    writer.writeheader()
    for rec in records:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in rec.items()})
    rundir.write_text(out / "scores.csv", buf.getvalue())

    label = f"protocol: {protocol}" + (f" ({QUICK_NOTE})" if protocol == "quick" else "")
    data = data_label(res["rows"])
    if data:  # the scores are of that data, wherever they are shown
        label = f"{data}; {label}"
    metric_names = metric_order({k for row in res["rows"] for k in row["metrics"]["metric_names"]})
    factor_cols = per_factor_columns(res["rows"])
    plots = {}
    for stale in PLOTS.values():
        (out / stale).unlink(missing_ok=True)  # never show plots of an earlier state
    if records:
        labels = {k: display(k) + (" (lower: more factorised)" if k in LOWER_IS_FACTORISED else "")
                  for k in cols}  # fmt: skip
        head = f"{sweep_dir.name}: {{}} vs β\n{label}"
        plots["scores"] = plot_vs_beta(records, metric_names, out / PLOTS["scores"],
                                       head.format("disentanglement scores"), labels)  # fmt: skip
        if factor_cols:
            plots["factors"] = plot_vs_beta(
                records, factor_cols, out / PLOTS["factors"],
                head.format("per-factor scores (which factors each β keeps)"), labels,
            )  # fmt: skip
        plots["recon"] = plot_vs_beta(records, ["recon", "recon_excess", "recon_mse"],
                                      out / PLOTS["recon"],
                                      head.format("reconstruction (decoded from the posterior mean)"),
                                      labels)  # fmt: skip
        labels["active_units"] = f"active units (Var_x μ_d > {ACTIVE_VAR:g}, Burda et al. 2016)"
        plots["active"] = plot_vs_beta(records, ["active_units", "kl_total"], out / PLOTS["active"],
                                       head.format("active units and total KL"), labels)  # fmt: skip
    over_training = _over_training(res["rows"], out, sweep_dir.name, label, plots)
    calibration = _baselines_md(res, records, metric_names, protocol, seed, metric_options,
                                baselines_fn, out)  # fmt: skip
    rundir.write_text(out / "index.md", _index_md(sweep_dir, res, cols, records, metric_names,
                                                  protocol, seed, label, plots, over_training,
                                                  calibration, data))  # fmt: skip
    if not records:
        print(f"[report] {sweep_dir}: no finished runs yet, nothing to score "
              f"({len(res['runs'])} run(s) listed)")  # fmt: skip
    if progress:
        print(f"[report] {len(records)} scored run(s), {len(res['unfinished'])} unfinished, "
              f"{len(res['failed'])} failed → {out}/index.md")  # fmt: skip
        for r in res["unfinished"]:
            print(f"[report] unfinished (skipped): {r['name']} ({r['status']})")
        for row in res["rows"]:  # the convergence check, printed as well as in index.md
            c = row.get("convergence") or {}
            if not c.get("converged"):
                print(f"[report] still moving over the last 20% of steps: {row['run']['name']}: "
                      f"{c.get('note', '')}")  # fmt: skip
    return out, res, records


def _over_training(rows, out, name, label, plots) -> list[str]:
    """scores_over_training.csv and the two curve plots (added to ``plots``) from the runs'
    snapshot scores; the index section's lines ([] when no run has snapshot scores)."""
    (out / "scores_over_training.csv").unlink(missing_ok=True)
    snaps = overtraining.snapshot_records(rows)
    if not snaps:
        return []
    cols = list(dict.fromkeys(k for r in snaps for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    writer.writeheader()
    for rec in snaps:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in rec.items()})
    rundir.write_text(out / "scores_over_training.csv", buf.getvalue())
    keys = [k for k in overtraining.CURVE_KEYS if any(k in r for r in snaps)]
    factor_keys = sorted({k for r in snaps for k in r if k.startswith("mig_")})
    labels = {k: display(k) for k in [*keys, *factor_keys]}
    plots["over_training"] = overtraining.plot_over_training(
        snaps, keys, out / PLOTS["over_training"], f"{name}: scores over training\n{label}", labels
    )
    if factor_keys:
        plots["factors_over_training"] = overtraining.plot_over_training(
            snaps, factor_keys, out / PLOTS["factors_over_training"],
            f"{name}: per-factor MIG gap over training\n{label}", labels,
        )  # fmt: skip
    shown = {PLOT_TITLES[k]: PLOTS[k] for k in OVER_TRAINING_PLOTS if k in plots}

    def trend_at(recs, key):  # the report's primary test, on the runs' scores at one step
        return _trend_md(trend(recs, key)).replace("Trend (primary): ", "")

    return overtraining.over_training_md(snaps, display, trend=trend_at, plots=shown)


def _aggregate(records, keys) -> list[dict]:
    """One row per β: β, β_norm, number of seeds, and "mean ± sample std" of every key."""
    grouped = {k: values_by_beta(records, k) for k in keys}
    out = []
    for b in sorted({r["beta"] for r in records}):
        rs = [r for r in records if r["beta"] == b]
        row = {"β": f"{b:g}", "β_norm": f"{rs[0]['beta_norm']:.3g}", "seeds": str(len(rs))}
        for k in keys:
            v = grouped[k][b]
            row[display(k)] = (
                f"{np.nanmean(v):.3f} ± {seed_std(v):.3f}" if len(v) > 1 else _fmt(float(v[0]))
            )
        out.append(row)
    return out


def _p_md(p) -> str:
    return "–" if not math.isfinite(p) else f"{p:.2g}"


def _ci_md(ci) -> str:
    lo, hi = ci
    return f"{lo:+.3g} to {hi:+.3g}" if math.isfinite(lo) and math.isfinite(hi) else "–"


def _verdict_md(r) -> str:
    """The verdict on one pair: "differs" (Holm p < ALPHA), "no difference detected" with what
    the seeds could have detected (absence of evidence is only as strong as the test), or why
    there was no test."""
    if r["differs"]:
        return "**differs**"
    if not math.isfinite(r["p_holm"]):
        return r["note"] or "not tested"
    d = r["detectable"]
    return "no difference detected" + (f" (could detect ≥ {d:.3g})" if math.isfinite(d) else "")


def _test_cells(r) -> list[str]:
    """diff, 95% CI, Holm p, detectable difference and verdict of one Holm-adjusted Welch row
    (significance.pairwise_betas, significance.compare_objectives)."""
    d = r["detectable"]
    return [f"{r['diff']:+.3g}", _ci_md(r["ci"]), _p_md(r["p_holm"]),
            f"{d:.3g}" if math.isfinite(d) else "–", _verdict_md(r)]  # fmt: skip


def _detectable_md() -> str:
    return (f"Detectable: the difference those seeds would find with {POWER:.0%} power (two-sided "
            f"α = {ALPHA:g}, two-sample t-test, noncentral t, pooled seed SD of the pair); a "
            "smaller one could easily go unseen, so \"no difference detected\" is no evidence of "
            "equality below it.")  # fmt: skip


def _trend_md(tr) -> str:
    """The trend line of one score: OLS slope per doubling of β with its CI and p, Spearman's ρ."""
    if tr["note"]:
        return f"Trend across β: {tr['note']}."
    word = "no trend detected"
    if tr["p"] < ALPHA:
        word = "**rises with β**" if tr["slope"] > 0 else "**falls with β**"
    return (f"Trend (primary): {word}: slope {tr['slope']:+.3g} per doubling of β (95% CI "
            f"{_ci_md(tr['ci'])}), p = {_p_md(tr['p'])}, over {tr['n']} runs at {tr['n_betas']} "
            f"β; Spearman ρ = {tr['rho']:+.2f} (p = {_p_md(tr['p_rho'])}).")  # fmt: skip


def _significance_md(records, keys, of="") -> list[str]:
    """The pre-specified tests between β, per key: the trend across β (OLS slope on log2 β, the
    primary test, with Spearman's ρ), then every pair of β (Welch over seeds, Holm over the pairs
    of that key), each "no difference" with what the seeds could have detected. ``records`` of
    one objective; ``of`` names it in the heading of a sweep of several."""
    lines = [f"## Which differences are real{of}", "",
             "Two tests per score, fixed before any score was seen (pre-specified) and the same "
             "for every score. **Primary: the trend across β**, an ordinary-least-squares slope "
             "of the score on log2 β over all runs (one value per run), per doubling of β with "
             "its 95% CI and the p of slope ≠ 0; Spearman's ρ (Spearman 1904) beside it asks "
             "only for a monotone trend. **Then every pair of β**: Welch's t-test over seeds "
             "(Welch 1947); diff is the mean at β_a minus the mean at β_b, with its 95% "
             "Welch–Satterthwaite CI; p is Holm-adjusted (Holm 1979) over the family of all pairs "
             "of β of that one score (not across scores). A pair differs at Holm p < "
             f"{ALPHA:g}; none is tested with fewer than {MIN_SEEDS} seeds at either β, nor when "
             f"neither β's seeds vary. {_detectable_md()}", ""]  # fmt: skip
    cols = ["β_a", "β_b", "diff (a − b)", "95% CI", "Holm p", f"detectable ({POWER:.0%} power)",
            "verdict"]  # fmt: skip
    for k in keys:
        tr = trend(records, k)
        if not tr["n"]:  # no finite score at any β
            continue
        lines += [f"### {display(k)}", "", _trend_md(tr), ""]
        body = [dict(zip(cols, (f"{r['beta_a']:g}", f"{r['beta_b']:g}", *_test_cells(r))))
                for r in pairwise_betas(records, k)]  # fmt: skip
        lines += [_md_table(cols, body), ""] if body else []
    return lines


def _objectives_md(records, keys) -> list[str]:
    """Objectives side by side at each β they share, per key: Welch's test over seeds, Holm over
    the (β, objective) comparisons of that key, each with its CI and detectable difference."""
    tables = {k: compare_objectives(records, k) for k in keys}
    if not any(tables.values()):
        return []
    lines = ["## Objectives compared at equal β", "",
             "Each objective against the sweep's first at every β both ran, pre-specified: "
             "Welch's t-test over seeds (Welch 1947), the difference with its 95% "
             "Welch–Satterthwaite CI, p Holm-adjusted (Holm 1979) over the family of all "
             "(β, objective) comparisons of that one score; a difference is called real only at "
             f"Holm p < {ALPHA:g} (no test with fewer than {MIN_SEEDS} seeds or without seed "
             f"variance). {_detectable_md()} β weighs a different term in each objective, so "
             "equal β is equal weight on each one's disentangling term, not equal pressure.",
             ""]  # fmt: skip
    cols = ["β", "objectives", "means", "difference", "95% CI", "Holm p",
            f"detectable ({POWER:.0%} power)", "verdict"]  # fmt: skip
    for k, rows in tables.items():
        if not rows:
            continue
        body = [dict(zip(cols, (
            f"{r['beta']:g}", f"`{r['objective']}` vs `{r['reference']}`",
            f"{r['mean']:.3g} vs {r['mean_ref']:.3g}", *_test_cells(r),
        ))) for r in rows]  # fmt: skip
        lines += [f"### {display(k)}", "", _md_table(cols, body), ""]
    return lines


def _convergence_md(rows) -> list[str]:
    """The convergence table: per run, the change of the loss and of the KL over the last 20%."""
    moving = [row for row in rows if not (row.get("convergence") or {}).get("converged")]
    lines = ["## Convergence", "",
             f"Change over the last {TAIL:.0%} of steps (mean of the last 5% of the run against "
             f"the 5% before the tail): a run is still moving when its loss changed by more than "
             f"{LOSS_TOL:.0%} or a latent's KL by more than max({KL_TOL_NATS:g} nats, "
             f"{KL_TOL_REL:.0%})."]  # fmt: skip
    lines += ["", f"**{len(moving)} of {len(rows)} run(s) still moving.**" if moving
              else f"All {len(rows)} runs settled.", ""]  # fmt: skip
    table = []
    rank = {o: i for i, o in enumerate(OBJECTIVES)}
    for row in sorted(rows, key=lambda r: (rank.get(r["run"]["objective"], len(rank)),
                                           r["run"]["beta"], r["run"]["seed"])):  # fmt: skip
        c = row.get("convergence") or {}
        kc = c.get("kl_change") or []
        top = int(np.argmax(np.abs(kc))) if kc else None
        table.append({
            "run": row["run"]["name"], "steps": str(c.get("steps", "-")),
            "loss change": f"{100 * c['loss_change']:+.2f}%" if "loss_change" in c else "-",
            "largest KL change": f"z{top} {kc[top]:+.3f}" if top is not None else "-",
            "KL change per latent (z0 …)": " ".join(f"{v:+.2f}" for v in kc) or "-",
            "status": "settled" if c.get("converged") else f"**moving**: {c.get('note', '')}",
        })  # fmt: skip
    return lines + [
        _md_table(
            [
                "run",
                "steps",
                "loss change",
                "largest KL change",
                "KL change per latent (z0 …)",
                "status",
            ],
            table,
        )  # fmt: skip
    ]


def _baselines_md(res, records, metric_names, protocol, seed, metric_options, baselines_fn,
                  out) -> list[str]:  # fmt: skip
    """index.md's "Calibration: scores of a random code": every headline score of a Gaussian and
    a uniform noise code (``baselines_fn(run_dir, protocol, seed, cache=, metric_options=)`` ->
    {kind: {score: float}}, ``latentSpace._noise_baselines``: sbd_vae/baselines.py, cached in
    ``out``/baselines.json) beside the range of this sweep's means over β. [] without
    ``baselines_fn`` or scored runs; a line saying why when the baselines fail."""
    if baselines_fn is None or not records:
        return []
    head = ["## Calibration: scores of a random code", ""]
    try:
        base = baselines_fn(res["rows"][0]["run"]["path"], protocol, seed,
                            cache=out / "baselines.json", metric_options=metric_options)  # fmt: skip
    except (RunDirError, ValueError, OSError) as e:
        return [*head, f"The noise baselines could not be computed: {e}"]
    gauss, unif = base.get("gaussian") or {}, base.get("uniform") or {}
    shown = [m for m in metric_names if m in HEADLINE] or metric_names
    keys = [k for k in HEADLINE if k in shown or k in gauss] or shown
    means = {k: [float(np.nanmean(v)) for recs in by_objective(records).values()
                 for v in values_by_beta(recs, k).values() if np.isfinite(v).any()]
             for k in keys}  # fmt: skip

    def num(v):
        return f"{v:.3f}" if isinstance(v, float) and math.isfinite(v) else _fmt(v)

    body = [{"score": display(k), "gaussian noise": num(gauss.get(k)),
             "uniform noise": num(unif.get(k)),
             "this sweep (range of β means)": f"{min(means[k]):.3f} – {max(means[k]):.3f}"
             if means[k] else "-"} for k in keys]  # fmt: skip
    dim = res["rows"][0]["metrics"].get("latent_dim", "the runs'")
    return [*head,
            f"What a code that ignores the image scores on the same factor sets (protocol "
            f"{protocol}, metric seed {seed}): {dim} latents of standard Gaussian noise, or of "
            "uniform noise on [0, 1), encoded as the runs are (sbd_vae/baselines.py; cached in "
            "[baselines.json](baselines.json)). A score says something about disentanglement only "
            "as far as it lies beyond both. MIG, DCI disentanglement and SAP are near 0 for "
            "noise, but not every score is (Locatello et al. 2019 report the scores, not their "
            "chance levels): IRS (Suter et al. 2019) compares deviation quantiles, so noise "
            "scores by the shape of its tails (Gaussian well above 0, uniform near 0); the BetaVAE "
            "and FactorVAE accuracies, informativeness and explicitness have chance levels set "
            "by the factors' sizes; the TC, WC and MI scores of noise are their estimators' "
            "bias. Sweep ranges span the means over seeds of every β"
            + (" and objective" if len(by_objective(records)) > 1 else "") + ".", "",
            _md_table(list(body[0]) if body else ["score"], body)]  # fmt: skip


def data_label(rows) -> str | None:
    """The display name of the runs' data (metrics.json's "data_config": dsprites records
    "dSprites-like (procedural)"), the names joined if runs differ; None where none is recorded
    (shapes runs)."""
    names = {datasets.display_name(row["metrics"].get("data_config") or {}) for row in rows}
    names.discard(None)
    return " + ".join(sorted(names)) or None


def _index_md(sweep_dir, res, cols, records, metric_names, protocol, seed, label, plots,
              over_training=(), calibration=(), data=None) -> str:  # fmt: skip
    name = sweep_dir.name
    lines = [f"# Sweep report: {name}" + (f" ({data})" if data else ""), "",
             f"Written by `python latentSpace.py report {sweep_dir} --protocol {protocol}` "
             f"(metric seed {seed}). **{label}.**", "",
             f"{len(records)} of {len(res['runs'])} run(s) scored."]  # fmt: skip
    if not res["runs"] or not records:
        lines += ["", "**No finished runs yet: nothing to score.** Finish the sweep with "
                  f"`python training.py sweep ... --out {sweep_dir}` and re-run the report."]  # fmt: skip
    if res["unfinished"]:
        lines += ["", "## Unfinished runs (skipped)", ""]
        for r in res["unfinished"]:
            err = f": {r['error']}" if r.get("error") else ""
            lines.append(f"- `{r['name']}` (β={r['beta']:g}, seed {r['seed']}): {r['status']}{err}")
    if res["failed"]:
        lines += ["", "## Runs that could not be evaluated", ""]
        lines += [f"- `{r['name']}`: {e}" for r, e in res["failed"]]
    if records:
        shown = [m for m in metric_names if m in HEADLINE] or metric_names
        factor_cols = [c for c in cols if c.startswith(("mig_", "informativeness_"))]
        # A sweep of several objectives: every table, test and figure list per objective, named
        # in its heading (``of``); one objective: no name, the report of a β sweep.
        groups = by_objective(records)
        ofs = {o: f" of `{o}`" if len(groups) > 1 else "" for o in groups}
        for objective, recs in groups.items():
            lines += ["", f"## Scores{ofs[objective]} (mean ± sample std over seeds; {protocol})", "",
                      _md_table(["β", "β_norm", "seeds", *map(display, shown), *map(display, SUMMARY_EXTRA)],
                                _aggregate(recs, [*shown, *SUMMARY_EXTRA]))]  # fmt: skip
        lines += ["", "SAP is the discrete SAP of disentanglement_lib's study; SAP (continuous) is "
                  "the squared-correlation variant. recon is −log p(x|μ) in nats per image, decoded "
                  "from the posterior mean; its excess is over the data's own entropy floor "
                  "(the Bernoulli entropy of the grey target pixels). Active units: Burda et al. "
                  f"(2016), Var_x μ_d > {ACTIVE_VAR:g} on the held-out images."]  # fmt: skip
        if any(k in ("irs", *LOWER_IS_FACTORISED) for k in shown):
            lines += ["", "IRS is the interventional robustness score (Suter et al. 2019; higher: "
                      "with its parent factor fixed, a latent moves less when the other factors "
                      f"change; the {DIFF_QUANTILE:g} quantile of deviations, as disentanglement_lib). "
                      "Gaussian TC "
                      "(nats), Gaussian WC and its normalised form (WC / tr Σ), and the MI score "
                      "(mean pairwise mutual information of the binned latents, nats) need no "
                      "ground truth (Locatello et al. 2019) and measure dependence between the "
                      "latents' posterior means: **lower is more factorised**, so for them a "
                      "trend that rises with β means larger β gives a less factorised code."]  # fmt: skip
        lines += ["", *calibration] if calibration else []
        for objective, recs in groups.items() if factor_cols else ():
            lines += ["", f"### Per factor{ofs[objective]} (mean ± sample std over seeds)", "",
                      "MIG gap of each factor (0: no single latent owns it) and informativeness "
                      "(DCI test accuracy of predicting it from the whole code; chance is 1 over "
                      "its number of values).", "",
                      _md_table(["β", "seeds", *map(display, factor_cols)],
                                _aggregate(recs, factor_cols))]  # fmt: skip
        for objective, recs in groups.items():
            lines += ["", *_significance_md(recs, [*shown, *SUMMARY_EXTRA], ofs[objective])]
        lines += ["", *_objectives_md(records, [*shown, *SUMMARY_EXTRA])]
        lines += ["", *_convergence_md(res["rows"])]
        if over_training:
            lines += ["", *over_training]
        lines += ["", "Per run: [scores.csv](scores.csv)", ""]
        for key, path in plots.items():
            if key in OVER_TRAINING_PLOTS:
                continue  # shown in "Scores over training"
            lines += [
                f"### {PLOT_TITLES[key]}",
                "",
                f"![{PLOT_TITLES[key]}]({Path(path).name})",
                "",
            ]
        lines += ["## Per β" if len(groups) == 1 else "## Per objective and β", ""]
        for objective, b in [(o, b) for o, recs in groups.items()
                             for b in sorted({r["beta"] for r in recs})]:  # fmt: skip
            rs = sorted([row for row in res["rows"]
                         if row["run"]["beta"] == b and row["run"]["objective"] == objective],
                        key=lambda row: row["run"]["seed"])  # fmt: skip
            run = rs[0]["run"]
            rel = f"../{run['name']}"
            other = ", ".join(
                f"[{row['run']['name']}](../{row['run']['name']}/figures/)" for row in rs[1:]
            )
            which = f"`{objective}`, " if len(groups) > 1 else ""
            lines += [f"### {which}β = {b:g} (β_norm = {run['beta_norm']:.3g}), run `{run['name']}`",
                      ""]  # fmt: skip
            if other:
                lines += [f"Other seeds: {other}", ""]
            for fig_key, caption in (("traversals", "latent traversals"),
                                     ("factor_response", "factor response"),
                                     ("geometry", "latent geometry")):  # fmt: skip
                if (run["path"] / "figures" / FIGURES[fig_key]).exists():
                    lines += [f"![{caption}]({rel}/figures/{FIGURES[fig_key]})", ""]
            lines += [f"![training]({rel}/training.gif) ![traversal animation]"
                      f"({rel}/figures/{FIGURES['traversals_gif']})", ""]  # fmt: skip
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- README figures
# The seed's own figures contrast β=1 with β=102 at 128² (10 latents): β_norm = β·M/N ≈ 0.062.
SEED_CONTRAST_BETA_NORM = 102 * 10 / 128**2


def _pick_betas(records) -> tuple[float, float]:
    """(the lowest β, the β whose β_norm is closest to the seed's β=102 at 128²): the seed's
    contrast at any image size. Chosen from the grid alone, never from the scores."""
    betas = sorted({r["beta"] for r in records})
    norm = {r["beta"]: r["beta_norm"] for r in records}
    high = min(betas[1:] or betas, key=lambda b: abs(norm[b] - SEED_CONTRAST_BETA_NORM))
    return betas[0], high


def readme_figures(
    sweep_dir, evaluate, out="img", protocol=None, seed=0, progress=True, metric_options=None,
    baselines_fn=None,
) -> dict:  # fmt: skip
    """The README figure set of one sweep: the seed's contrast, the lowest β against the β nearest
    the seed's β=102 in β_norm (``_pick_betas``), from each β's lowest seed:

        <out>/training_beta{b}.gif, traversals_beta{b}.png, factor_response_beta{b}.png,
        geometry_beta{b}.png, and the report's plots: <out>/scores_vs_beta.png,
        factors_vs_beta.png, active_units_vs_beta.png, recon_vs_beta.png

    Runs the report first (evaluating what is missing with ``evaluate``). ``protocol=None`` reuses the protocol of
    the metrics already in the sweep (quick if there are none). ``baselines_fn``: as ``report``'s.
    Returns {file name: path}.
    """
    sweep_dir, out = Path(sweep_dir), Path(out)
    if protocol is None:
        found = set()
        for r in sweep_runs(sweep_dir):
            try:
                m = read_metrics(r["path"]) if r["finished"] else None
            except RunDirError:
                m = None
            if m:
                found.add(m["protocol"])
        if len(found) > 1:
            raise ValueError(
                f"{sweep_dir} has metrics of several protocols {sorted(found)}; pass --protocol"
            )
        protocol = found.pop() if found else "quick"
    rep, res, records = _report(sweep_dir, evaluate, protocol, seed, progress, metric_options,
                                baselines_fn=baselines_fn)  # fmt: skip
    if not records:
        raise RunDirError(
            f"{sweep_dir}: no finished run to make figures from; finish the sweep first"
        )
    # a sweep of several objectives: the figures of β-VAE's runs (else of the first objective)
    groups = by_objective(records)
    objective = "beta" if "beta" in groups else next(iter(groups))
    ref, best = _pick_betas(groups[objective])
    written = {}
    for b in dict.fromkeys([ref, best]):
        run = min(
            (row["run"] for row in res["rows"]
             if row["run"]["beta"] == b and row["run"]["objective"] == objective),
            key=lambda r: r["seed"],
        )  # fmt: skip
        src = run["path"]
        for name, path in ((f"training_beta{b:g}.gif", src / "training.gif"),
                           (f"traversals_beta{b:g}.png", src / "figures" / FIGURES["traversals"]),
                           (f"factor_response_beta{b:g}.png", src / "figures" / FIGURES["factor_response"]),
                           (f"geometry_beta{b:g}.png", src / "figures" / FIGURES["geometry"])):  # fmt: skip
            if path.exists():
                rundir.write_bytes(out / name, path.read_bytes())
                written[name] = out / name
    for name in PLOTS.values():
        if (rep / name).exists():
            rundir.write_bytes(out / name, (rep / name).read_bytes())
            written[name] = out / name
    written["betas"] = {"reference": ref, "contrast": best, "protocol": protocol}
    if progress:
        print(f"[figures] β={ref:g} against β={best:g} ({protocol}) → {out}: "
              + ", ".join(k for k in written if k != "betas"))  # fmt: skip
    return written
