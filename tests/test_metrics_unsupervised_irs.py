"""IRS (Suter et al. 2019) and the scores that need no ground truth (Locatello et al. 2019) on
synthetic codes with known answers, their bad-input errors, and their path through the registry,
metrics.json's scores and the report's scores.csv / index.md."""

import csv
import math

import numpy as np
import pytest
import scipy.linalg
from sklearn.metrics import mutual_info_score
from test_metrics import Encoder, GridSampler, codes_for

import latentSpace as ls
from sbd_vae import report
from sbd_vae.evaluation import HEADLINE
from sbd_vae.metrics import REGISTRY, compute_metrics, irs, registry, unsupervised_scores
from sbd_vae.metrics.irs import DIFF_QUANTILE
from sbd_vae.metrics.unsupervised import (
    gaussian_total_correlation,
    gaussian_wasserstein_correlation,
)

UNSUPERVISED_KEYS = ("gaussian_total_correlation", "gaussian_wasserstein_correlation",
                     "gaussian_wasserstein_correlation_norm", "mutual_info_score",
                     "gaussian_total_correlation_active")  # fmt: skip


def correlated_gaussian(cov, n, seed=0):
    """n samples (n, D) of N(0, cov)."""
    return np.random.RandomState(seed).multivariate_normal(np.zeros(len(cov)), cov, size=n)


# ------------------------------------------------------------------ unsupervised scores
def test_independent_codes_score_near_zero():
    z = np.random.RandomState(0).randn(20000, 5) * [1.0, 2.0, 0.5, 3.0, 1.0]  # (N, D)
    s = unsupervised_scores(z)
    assert set(s) == set(UNSUPERVISED_KEYS)
    assert 0 <= s["gaussian_total_correlation"] < 2e-3
    assert 0 <= s["gaussian_wasserstein_correlation_norm"] < 2e-3
    # the histogram MI's positive bias, (bins − 1)² / (2N) = 0.009 nats, and no more
    assert s["mutual_info_score"] < 0.015


def test_gaussian_scores_match_their_closed_forms():
    """TC = ½ (Σ log Σ_jj − log det Σ); for unit variances and correlation ρ,
    TC = −½ log(1 − ρ²) and W2² = 4 − 2(√(1+ρ) + √(1−ρ))."""
    r = np.random.RandomState(3)
    a = r.randn(4, 4)
    cov = a @ a.T + 0.5 * np.eye(4)  # (4, 4) SPD with strong correlations
    closed = 0.5 * (np.sum(np.log(np.diag(cov))) - np.log(np.linalg.det(cov)))
    assert gaussian_total_correlation(cov) == pytest.approx(closed, rel=1e-12)
    # the library's form: sqrtm of the non-symmetric diag(Σ)·Σ
    lib = 2 * np.trace(cov) - 2 * np.trace(scipy.linalg.sqrtm(cov * np.diag(cov)[:, None])).real
    assert gaussian_wasserstein_correlation(cov) == pytest.approx(lib, rel=1e-9)
    rho = 0.8
    c2 = np.array([[1.0, rho], [rho, 1.0]])
    assert gaussian_total_correlation(c2) == pytest.approx(-0.5 * math.log(1 - rho**2))
    w2 = 4 - 2 * (math.sqrt(1 + rho) + math.sqrt(1 - rho))
    assert gaussian_wasserstein_correlation(c2) == pytest.approx(w2)
    assert gaussian_total_correlation(np.diag([1.0, 4.0, 9.0])) == 0.0
    assert gaussian_wasserstein_correlation(np.diag([1.0, 4.0, 9.0])) == pytest.approx(0, abs=1e-12)
    # from samples: the estimate of the closed form
    s = unsupervised_scores(correlated_gaussian(cov, 50000))
    assert s["gaussian_total_correlation"] == pytest.approx(closed, rel=0.03)
    lib_norm = lib / np.trace(cov)
    assert s["gaussian_wasserstein_correlation_norm"] == pytest.approx(lib_norm, rel=0.05)


def test_mutual_info_score_is_the_mean_off_diagonal_binned_mi():
    """Dependent latents score their binned MI; the mean is over the D(D−1) ordered pairs."""
    r = np.random.RandomState(1)
    x = r.randn(5000)
    z = np.column_stack([x, x, r.randn(5000)])  # z0 = z1, z2 independent
    s = unsupervised_scores(z)
    edges = np.histogram(x, bins=20)[1]
    h = mutual_info_score(np.digitize(x, edges[:-1]), np.digitize(x, edges[:-1]))  # H(binned x)
    # pairs (0,1), (1,0) carry H; the four pairs with z2 carry only the estimator's bias
    assert s["mutual_info_score"] == pytest.approx(2 * h / 6, abs=0.02)
    assert s["gaussian_total_correlation"] == math.inf  # z1 is a linear function of z0
    more = unsupervised_scores(np.column_stack([x, x + 0.5 * r.randn(5000), r.randn(5000)]))
    assert 0.1 < more["mutual_info_score"] < s["mutual_info_score"]


