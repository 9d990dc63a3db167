"""The report's statistics on synthetic data with known answers: the trend on log2 β, Holm's
adjustment, Welch's interval, the detectable difference, and no p from groups without variance."""

import math

import numpy as np
import pytest
from scipy import stats

from sbd_vae import significance as sig

BETAS = (1.0, 2.0, 4.0, 8.0, 16.0)


def _records(values_by_beta, key="m"):
    return [{"beta": b, key: float(v)} for b, vs in values_by_beta.items() for v in vs]


# ----------------------------------------------------------------------------- trend
def test_trend_of_a_perfect_line_in_log_beta_has_its_slope_and_a_tiny_p():
    recs = _records({b: [0.5 - 0.1 * math.log2(b)] * 3 for b in BETAS})
    tr = sig.trend(recs, "m")
    assert tr["slope"] == pytest.approx(-0.1) and tr["intercept"] == pytest.approx(0.5)
    assert tr["p"] < 1e-10 and tr["ci"] == pytest.approx((-0.1, -0.1))
    assert tr["rho"] == pytest.approx(-1.0) and tr["p_rho"] < 1e-6
    assert (tr["n"], tr["n_betas"], tr["note"]) == (15, 5, "")


def test_trend_ci_covers_the_true_slope_of_a_noisy_line():
    rng = np.random.default_rng(1)  # (a 95% interval misses 1 seed in 20: seed 0 is one)
    recs = _records({b: 0.2 * math.log2(b) + rng.normal(0, 0.05, 3) for b in BETAS})
    tr = sig.trend(recs, "m")
    assert tr["ci"][0] < 0.2 < tr["ci"][1] and tr["p"] < 1e-6
    fit = stats.linregress([math.log2(r["beta"]) for r in recs], [r["m"] for r in recs])
    half = stats.t.ppf(0.975, 13) * fit.stderr  # 15 runs − 2 parameters
    assert tr["ci"] == pytest.approx((fit.slope - half, fit.slope + half))


def test_trend_of_pure_noise_is_not_significant_and_is_calibrated():
    rng = np.random.default_rng(1)  # p = 0.15, ρ's p = 0.086 (seed 0 is a 1-in-20 false alarm)
    tr = sig.trend(_records({b: rng.normal(0, 1, 3) for b in BETAS}), "m")
    assert tr["p"] > 0.05 and tr["p_rho"] > 0.05
    # over 400 noise sweeps the level holds: 5% ± 3.3 binomial SD (SD = 1.1%)
    ps = [
        sig.trend(_records({b: rng.normal(0, 1, 3) for b in BETAS}), "m")["p"] for _ in range(400)
    ]
    assert 0.015 < np.mean(np.array(ps) < 0.05) < 0.09


def test_trend_needs_two_betas_and_some_variance():
    assert sig.trend(_records({1.0: [0.1, 0.2, 0.3]}), "m")["note"]
    flat = sig.trend(_records({b: [0.3] * 3 for b in BETAS}), "m")
    assert math.isnan(flat["p"]) and math.isnan(flat["slope"]) and "not testable" in flat["note"]


# ----------------------------------------------------------------------------- Holm
def test_holm_matches_a_hand_computed_example():
    # sorted 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 = 0.04 → raised to 0.06 (step-down monotone)
    assert sig.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    with_nan = sig.holm([0.01, np.nan, 0.04, 0.03])  # NaN: no test, not in the family
    assert np.isnan(with_nan[1]) and with_nan[[0, 2, 3]] == pytest.approx([0.03, 0.06, 0.06])
    assert sig.holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert sig.holm([0.02]) == pytest.approx([0.02]) and len(sig.holm([])) == 0


# ----------------------------------------------------------------------------- Welch
def test_welch_interval_is_welch_satterthwaite_and_matches_scipy():
    a, b = np.array([1.0, 2.0, 4.0]), np.array([3.0, 5.0, 6.0, 8.0])
    w = sig.welch(a, b)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = stats.t.ppf(0.975, df) * math.sqrt(va + vb)
    diff = a.mean() - b.mean()
    assert w["df"] == pytest.approx(df) and w["ci"] == pytest.approx((diff - half, diff + half))
    ref = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert w["ci"] == pytest.approx((ref.low, ref.high))


