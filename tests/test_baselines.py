"""Calibration baselines (sbd_vae/baselines.py): the scores of a random code on synthetic ground
truth, their reproducibility and cache, the report's calibration section, and the Gaussian TC of
the active latents (sbd_vae/metrics/unsupervised.py)."""

import csv
import json
import math

import numpy as np
import pytest
from test_metrics import GridSampler

from sbd_vae import baselines, report, rundir
from sbd_vae.encoding import ACTIVE_VAR
from sbd_vae.evaluation import HEADLINE
from sbd_vae.metrics import irs, unsupervised_scores
from sbd_vae.metrics.unsupervised import (
    gaussian_total_correlation,
    gaussian_total_correlation_active,
)

LATENT_DIM = 10  # the runs' latent dimension


@pytest.fixture(autouse=True)
def fresh_memo():
    """Every test computes (or reads its cache) itself: no result kept from another test."""
    baselines._MEMO.clear()
    yield
    baselines._MEMO.clear()


@pytest.fixture(scope="module")
def quick_noise():
    """Both noise codes' scores on GridSampler (4 factors of 5–10 values), quick protocol."""
    baselines._MEMO.clear()
    return baselines.noise_baselines(GridSampler(), LATENT_DIM, "quick", 0)


# ------------------------------------------------------------------ the scores of noise
def test_noise_scores_chance_on_every_ground_truth_score(quick_noise):
    """A code that ignores the image carries no information about the factors:
    - MIG and DCI disentanglement ≈ 0: the plug-in MI of a noise latent with a factor is only
      its bias, (bins − 1)(values − 1) / 2N ≈ 0.04 nats at N = 2000, the same for every latent,
      so the gap between the best two (MIG) is a small fraction of that over H(factor) ≥ 1.6 nats
      (observed ≈ 0.001); 0.02 leaves a tenfold margin;
    - BetaVAE and FactorVAE accuracies at chance, 1 / 4 factors: the quick eval sets hold 250
      points, binomial SD √(0.25·0.75/250) ≈ 0.027, so ±0.1 is almost four SDs."""
    for kind, s in quick_noise.items():
        assert all(math.isfinite(v) for v in s.values()), kind
        assert set(HEADLINE) <= set(s), set(HEADLINE) - set(s)
        assert s["mig"] < 0.02, (kind, s["mig"])
        assert s["dci_disentanglement"] < 0.05, (kind, s["dci_disentanglement"])
        assert s["sap_discrete"] < 0.05, (kind, s["sap_discrete"])
        for acc in ("beta_vae_eval_accuracy", "factor_vae_eval_accuracy"):
            assert abs(s[acc] - 0.25) < 0.1, (kind, acc, s[acc])
        assert s["gaussian_total_correlation"] < 0.05  # independent: the estimator's bias only
        assert s["gaussian_total_correlation_active"] == pytest.approx(
            s["gaussian_total_correlation"], abs=1e-12
        )  # every noise latent is active, Gaussian (var 1) and uniform (var 1/12) alike


def test_noise_irs_is_set_by_the_tails_of_the_noise(quick_noise):
    """IRS = 1 − q99(|z − E[z | v]|) / max |z − E z| for a latent that ignores v. Uniform noise on
    [0, 1): both are about half the range, so IRS ≈ 0.01 (0.5·(1 − 0.99) / 0.5 over ideal
    quantiles; the sample max falls a little short of 0.5): below 0.05. Standard Gaussian: the 0.99
    quantile of |z| is 2.58 while the largest of N draws is about 3.5 at N = 2000 (quick) and
    3.9 at N = 10 000 (study), so IRS ≈ 0.26–0.34 at quick counts (observed 0.30, per-value groups
    of 200–400 samples) and ≈ 0.37 at the study's, the reference values."""
    g, u = quick_noise["gaussian"]["irs"], quick_noise["uniform"]["irs"]
    assert 0.2 < g < 0.42, g
    assert u < 0.05, u
    # at the study's 10 000 codes, straight from the array-level score: the reference values
    r = np.random.RandomState(0)
    factors = GridSampler().sample_factors(10000, r)
    assert irs(r.randn(10000, LATENT_DIM), factors)["IRS"] == pytest.approx(0.37, abs=0.04)
    assert irs(r.rand(10000, LATENT_DIM), factors)["IRS"] == pytest.approx(0.01, abs=0.02)