def test_constant_latent_changes_no_gaussian_score_and_gives_no_nan():
    z = correlated_gaussian(np.array([[1.0, 0.5], [0.5, 1.0]]), 5000)
    with_const = np.column_stack([z, np.full(len(z), 3.0)])
    a, b = unsupervised_scores(z), unsupervised_scores(with_const)
    for k in UNSUPERVISED_KEYS[:3]:
        assert b[k] == pytest.approx(a[k], rel=1e-12), k
    assert b["mutual_info_score"] == pytest.approx(a["mutual_info_score"] * 2 / 6)  # 0 MI pairs
    flat = unsupervised_scores(np.ones((10, 3)))
    assert all(math.isfinite(v) for v in flat.values()) and flat["gaussian_total_correlation"] == 0


def test_unsupervised_bad_input_names_codes():
    with pytest.raises(ValueError, match="codes must be 2-D"):
        unsupervised_scores(np.zeros(10))
    with pytest.raises(ValueError, match="codes needs at least 2 columns"):
        unsupervised_scores(np.zeros((10, 1)))
    with pytest.raises(ValueError, match="codes needs at least 2 rows"):
        unsupervised_scores(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="codes contains NaN"):
        unsupervised_scores(np.array([[0.0, 1.0], [np.nan, 2.0]]))


# ------------------------------------------------------------------ IRS
def test_disentangled_codes_score_near_one_and_find_their_parents():
    codes, factors = codes_for("identity", 4000)  # z_k = v_k + 0.05 noise
    out = irs(codes, factors)
    assert out["IRS"] > 0.9 and out["IRS"] == out["avg_score"]
    assert out["parents"].tolist() == [0, 1, 2, 3]
    d, k = codes.shape[1], factors.shape[1]
    assert out["disentanglement_scores"].shape == (d,) and out["max_deviations"].shape == (d,)
    assert out["IRS_matrix"].shape == (d, k) and out["num_active_dims"] == d
    assert np.allclose(out["disentanglement_scores"], out["IRS_matrix"].max(axis=1))
    assert np.all(out["max_deviations"] > 0)


def test_entangled_and_noise_codes_score_clearly_lower():
    good = irs(*codes_for("identity", 4000))["IRS"]
    rotated = irs(*codes_for("rotation", 4000))["IRS"]
    noise = irs(*codes_for("noise", 4000))["IRS"]
    assert rotated < good - 0.3, (rotated, good)
    assert noise < 0.3 and noise < rotated


def test_irs_diff_quantile_and_constant_latents():
    codes, factors = codes_for("identity", 3000, extra=True)  # + a collapsed and a constant dim
    out = irs(codes, factors)
    assert out["num_active_dims"] == codes.shape[1] - 1  # the exactly constant one
    assert out["parents"][-1] == -1 and out["disentanglement_scores"][-1] == 0
    assert out["max_deviations"][-1] == 0 and np.all(np.isfinite(out["IRS_matrix"]))
    # weighted by max deviation: the collapsed (1e-4) and constant dims do not move the score
    base = irs(codes[:, :4], factors)["IRS"]
    assert out["IRS"] == pytest.approx(base, abs=1e-3)
    # the paper's maximum (q = 1) is stricter than the library's default quantile
    assert irs(codes, factors, diff_quantile=1.0)["IRS"] < out["IRS"]
    assert DIFF_QUANTILE == 0.99
    assert irs(np.full((50, 3), 2.0), factors[:50])["IRS"] == 0.0  # no varying latent


def test_irs_bad_input_names_the_argument():
    codes, factors = codes_for("identity", 100)
    with pytest.raises(ValueError, match="codes must be 2-D"):
        irs(codes[:, 0], factors)
    with pytest.raises(ValueError, match="factors must be 2-D"):
        irs(codes, factors[:, 0])
    with pytest.raises(ValueError, match=r"different N.*codes\.shape=\(100, 4\)"):
        irs(codes, factors[:50])
    with pytest.raises(ValueError, match="diff_quantile"):
        irs(codes, factors, diff_quantile=1.5)
    with pytest.raises(ValueError, match="factors must hold integer"):
        irs(codes, factors + 0.5)


# ------------------------------------------------------------------ registry and report
def test_registered_and_reachable_from_latent_space():
    assert {"irs", "unsupervised"} <= set(REGISTRY)
    assert ls.irs is irs and ls.unsupervised_scores is unsupervised_scores
    assert {"irs", "unsupervised_scores"} <= set(ls.__all__)
    # appended after the published streams: no earlier seed moves
    assert registry.streams()[: len(registry.STREAMS)] == list(registry.STREAMS)
    assert registry.streams()[len(registry.STREAMS) :][:2] == ["irs", "unsupervised"]
    for key in ("irs", *UNSUPERVISED_KEYS):
        assert key in HEADLINE and report.display(key) != key
    assert report.display("gaussian_wasserstein_correlation_norm") == "Gaussian WC (norm.)"


