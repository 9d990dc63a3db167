"""Which β differences are real: Welch's t-test over seeds (Welch 1947), the rule every report
and README claim follows.

A score without seeds is an anecdote. The report calls β_a better than β_b on a metric only when
Welch's unequal-variance t-test over the seeds of the two β gives p < ``ALPHA``; with fewer than
``MIN_SEEDS`` seeds at either β it makes no comparison at all. The p-values are per pair and not
corrected for the number of pairs; the report says so. Records of several objectives (``sweep --objectives``)
are compared within one objective only: ``by_objective`` splits them, and ``values_by_beta`` (so
``compare_betas`` and every table and plot built on it) refuses a mix.
"""

from __future__ import annotations

import math

import numpy as np

from .hparams import OBJECTIVES

ALPHA = 0.05
MIN_SEEDS = 3


def welch(a, b) -> dict:
    """Welch's t-test of mean(a) vs mean(b) (finite values only): dict(t, p, n_a, n_b, diff)."""
    from scipy.stats import ttest_ind

    a = np.asarray(a, float)
    b = np.asarray(b, float)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    diff = float(a.mean() - b.mean()) if len(a) and len(b) else float("nan")
    if len(a) < 2 or len(b) < 2:
        return dict(t=float("nan"), p=float("nan"), n_a=len(a), n_b=len(b), diff=diff)
    if a.std() == 0 and b.std() == 0:  # identical constants: no evidence either way unless unequal
        p = 1.0 if diff == 0 else 0.0
        return dict(t=float("nan") if diff == 0 else math.copysign(math.inf, diff), p=p,
                    n_a=len(a), n_b=len(b), diff=diff)  # fmt: skip
    res = ttest_ind(a, b, equal_var=False)
    return dict(t=float(res.statistic), p=float(res.pvalue), n_a=len(a), n_b=len(b), diff=diff)


def by_objective(records) -> dict[str, list]:
    """{objective: its records} in ``hparams.OBJECTIVES`` order (a record without "objective" is
    β-VAE's): the split a sweep of several objectives gets before anything is grouped by β, since β
    weighs a different term in each objective (README.md, "Objectives")."""
    groups = {}
    for r in records:
        groups.setdefault(r.get("objective", "beta"), []).append(r)
    rank = {o: i for i, o in enumerate(OBJECTIVES)}
    return dict(sorted(groups.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0])))


def values_by_beta(records, key: str) -> dict[float, np.ndarray]:
    """{β: ``key`` over that β's runs (one value per seed, NaN where missing)}, β ascending: the
    grouping behind the report's tables, its plots and the tests here. ``records`` of one
    objective only (``by_objective``): the runs of two objectives at one β are not seeds of one
    experiment."""
    objectives = by_objective(records)
    if len(objectives) > 1:
        raise ValueError(
            f"records of several objectives {list(objectives)}: split them with by_objective "
            "first (β weighs a different term in each)"
        )
    betas = sorted({r["beta"] for r in records})
    return {
        b: np.array([r.get(key, np.nan) for r in records if r["beta"] == b], float) for b in betas
    }


def compare_betas(records, key: str, alpha: float = ALPHA, min_seeds: int = MIN_SEEDS) -> dict:
    """The β with the highest mean ``key`` and Welch tests of it against every other β.

    ``records``: dicts with "beta" and ``key`` (one per run). Returns dict(key, best (β),
    best_mean, means {β: mean}, seeds {β: n}, tests {β: welch(best, β)}, better [β that best beats
    with p < alpha], tied [β it does not], comparable bool, statement str)."""
    vals = values_by_beta(records, key)
    betas = list(vals)
    seeds = {b: int(np.isfinite(v).sum()) for b, v in vals.items()}
    means = {b: float(np.nanmean(v)) if seeds[b] else float("nan") for b, v in vals.items()}
    ranked = [b for b in betas if math.isfinite(means[b])]
    out = dict(key=key, means=means, seeds=seeds, tests={}, better=[], tied=[], best=None,
               best_mean=float("nan"), comparable=False)  # fmt: skip
    if not ranked:
        out["statement"] = f"{key}: no finite scores"
        return out
    best = max(ranked, key=lambda b: means[b])
    out.update(best=best, best_mean=means[best])
    few = [b for b in ranked if seeds[b] < min_seeds]
    if few:
        out["statement"] = (
            f"{key}: fewer than {min_seeds} seeds at β ∈ {{{', '.join(f'{b:g}' for b in few)}}}: "
            "no comparison between β can be made"
        )
        return out
    out["comparable"] = True
    for b in ranked:
        if b == best:
            continue
        t = welch(vals[best], vals[b])
        out["tests"][b] = t
        (out["better"] if t["p"] < alpha else out["tied"]).append(b)
    if not out["tests"]:
        out["statement"] = f"{key}: only one β"
    elif not out["better"]:
        out["statement"] = (
            f"{key}: highest mean at β={best:g}, but no β differs from it significantly "
            f"(Welch p ≥ {alpha:g} against every other β)"
        )
    else:
        beaten = ", ".join(f"{b:g}" for b in out["better"])
        tied = ", ".join(f"{b:g}" for b in out["tied"])
        out["statement"] = (
            f"{key}: β={best:g} is higher than β ∈ {{{beaten}}} (Welch p < {alpha:g})"
            + (f"; not distinguishable from β ∈ {{{tied}}}" if tied else ", every other β")
        )
    return out


def compare_objectives(records, key: str, min_seeds: int = MIN_SEEDS) -> list[dict]:
    """Each objective against the first of the sweep (``by_objective`` order: β-VAE when present)
    at every β both ran: Welch's test over seeds of ``key``. One dict per (β, objective):
    dict(beta, reference, objective, mean_ref, mean, n_ref, n, p (NaN with < ``min_seeds`` seeds
    on either side), diff = mean − mean_ref). Objectives weigh different terms by β, so "equal β"
    is equal weight on each one's disentangling term, not equal pressure (README, "Objectives")."""
    groups = by_objective(records)
    if len(groups) < 2:
        return []
    (ref, ref_recs), *others = groups.items()
    ref_vals = values_by_beta(ref_recs, key)
    rows = []
    for objective, recs in others:
        for b, vals in values_by_beta(recs, key).items():
            if b not in ref_vals:
                continue
            t = welch(vals, ref_vals[b])
            enough = min(t["n_a"], t["n_b"]) >= min_seeds
            rows.append(dict(beta=b, reference=ref, objective=objective, n=t["n_a"],
                             n_ref=t["n_b"], mean=float(np.nanmean(vals)),
                             mean_ref=float(np.nanmean(ref_vals[b])), diff=t["diff"],
                             p=t["p"] if enough else float("nan")))  # fmt: skip
    return rows


__all__ = ["ALPHA", "MIN_SEEDS", "by_objective", "compare_betas", "compare_objectives",
           "values_by_beta", "welch"]  # fmt: skip