def test_welch_interval_covers_the_true_difference():
    rng = np.random.default_rng(1)
    w = sig.welch(1.0 + rng.normal(0, 0.5, 5), rng.normal(0, 1.0, 4))
    assert w["ci"][0] < 1.0 < w["ci"][1]
    # and covers it 95% of the time: 500 draws, ± 3 binomial SD (SD ≈ 1%)
    hits = [lo < 1.0 < hi for lo, hi in (sig.welch(1.0 + rng.normal(0, 0.5, 5),
                                                   rng.normal(0, 1.0, 4))["ci"]
                                         for _ in range(500))]  # fmt: skip
    assert 0.92 < np.mean(hits) < 0.98


def test_groups_without_seed_variance_give_nan_never_zero_or_one():
    for a, b in (([1.0] * 3, [2.0] * 3), ([1.0] * 3, [1.0] * 3)):
        w = sig.welch(a, b)
        assert math.isnan(w["p"]) and math.isnan(w["t"]) and w["note"] == sig.NO_VARIANCE
        assert all(math.isnan(c) for c in w["ci"])
    assert 0 < sig.welch([1.0] * 3, [2.0, 2.5, 3.0])["p"] < 1  # one constant side still tests
    recs = _records({1.0: [0.5] * 3, 2.0: [0.7] * 3, 4.0: [0.1, 0.2, 0.3]})
    rows = {(r["beta_a"], r["beta_b"]): r for r in sig.pairwise_betas(recs, "m")}
    flat = rows[(2.0, 1.0)]
    assert math.isnan(flat["p_holm"]) and not flat["differs"] and flat["note"] == sig.NO_VARIANCE
    assert rows[(4.0, 1.0)]["family"] == 2  # the untestable pair is not in Holm's family
    assert 2.0 not in sig.compare_betas(recs, "m")["better"]


# ----------------------------------------------------------------------------- power
def test_detectable_difference_for_three_seeds_is_3_07_sd():
    # G*Power / statsmodels TTestIndPower: n = 3 per group, α = 0.05 two-sided, 80% power →
    # d = 3.0709; brentq solves to ~1e-12, so 0.005 only covers the published rounding
    assert sig.detectable_difference(1.0, 3) == pytest.approx(3.0709, abs=0.005)
    assert sig.detectable_difference(0.2, 3) == pytest.approx(0.2 * 3.0709, abs=0.001)
    normal = (stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) * math.sqrt(2 / 3)
    assert sig.detectable_difference(1.0, 3) > normal + 0.7  # 2.29: few seeds, heavy tails
    big = (stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) * math.sqrt(2 / 400)
    assert sig.detectable_difference(1.0, 400) == pytest.approx(big, rel=0.01)
    assert math.isnan(sig.detectable_difference(0.0, 3))
    assert math.isnan(sig.detectable_difference(1.0, 1))


def test_detectable_difference_is_detected_80_percent_of_the_time():
    """Independent of the noncentral t: simulated Student t-tests at that difference reject
    80% of the time (20 000 draws: binomial SD 0.3%, tolerance 1.2%)."""
    rng = np.random.default_rng(2)
    d = sig.detectable_difference(1.0, 3)
    a = rng.normal(d, 1.0, (20_000, 3))
    b = rng.normal(0.0, 1.0, (20_000, 3))
    p = stats.ttest_ind(a, b, axis=1).pvalue
    assert np.mean(p < 0.05) == pytest.approx(0.8, abs=0.012)


def test_pooled_sd():
    a, b = [1.0, 2.0, 3.0], [2.0, 4.0, 6.0, 8.0]
    want = math.sqrt((2 * np.var(a, ddof=1) + 3 * np.var(b, ddof=1)) / 5)
    assert sig.pooled_sd(a, b) == pytest.approx(want) and math.isnan(sig.pooled_sd([1.0], b))