def test_compute_metrics_runs_both_on_the_shared_train_codes():
    s = GridSampler()
    enc = Encoder(s, "identity")
    out = compute_metrics(s, enc, np.random.RandomState(0), "quick", ["irs", "unsupervised"],
                          progress=False)  # fmt: skip
    assert out["irs"] > 0.85 and "time_irs_s" in out and "time_unsupervised_s" in out
    assert out["gaussian_total_correlation"] < 0.01  # independent factors, identity code
    assert out["num_train"] == 2000 and set(UNSUPERVISED_KEYS) <= set(out)
    full = compute_metrics(s, enc, np.random.RandomState(0), "quick", progress=False)
    for key in ("irs", *UNSUPERVISED_KEYS):
        assert full[key] == out[key], key  # the same shared set whatever else runs


def test_stale_metrics_json_without_the_new_metrics_is_reevaluated(tmp_path):
    """A metrics.json written before IRS and the unsupervised scores were registered lacks their
    timings: the report re-evaluates it; one with every registered metric is left alone."""
    from sbd_vae.metrics.registry import metric_counts

    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "kl.png").write_bytes(b"x")
    every = {f"time_{n}_s": 0.1 for n in REGISTRY}
    m = {"protocol": "study", "seed": 0, "schema": report.METRICS_SCHEMA, "metric_options": {},
         "counts": metric_counts("study"), "figures": {"kl": "figures/kl.png"}, "extra": every}  # fmt: skip
    assert not report.needs_evaluation(m, "study", 0, tmp_path)
    old = dict(m, extra={k: v for k, v in every.items() if "irs" not in k})
    assert report.needs_evaluation(old, "study", 0, tmp_path)
    asked = {"metrics": ["mig", "irs"]}  # asked for IRS, which the old file lacks
    assert report.needs_evaluation(dict(old, metric_options=asked), "study", 0, tmp_path,
                                   metric_options=asked)  # fmt: skip
    only_mig = {"metrics": ["mig"]}
    assert not report.needs_evaluation(dict(old, metric_options=only_mig), "study", 0, tmp_path,
                                       metric_options=only_mig)  # fmt: skip


def _row(beta, seed, **scores):
    return {"beta": beta, "beta_norm": beta / 100, "seed": seed, **scores}


def test_new_scores_reach_scores_csv_and_the_index(tmp_path, monkeypatch):
    """The report of a fake sweep whose evaluate returns the suite's keys: scores.csv has the new
    columns, index.md their labels and the note that lower is more factorised."""
    import json

    from sbd_vae import rundir

    sweep = tmp_path / "sw"
    names = []
    for beta in (1.0, 4.0):
        for seed in (0, 1, 2):
            run = sweep / f"beta{beta:g}_seed{seed}"
            run.mkdir(parents=True)
            (run / "model.keras").write_bytes(b"")
            rundir.write_json(run / "summary.json", {"step": 10, "train_seconds": 1.0})
            names.append({"name": run.name, "beta": beta, "seed": seed, "beta_norm": beta / 100})
    rundir.write_json(sweep / "sweep.json", {"runs": names})

    def evaluate(run_dir, protocol, seed, progress=False, metric_options=None):
        r = np.random.RandomState(len(str(run_dir)))
        scores = {k: float(r.rand()) for k in ("mig", "irs", *UNSUPERVISED_KEYS)}
        m = {"schema": report.METRICS_SCHEMA, "protocol": protocol, "seed": seed,
             "metric_names": list(scores), **scores, "recon": 1.0, "recon_excess": 0.5,
             "kl_total": 0.3, "active_units": 3,
             "kl_per_latent": [0.1, 0.2]}  # fmt: skip
        rundir.write_json(run_dir / "metrics.json", m)
        return json.loads((run_dir / "metrics.json").read_text())

    monkeypatch.setattr(report, "run_convergence", lambda path: {})
    out = report.report(sweep, evaluate, "study", progress=False)
    with open(out / "scores.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6
    written = {r.name: json.loads((r / "metrics.json").read_text()) for r in sweep.glob("beta*")}
    for row in rows:
        for key in ("irs", *UNSUPERVISED_KEYS):
            assert float(row[key]) == pytest.approx(written[row["run"]][key], rel=1e-5), key
    index = (out / "index.md").read_text()
    header = next(line for line in index.splitlines() if line.startswith("| β |"))
    for label in ("IRS", "Gaussian TC", "Gaussian TC (active latents)", "Gaussian WC",
                  "Gaussian WC (norm.)", "MI score"):  # fmt: skip
        assert f"| {label} |" in header, label
    assert "lower is more factorised" in index and "Suter et al. 2019" in index
