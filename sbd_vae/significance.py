"""Which β differences are real: the tests the report runs, fixed before any score is seen.

A score without seeds is an anecdote. Per score, within one objective, the report runs two
pre-specified tests and nothing else:

1. ``trend`` (primary): ordinary least squares of the score on log2 β over all runs, one value
   per run. Its slope is the change per doubling of β, with a 95% CI and the p of slope ≠ 0;
   Spearman's ρ (Spearman 1904) sits beside it and asks only for a monotone trend.
2. ``pairwise_betas``: every pair of β, Welch's unequal-variance t-test over seeds (Welch 1947),
   the difference with its 95% Welch–Satterthwaite interval, the p Holm-adjusted (Holm 1979) over
   the family of all pairs of β of that one score. A pair "differs" at Holm p < ``ALPHA``; no pair
   is tested with fewer than ``MIN_SEEDS`` seeds at either β. Beside each pair is the difference
   those seeds could detect (``detectable_difference``), so "no difference" says how large a
   difference it could have missed.

Two groups whose seeds all score the same carry no estimate of the noise: they get p = NaN and
the note ``NO_VARIANCE``, never p = 0 or 1. ``compare_objectives`` compares objectives at equal β
the same way, Holm over the (β, objective) comparisons of one score. ``compare_betas`` (the best β
against each other β, p per pair, uncorrected) is kept for its callers; the report no longer uses
it. Records of several objectives (``sweep --objectives``) are compared within one objective only:
``by_objective`` splits them, and ``values_by_beta`` (so every test, table and plot built on it)
refuses a mix.
"""

from __future__ import annotations

import math
import warnings
from itertools import combinations

import numpy as np

from .hparams import OBJECTIVES

ALPHA = 0.05
MIN_SEEDS = 3
LEVEL = 0.95  # confidence of every interval the report prints
POWER = 0.8  # power at which the detectable difference is quoted
NO_VARIANCE = "no seed variance: not testable"


def _finite(x) -> np.ndarray:
    x = np.asarray(x, float)
    return x[np.isfinite(x)]


def _constant(x: np.ndarray) -> bool:
    # every seed the same score: max == min, exactly. (np.std of three 0.7s is 1e-16, not 0.)
    return bool(np.ptp(x) == 0)


def welch(a, b, level: float = LEVEL) -> dict:
    """Welch's t-test (Welch 1947) of mean(a) vs mean(b), finite values only: dict(t, p, df,
    n_a, n_b, diff = mean(a) − mean(b), ci = (low, high), note). ``ci`` is the ``level``
    interval of diff with the Welch–Satterthwaite degrees of freedom ``df``
    (scipy.stats.ttest_ind(equal_var=False).confidence_interval).

    Fewer than 2 values on a side, or no variance on either side (every seed the same score),
    give t, p and ci NaN and say why in ``note``: a constant pair has no noise estimate, and
    p = 0 (or 1) would claim evidence it does not have."""
    from scipy.stats import ttest_ind

    a, b = _finite(a), _finite(b)
    diff = float(a.mean() - b.mean()) if len(a) and len(b) else float("nan")
    nan = float("nan")
    out = dict(t=nan, p=nan, df=nan, n_a=len(a), n_b=len(b), diff=diff, ci=(nan, nan), note="")
    if len(a) < 2 or len(b) < 2:
        out["note"] = "fewer than 2 seeds: not testable"
    elif _constant(a) and _constant(b):
        out["note"] = NO_VARIANCE
    else:
        with warnings.catch_warnings():
            if _constant(a) or _constant(b):  # scipy flags the constant side as "nearly
                # identical"; its variance is exactly 0 and the other side's carries the test
                warnings.filterwarnings("ignore", "Precision loss", RuntimeWarning)
            res = ttest_ind(a, b, equal_var=False)
        ci = res.confidence_interval(level)
        out.update(t=float(res.statistic), p=float(res.pvalue), df=float(res.df),
                   ci=(float(ci.low), float(ci.high)))  # fmt: skip
    return out