def test_noise_scores_are_reproducible_given_the_seed():
    s = GridSampler()
    a = baselines.noise_scores(s, LATENT_DIM, "quick", 0, "uniform",
                               metric_options={"metrics": ["mig", "irs", "unsupervised"]})  # fmt: skip
    baselines._MEMO.clear()
    b = baselines.noise_scores(s, LATENT_DIM, "quick", 0, "uniform",
                               metric_options={"metrics": ["mig", "irs", "unsupervised"]})  # fmt: skip
    assert a == b
    c = baselines.noise_scores(s, LATENT_DIM, "quick", 1, "uniform",
                               metric_options={"metrics": ["mig", "irs", "unsupervised"]})  # fmt: skip
    assert c != a  # another metric seed: other factors, other noise
    f1, f2 = (baselines.NoiseEncodeFn(4, "gaussian", [3, 9]) for _ in range(2))
    images = np.zeros((5, 2, 2, 1), np.float32)
    assert np.array_equal(f1(images), f2(images)) and f1(images).shape == (5, 4)
    assert f1.images == 10 and f1.calls == 2
    with pytest.raises(ValueError, match="kind 'laplace'"):
        baselines.NoiseEncodeFn(4, "laplace")


def test_the_cache_is_reused_and_keyed(tmp_path, monkeypatch):
    calls = []
    real = baselines.compute_metrics

    def counting(*args, **kwargs):
        calls.append(kwargs.get("protocol"))
        return real(*args, **kwargs)

    monkeypatch.setattr(baselines, "compute_metrics", counting)
    cache = tmp_path / "report" / "baselines.json"
    s, opts = GridSampler(), {"metrics": ["mig", "irs"]}
    first = baselines.noise_scores(s, LATENT_DIM, "quick", 0, "gaussian", cache=cache,
                                   metric_options=opts)  # fmt: skip
    assert len(calls) == 1 and cache.exists()
    baselines._MEMO.clear()  # a new process: only the file remains
    again = baselines.noise_scores(s, LATENT_DIM, "quick", 0, "gaussian", cache=cache,
                                   metric_options=opts)  # fmt: skip
    assert again == first and len(calls) == 1  # read back, not recomputed

    # the sampler is not even made when the numbers are cached
    def no_sampler():
        raise AssertionError("sampler made although cached")

    cfg = baselines.data_of(s)
    assert baselines.noise_scores(no_sampler, LATENT_DIM, "quick", 0, "gaussian", cache=cache,
                                  metric_options=opts, data_config=cfg) == first  # fmt: skip
    # every part of the key matters: kind, seed, latent dimension, data
    baselines.noise_scores(s, LATENT_DIM, "quick", 0, "uniform", cache=cache, metric_options=opts)
    baselines.noise_scores(s, LATENT_DIM, "quick", 1, "gaussian", cache=cache, metric_options=opts)
    baselines.noise_scores(s, 4, "quick", 0, "gaussian", cache=cache, metric_options=opts)
    baselines.noise_scores(GridSampler((5, 8, 6, 9)), LATENT_DIM, "quick", 0, "gaussian",
                           cache=cache, metric_options=opts)  # fmt: skip
    assert len(calls) == 5
    entries = json.loads(cache.read_text())["entries"]
    assert len(entries) == 5  # each kept beside the others
    assert {e["kind"] for e in entries.values()} == {"gaussian", "uniform"}
    assert all(e["protocol"] == "quick" and "irs" in e["scores"] for e in entries.values())
    # a corrupt cache is recomputed and rewritten, not an error
    cache.write_text("{not json")
    baselines._MEMO.clear()
    assert baselines.noise_scores(s, LATENT_DIM, "quick", 0, "gaussian", cache=cache,
                                  metric_options=opts) == first  # fmt: skip
    assert len(calls) == 6 and len(json.loads(cache.read_text())["entries"]) == 1