# ----------------------------------------------------------------------------- pairs
def test_pairwise_betas_tests_every_pair_holm_over_that_score():
    rng = np.random.default_rng(3)
    means = {1.0: 0.1, 2.0: 0.1, 4.0: 0.5, 8.0: 0.5}
    recs = _records({b: m + rng.normal(0, 0.02, 3) for b, m in means.items()})
    rows = sig.pairwise_betas(recs, "m")
    assert [(r["beta_a"], r["beta_b"]) for r in rows] == [
        (2.0, 1.0), (4.0, 1.0), (8.0, 1.0), (4.0, 2.0), (8.0, 2.0), (8.0, 4.0)]  # fmt: skip
    assert [r["p_holm"] for r in rows] == pytest.approx(sig.holm([r["p"] for r in rows]))
    assert all(r["family"] == 6 for r in rows)
    verdict = {(r["beta_a"], r["beta_b"]): r["differs"] for r in rows}
    assert verdict == {(2.0, 1.0): False, (4.0, 1.0): True, (8.0, 1.0): True,
                       (4.0, 2.0): True, (8.0, 2.0): True, (8.0, 4.0): False}  # fmt: skip
    r = rows[1]
    assert r["diff"] == pytest.approx(r["mean_a"] - r["mean_b"]) and r["ci"][0] > 0.2
    assert r["detectable"] == pytest.approx(sig.detectable_difference(r["sd_pooled"], 3))
    few = sig.pairwise_betas(_records({1.0: [0.1, 0.2], 2.0: [0.5, 0.6, 0.7]}), "m")
    assert math.isnan(few[0]["p"]) and "fewer than 3 seeds" in few[0]["note"]


def test_compare_objectives_holm_over_beta_and_objective():
    recs = [{"beta": b, "objective": o, "m": m + 0.01 * s}
            for (o, b), m in {("beta", 1.0): 0.1, ("beta", 4.0): 0.5, ("tcvae", 1.0): 0.3,
                              ("tcvae", 4.0): 0.505}.items() for s in range(3)]  # fmt: skip
    rows = sig.compare_objectives(recs, "m")
    assert [r["beta"] for r in rows] == [1.0, 4.0] and all(r["family"] == 2 for r in rows)
    assert [r["p_holm"] for r in rows] == pytest.approx(sig.holm([r["p"] for r in rows]))
    assert rows[0]["differs"] and not rows[1]["differs"]
    assert rows[1]["ci"][0] < 0.005 < rows[1]["ci"][1]
    assert rows[1]["detectable"] == pytest.approx(3.0709 * 0.01, rel=0.01)  # seed SD 0.01


# ----------------------------------------------------------------------------- report
def test_report_prints_the_trend_and_the_holm_table():
    from sbd_vae.report import _objectives_md, _significance_md

    rng = np.random.default_rng(4)
    recs = _records({b: 0.5 - 0.05 * math.log2(b) + rng.normal(0, 0.01, 3) for b in BETAS})
    recs += [{"beta": b, "flat": 1.0} for b in BETAS for _ in range(3)]
    text = "\n".join(_significance_md(recs, ["m", "flat"]))
    assert "pre-specified" in text and "Holm" in text and "all pairs of β of that one score" in text
    assert "Trend (primary): **falls with β**: slope -0.05" in text
    assert (
        "| β_a | β_b | diff (a − b) | 95% CI | Holm p | detectable (80% power) | verdict |" in text
    )
    assert "| 2 | 1 | " in text and "**differs**" in text
    assert "no seed variance: not testable" in text and "no variance between runs" in text
    noise = _records({b: rng.normal(0, 1, 3) for b in BETAS})
    assert "no difference detected (could detect ≥ " in "\n".join(_significance_md(noise, ["m"]))
    both = [dict(r, objective="beta") for r in recs if "m" in r]
    both += [dict(r, objective="tcvae") for r in noise]
    table = "\n".join(_objectives_md(both, ["m"]))
    assert "| β | objectives | means | difference | 95% CI | Holm p |" in table
    assert "(β, objective) comparisons of that one score" in table