def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjustment (Holm 1979) of one family of p-values, same order as given:
    the k-th smallest p times (m − k + 1), made non-decreasing in that order, capped at 1. It
    controls the family-wise error rate under any dependence between the tests. NaN entries are
    no test: they stay NaN and do not count in the family size m."""
    p = np.asarray(pvalues, float)
    out = np.full(p.shape, np.nan)
    idx = np.flatnonzero(np.isfinite(p))
    order = idx[np.argsort(p[idx], kind="stable")]
    m = len(order)
    # the running maximum keeps the step-down monotone: a smaller p never gets a larger adjusted p
    out[order] = np.minimum(np.maximum.accumulate((m - np.arange(m)) * p[order]), 1.0)
    return out


def pooled_sd(a, b) -> float:
    """The pooled seed SD of two groups, sqrt(((n_a−1)s_a² + (n_b−1)s_b²) / (n_a + n_b − 2))
    (finite values; NaN with fewer than 2 on a side)."""
    a, b = _finite(a), _finite(b)
    if len(a) < 2 or len(b) < 2:
        return float("nan")
    # a constant side adds exactly 0 (its float variance can be 1e-32, which would make the
    # detectable difference of two constant groups tiny instead of NaN)
    ss = sum((len(x) - 1) * x.var(ddof=1) for x in (a, b) if not _constant(x))
    return float(math.sqrt(ss / (len(a) + len(b) - 2)))


def _t_power(effect: float, n_a: int, n_b: int, alpha: float) -> float:
    """Exact power of the two-sided two-sample Student t-test at standardised ``effect``."""
    from scipy.stats import nct, t

    df = n_a + n_b - 2
    crit = t.ppf(1 - alpha / 2, df)
    nc = effect / math.sqrt(1 / n_a + 1 / n_b)
    # both tails, as G*Power; scipy's nct turns NaN deep in the opposite tail, where it is < 1e-10
    wrong_way = float(nct.cdf(-crit, df, nc))
    return float(nct.sf(crit, df, nc)) + (wrong_way if math.isfinite(wrong_way) else 0.0)


def detectable_difference(sd: float, n_a: int, n_b: int | None = None, alpha: float = ALPHA,
                          power: float = POWER) -> float:  # fmt: skip
    """The smallest |mean_a − mean_b| that a two-sided two-sample t-test at level ``alpha`` with
    ``n_a`` and ``n_b`` (default ``n_a``) seeds detects with probability ``power``, for seed SD
    ``sd`` (the report passes ``pooled_sd`` of the pair): Δ = d·sd, where d solves

        P(|T| > t_{1−α/2, ν}) = power,  T ~ noncentral t(ν, d / sqrt(1/n_a + 1/n_b)),
        ν = n_a + n_b − 2

    (the exact power of Student's pooled t-test, as G*Power and statsmodels' TTestIndPower; the
    report tests with Welch, which for equal seed counts and similar spread has nearly the same
    power). n = 3 per group, 80% power, α = 0.05: d ≈ 3.07, where the normal approximation
    (z_{1−α/2} + z_{power})·sqrt(2/n) would say 2.29. NaN without a test (n < 2, sd not > 0)."""
    from scipy.optimize import brentq

    n_b = n_a if n_b is None else n_b
    if n_a < 2 or n_b < 2 or not (math.isfinite(sd) and sd > 0):
        return float("nan")
    hi = 1.0
    while _t_power(hi, n_a, n_b, alpha) < power:  # bracket the root: power grows with d
        hi *= 2
    return float(sd * brentq(lambda d: _t_power(d, n_a, n_b, alpha) - power, 0.0, hi))


def welch_pair(a, b, min_seeds: int, alpha: float, power: float) -> dict:
    """``welch(a, b)`` with mean_a, mean_b, sd_pooled and detectable; p NaN (and a note) when
    either side has fewer than ``min_seeds`` seeds."""
    w = welch(a, b)
    sd = pooled_sd(a, b)
    out = dict(w, mean_a=float(np.mean(_finite(a))) if w["n_a"] else float("nan"),
               mean_b=float(np.mean(_finite(b))) if w["n_b"] else float("nan"), sd_pooled=sd,
               detectable=detectable_difference(sd, w["n_a"], w["n_b"], alpha, power))  # fmt: skip
    if min(w["n_a"], w["n_b"]) < min_seeds and not w["note"]:
        out.update(p=float("nan"), note=f"fewer than {min_seeds} seeds: not tested")
    return out


def holm_rows(rows: list[dict], alpha: float) -> list[dict]:
    """Adds p_holm (``holm`` over the rows' p: the rows are one family), family (its size) and
    differs (p_holm < ``alpha``) to each row."""
    adjusted = holm([r["p"] for r in rows])
    family = int(np.isfinite(adjusted).sum())
    for r, q in zip(rows, adjusted):
        r.update(p_holm=float(q), family=family, differs=bool(q < alpha))
    return rows


def trend(records, key: str, level: float = LEVEL) -> dict:
    """The primary pre-specified test of ``key`` across β: ordinary least squares of the score on
    log2 β over all runs, one value per run (scipy.stats.linregress). ``slope`` is the change per
    doubling of β, ``ci`` its ``level`` interval (t with n − 2 df), ``p`` that of slope ≠ 0.
    Beside it Spearman's rank correlation (Spearman 1904) ``rho`` and ``p_rho`` ask only for a
    monotone trend, not a straight line in log β. ``records`` of one objective.

    Returns dict(key, n (runs), n_betas, slope, intercept, ci, p, rho, p_rho, note); NaN with a
    note when there is nothing to test (fewer than 3 runs or 2 β, or a constant score). β ≤ 0
    has no log and is left out."""
    from scipy.stats import linregress, spearmanr
    from scipy.stats import t as student_t

    vals = {b: _finite(v) for b, v in values_by_beta(records, key).items() if b > 0}
    x = np.concatenate([np.full(len(v), math.log2(b)) for b, v in vals.items()] or [[]])
    y = np.concatenate(list(vals.values()) or [[]])
    nan = float("nan")
    out = dict(key=key, n=len(y), n_betas=len(np.unique(x)), slope=nan, intercept=nan,
               ci=(nan, nan), p=nan, rho=nan, p_rho=nan, note="")  # fmt: skip
    if len(y) < 3 or out["n_betas"] < 2:
        out["note"] = "fewer than 3 runs or 2 β: no trend test"
    elif np.ptp(y) == 0:
        out["note"] = "no variance between runs: not testable"
    else:
        fit = linregress(x, y)
        half = student_t.ppf((1 + level) / 2, len(y) - 2) * fit.stderr
        rho = spearmanr(x, y)
        out.update(slope=float(fit.slope), intercept=float(fit.intercept), p=float(fit.pvalue),
                   ci=(float(fit.slope - half), float(fit.slope + half)),
                   rho=float(rho.statistic), p_rho=float(rho.pvalue))  # fmt: skip
    return out


def pairwise_betas(records, key: str, alpha: float = ALPHA, min_seeds: int = MIN_SEEDS,
                   power: float = POWER) -> list[dict]:  # fmt: skip
    """Every pair of β, Welch's t-test over seeds of ``key`` (Welch 1947), Holm-adjusted
    (Holm 1979) over the family of all pairs of β of this one score. ``records`` of one
    objective. One dict per pair, β_a the larger β (so diff's sign reads as ``trend``'s slope):
    dict(beta_a, beta_b, mean_a, mean_b, n_a, n_b, diff = mean_a − mean_b, ci (its 95%
    Welch–Satterthwaite interval), t, df, p, p_holm, family, differs (p_holm < ``alpha``),
    sd_pooled, detectable (``detectable_difference`` at ``power``), note). p is NaN, and the pair
    outside the family, with fewer than ``min_seeds`` seeds on a side or no seed variance."""
    vals = values_by_beta(records, key)
    rows = [dict(beta_a=hi, beta_b=lo, **welch_pair(vals[hi], vals[lo], min_seeds, alpha, power))
            for lo, hi in combinations(vals, 2)]  # fmt: skip
    return holm_rows(rows, alpha)


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
    """The β with the highest mean ``key`` and Welch tests of it against every other β, each p
    per pair and uncorrected (kept for its callers: the report runs ``trend`` and
    ``pairwise_betas``). A pair without seed variance (p NaN) counts as tied.

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


def compare_objectives(records, key: str, min_seeds: int = MIN_SEEDS, alpha: float = ALPHA,
                       power: float = POWER) -> list[dict]:  # fmt: skip
    """Each objective against the first of the sweep (``by_objective`` order: β-VAE when present)
    at every β both ran: Welch's test over seeds of ``key`` (Welch 1947), Holm-adjusted (Holm
    1979) over the family of all (β, objective) comparisons of this one score. One dict per
    (β, objective): dict(beta, reference, objective, mean_ref, mean, n_ref, n, diff = mean −
    mean_ref, ci (its 95% Welch–Satterthwaite interval), p (NaN with < ``min_seeds`` seeds on
    either side or no seed variance), p_holm, family, differs (p_holm < ``alpha``), sd_pooled,
    detectable (``detectable_difference`` at ``power``), note). Objectives weigh different terms
    by β, so "equal β" is equal weight on each one's disentangling term, not equal pressure
    (README, "Objectives")."""
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
            t = welch_pair(vals, ref_vals[b], min_seeds, alpha, power)
            rows.append(dict(beta=b, reference=ref, objective=objective, n=t["n_a"],
                             n_ref=t["n_b"], mean=t["mean_a"], mean_ref=t["mean_b"],
                             **{k: t[k] for k in ("diff", "ci", "p", "t", "df", "sd_pooled",
                                                  "detectable", "note")}))  # fmt: skip
    return holm_rows(rows, alpha)


__all__ = ["ALPHA", "LEVEL", "MIN_SEEDS", "NO_VARIANCE", "POWER", "by_objective", "compare_betas",
           "compare_objectives", "detectable_difference", "holm", "holm_rows", "pairwise_betas", "pooled_sd",
           "trend", "values_by_beta", "welch", "welch_pair"]  # fmt: skip