# ------------------------------------------------------------------ the report's section
def _fake_sweep(tmp_path, with_active_key=(True, False)):
    """A sweep of 2 β × 2 seeds whose evaluate writes a few scores; the runs of seed 1 lack
    gaussian_total_correlation_active (a metrics.json scored before it existed)."""
    sweep = tmp_path / "sw"
    names = []
    for beta in (1.0, 4.0):
        for seed in (0, 1):
            run = sweep / f"beta{beta:g}_seed{seed}"
            run.mkdir(parents=True)
            (run / "model.keras").write_bytes(b"")
            rundir.write_json(run / "summary.json", {"step": 10, "train_seconds": 1.0})
            names.append({"name": run.name, "beta": beta, "seed": seed, "beta_norm": beta / 100})
    rundir.write_json(sweep / "sweep.json", {"runs": names})

    def evaluate(run_dir, protocol, seed, progress=False, metric_options=None):
        beta = 1.0 if "beta1_" in run_dir.name else 4.0
        scores = {"mig": 0.1 * beta, "irs": 0.4 + 0.02 * beta, "gaussian_total_correlation": 0.4}
        if run_dir.name.endswith("seed0") and with_active_key[0]:
            scores["gaussian_total_correlation_active"] = 0.04
        m = {"schema": report.METRICS_SCHEMA, "protocol": protocol, "seed": seed,
             "metric_names": list(scores), **scores, "recon": 1.0, "recon_excess": 0.5,
             "kl_total": 0.3, "active_units": 3, "latent_dim": 10, "kl_per_latent": [0.1, 0.2]}  # fmt: skip
        rundir.write_json(run_dir / "metrics.json", m)
        return json.loads((run_dir / "metrics.json").read_text())

    return sweep, evaluate


def test_the_report_shows_the_calibration_table(tmp_path, monkeypatch):
    sweep, evaluate = _fake_sweep(tmp_path)
    monkeypatch.setattr(report, "run_convergence", lambda path: {})
    seen = []

    def baselines_fn(run_dir, protocol, seed, cache=None, metric_options=None):
        seen.append((protocol, seed, cache))
        return {"gaussian": {"mig": 0.001, "irs": 0.37, "gaussian_total_correlation": 0.01},
                "uniform": {"mig": 0.002, "irs": 0.012, "gaussian_total_correlation": 0.01}}  # fmt: skip

    out = report.report(sweep, evaluate, "study", progress=False, baselines_fn=baselines_fn)
    assert seen == [("study", 0, out / "baselines.json")]
    index = (out / "index.md").read_text()
    assert "## Calibration: scores of a random code" in index
    # IRS of the sweep: 0.42 at β=1, 0.48 at β=4 (means over seeds)
    assert "| IRS | 0.370 | 0.012 | 0.420 – 0.480 |" in index
    assert "| MIG | 0.001 | 0.002 | 0.100 – 0.400 |" in index
    # a score the older runs lack is optional: NaN there, the mean of those that have it
    assert "| Gaussian TC (active latents) | - | - | 0.040 – 0.040 |" in index
    with open(out / "scores.csv") as f:
        rows = {r["run"]: r for r in csv.DictReader(f)}
    assert float(rows["beta1_seed0"]["gaussian_total_correlation_active"]) == 0.04
    assert rows["beta1_seed1"]["gaussian_total_correlation_active"] == "nan"

    def failing(*args, **kwargs):
        raise ValueError("no data here")

    index = (report.report(sweep, evaluate, "study", progress=False, baselines_fn=failing)
             / "index.md").read_text()  # fmt: skip
    assert "The noise baselines could not be computed: no data here" in index
    no_section = report.report(sweep, evaluate, "study", progress=False) / "index.md"
    assert "Calibration" not in no_section.read_text()


def test_a_metrics_json_without_the_new_key_is_not_rescored(tmp_path):
    """needs_evaluation reads which metrics ran from their timings, not from their output keys:
    a run scored before gaussian_total_correlation_active existed (its "unsupervised" ran) keeps
    its scores, and the column is NaN for it."""
    from sbd_vae.metrics import REGISTRY
    from sbd_vae.metrics.registry import metric_counts

    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "kl.png").write_bytes(b"x")
    m = {"protocol": "study", "seed": 0, "schema": report.METRICS_SCHEMA, "metric_options": {},
         "counts": metric_counts("study"), "figures": {"kl": "figures/kl.png"},
         "extra": {f"time_{n}_s": 0.1 for n in REGISTRY}, "gaussian_total_correlation": 0.4}  # fmt: skip
    assert "gaussian_total_correlation_active" not in m
    assert not report.needs_evaluation(m, "study", 0, tmp_path)


# ------------------------------------------------------------------ TC of the active latents
def test_tc_of_the_active_latents_ignores_correlated_collapsed_ones():
    """The committed study's situation (beta1_seed0: 0.44 nats over all latents, 0.04 active):
    3 active, independent latents carry the factors; 7 collapsed ones barely move (variance
    ~1e-4 ≪ ACTIVE_VAR) but move together. TC is scale-free, so the collapsed latents' common
    wobble dominates the all-latents TC, while the active-latents TC is ≈ 0."""
    r = np.random.RandomState(0)
    n = 10000
    active = r.randn(n, 3) * [1.0, 0.7, 1.5]  # (n, 3) independent
    common = r.randn(n, 1)
    collapsed = 0.01 * (common + 0.5 * r.randn(n, 7))  # (n, 7) var 1.25e-4, correlation 0.8
    codes = np.column_stack([active, collapsed])
    assert ((codes.var(axis=0) > ACTIVE_VAR) == [True] * 3 + [False] * 7).all()
    s = unsupervised_scores(codes)
    assert s["gaussian_total_correlation"] > 1.0  # dominated by the collapsed latents
    assert 0 <= s["gaussian_total_correlation_active"] < 0.005  # bias ≈ 3 pairs / 2N
    assert s["gaussian_total_correlation_active"] == gaussian_total_correlation_active(codes)
    # the same number as the Gaussian TC of the active columns alone
    alone = gaussian_total_correlation(np.cov(active, rowvar=False))
    assert s["gaussian_total_correlation_active"] == pytest.approx(alone, rel=1e-12)


def test_tc_active_with_correlated_active_latents_and_with_fewer_than_two():
    r = np.random.RandomState(1)
    x = r.randn(20000)
    rho = 0.6
    y = rho * x + math.sqrt(1 - rho**2) * r.randn(20000)
    tiny = 1e-3 * r.randn(20000, 3)
    both = np.column_stack([x, y, tiny])
    closed = -0.5 * math.log(1 - rho**2)
    assert gaussian_total_correlation_active(both) == pytest.approx(closed, rel=0.05)
    # fewer than 2 active latents: 0 by definition (the TC of one variable, KL(p ‖ p)), not NaN
    assert gaussian_total_correlation_active(np.column_stack([x, tiny])) == 0.0
    assert gaussian_total_correlation_active(tiny) == 0.0
    assert unsupervised_scores(tiny)["gaussian_total_correlation_active"] == 0.0
    # the threshold is Burda et al.'s, on the variance (ddof 0) of the codes scored
    edge = np.column_stack([x, y * math.sqrt(0.02)])  # variance ≈ 0.02 > 0.01: active
    assert gaussian_total_correlation_active(edge) > 0.1
    assert gaussian_total_correlation_active(edge, threshold=0.05) == 0.0
