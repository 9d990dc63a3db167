"""latentSpace.py / sbd_vae/figures.py on real `test`-preset runs trained on a real bpy render:
every figure, evaluate (quick, deterministic), the sweep report, the README figure set, bad input."""

import csv
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest

import latentSpace as ls
import training
from sbd_vae import evaluation, figures, rundir

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:FactorVAE. every code dim")]
REPO = Path(__file__).resolve().parents[1]
# The quick protocol shrunk further for this file: these tests check the plumbing, the files
# and determinism, not the scores (tests/test_metrics.py checks those on synthetic codes).
TINY_QUICK = dict(num_train=300, num_test=150, batch_size=8, beta_vae_train=40, beta_vae_eval=20,
                  factor_vae_train=40, factor_vae_eval=20, num_variance_estimate=300)  # fmt: skip


# DCI (gradient boosting, one model per factor) dominates the suite's time even at these counts:
# the full suite runs once (test_evaluate_...); the report tests run the other metrics.
FAST = {"metrics": ["mig", "sap", "beta_vae", "factor_vae"]}


@pytest.fixture(scope="module", autouse=True)
def tiny_quick_protocol():
    from sbd_vae import metrics

    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(metrics.PROTOCOLS, "quick", dict(metrics.PROTOCOLS["quick"], **TINY_QUICK))
        yield


@pytest.fixture(scope="module")
def sweep(shapes_npz, tmp_path_factory):
    """A real 2 β × 1 seed sweep of the test preset, plus a fabricated unfinished third run."""
    out = tmp_path_factory.mktemp("sweep") / "sw"
    cfg = training.preset_config("test", data_path=str(shapes_npz), steps=40)
    training.sweep(cfg, [1.0, 4.0], [0], out, progress=False)
    # an unfinished run: config written, no model.keras / summary.json (as after a crash)
    unfinished = out / training.run_name(16.0, 0)
    unfinished.mkdir()
    conf = json.loads((out / "beta1_seed0" / "config.json").read_text())
    rundir.write_json(unfinished / "config.json", dict(conf, beta=16.0))
    index = json.loads((out / "sweep.json").read_text())
    index["runs"].append({"name": unfinished.name, "beta": 16.0, "seed": 0, "beta_norm": 16 * 6 / 32**2,
                          "status": "pending"})  # fmt: skip
    rundir.write_json(out / "sweep.json", index)
    return out


@pytest.fixture(scope="module")
def run(sweep):
    return sweep / "beta1_seed0"


@pytest.fixture(scope="module")
def loaded(run):
    return ls.load_run(run)


def _png_ok(path):
    path = Path(path)
    assert path.exists() and path.stat().st_size > 0, path
    img = imageio.imread(path)
    assert img.ndim in (2, 3) and min(img.shape[:2]) > 50, img.shape
    return img


# ----------------------------------------------------------------------------- figures
def test_every_figure_function_writes_a_png(loaded, tmp_path):
    model, cfg, sampler = loaded
    rng = np.random.RandomState(0)
    images = sampler.images_from_factors(sampler.sample_factors(6, rng))  # (6, 32, 32, 1)
    mean, logvar = ls.encode(model, images, batch=4)  # two batches
    assert mean.shape == logvar.shape == (6, cfg.latent_dim)
    kl = ls.kl_per_latent(mean, logvar).mean(axis=0)
    assert np.all(kl >= -1e-6)
    paths = [
        ls.plot_traversals(model, images[0], tmp_path / "trav.png", kl=kl, n_steps=5),
        ls.plot_traversals(model, images[0], tmp_path / "trav_q.png", prior_quantiles=True),
        ls.plot_reconstructions(model, images, tmp_path / "recon.png"),
        ls.plot_factor_response(model, sampler, tmp_path / "fr.png", n_bases=2, rng=rng),
        ls.plot_latent_geometry(model, sampler, tmp_path / "geom.png", n_bases=1, rng=rng),
        ls.plot_kl_per_latent(kl, tmp_path / "kl.png"),
    ]
    for p in paths:
        _png_ok(p)
    gif = ls.traversal_gif(model, images[0], tmp_path / "trav.gif", n_steps=5)
    frames = imageio.mimread(gif)
    assert len(frames) == 8 and frames[0].shape == frames[-1].shape  # 5 forth + 3 back
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no temp files left


def test_traversal_rows_sorted_by_kl_and_sweep_one_latent(loaded):
    model, cfg, sampler = loaded
    image = sampler.images_from_factors(sampler.sample_factors(1, np.random.RandomState(1)))[0]
    kl = np.arange(cfg.latent_dim, dtype=float)[::-1].copy()
    kl[[0, 3]] = kl[[3, 0]]
    tr = figures.traversal_images(model, image, k=2.0, n_steps=5, kl=kl)
    assert list(tr["order"]) == list(np.argsort(-kl, kind="stable"))
    assert tr["images"].shape == (cfg.latent_dim, 5, 32, 32, 1)
    mean, _ = ls.encode(model, image[None])
    row0 = tr["values"][0]  # the swept z of the first row's latent
    np.testing.assert_allclose(row0, mean[0, tr["order"][0]] + np.linspace(-2, 2, 5), atol=1e-5)
    # the middle column is z = μ, i.e. the reconstruction, in every row
    recon = ls.decode(model, mean)
    for r in range(cfg.latent_dim):
        np.testing.assert_allclose(tr["images"][r, 2], recon[0], atol=1e-4)


def test_geometry_picks_two_different_latents(loaded):
    model, _, sampler = loaded
    g = figures.latent_geometry(model, sampler, n_bases=1, rng=np.random.RandomState(0))
    dx, dy = g["latents"]
    n = sampler.num_positions  # sized to the image (dataset.grid_sizes): 13 at 32² over ±0.2
    assert dx != dy and g["codes"].shape == (1, n, n, model.latent_dim)
    # synthetic: latent 2 mixes x and y and latents 0 and 1 carry each cleanly; a constant latent
    rng = np.random.RandomState(0)
    x, y = rng.rand(400), rng.rand(400)
    codes = np.stack([x + 0.01 * rng.randn(400), y, x + y, np.zeros(400)], 1)
    assert figures.pick_position_latents(codes, x, y)[:2] == (0, 1)
    # an entangled pair (a rotation of x and y) is chosen over two weak, merely correlated latents
    rot = np.stack([x + y, x - y, x + rng.randn(400), y + rng.randn(400)], 1)
    dx, dy, rx, ry = figures.pick_position_latents(rot, x, y)
    assert {dx, dy} == {0, 1} and dx != dy and all(map(math.isfinite, (rx, ry)))


# ----------------------------------------------------------------------------- bad input
def test_unfinished_missing_and_corrupt_runs_give_clear_errors(sweep, run, tmp_path):
    with pytest.raises(rundir.RunDirError, match=r"unfinished.*training\.py train.*--preset test"):
        ls.load_run(sweep / "beta16_seed0")
    with pytest.raises(rundir.RunDirError, match="no such run directory"):
        ls.load_run(tmp_path / "nope")
    broken = tmp_path / "broken"
    shutil.copytree(
        run, broken, ignore=shutil.ignore_patterns("checkpoints", "tb", "frames", "figures")
    )
    (broken / "model.keras").write_bytes(b"not a zip file")
    with pytest.raises(rundir.RunDirError, match=r"model\.keras: model file is corrupt"):
        ls.load_run(broken)


def test_sampler_that_does_not_match_the_run_is_refused(run, shapes_npz):
    import dataset

    other_range = dataset.ShapesDataset(shapes_npz, image_size=32, pos_range=(-0.1, 0.1))
    with pytest.raises(ValueError, match=r"(?s)does not match.*pos_range"):
        ls.load_run(run, sampler=other_range)
    other_size = dataset.ShapesDataset(shapes_npz, image_size=64)
    with pytest.raises(ValueError, match=r"(?s)does not match.*image_size"):
        ls.evaluate(run, "quick", sampler=other_size, progress=False)
    other_grid = dataset.ShapesDataset(shapes_npz, image_size=32, num_positions=8)
    with pytest.raises(ValueError, match="factor_sizes"):
        ls.load_run(run, sampler=other_grid)


# ----------------------------------------------------------------------------- evaluate
def test_evaluate_quick_writes_finite_metrics_and_is_deterministic(run):
    first = ls.evaluate(run, "quick", seed=3, progress=False, figures=False)  # the whole suite
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["protocol"] == "quick" and saved["seed"] == 3
    assert "quick" in saved["protocol_note"]
    assert saved["counts"]["num_train"] == 300 and saved["counts"]["num_images_encoded"] > 0
    assert saved["beta"] == 1.0 and saved["beta_norm"] == pytest.approx(6 / 32**2)
    expected = {"mig", "dci_disentanglement", "dci_completeness", "sap_discrete", "sap_continuous",
                "modularity", "explicitness_test", "beta_vae_eval_accuracy",
                "factor_vae_eval_accuracy"}  # fmt: skip
    assert expected <= set(saved["metric_names"]) and saved["metric_names"][0] == "mig"
    assert not any(n.startswith("time_") or n.startswith("num_") for n in saved["metric_names"])
    for name in saved["metric_names"] + ["recon", "recon_mse", "kl_total"]:
        assert math.isfinite(saved[name]), name
    assert 0 <= saved["active_units"] <= 6 and len(saved["kl_per_latent"]) == 6
    # same seed, same numbers (compute_metrics gives every metric its own stream, so a subset run
    # reproduces the full run's values for that subset)
    again = ls.evaluate(run, "quick", seed=3, progress=False, figures=False, metric_options=FAST)
    for name in again["metric_names"] + ["recon", "recon_mse", "active_units"]:
        assert again[name] == first[name], name
    other = ls.evaluate(run, "quick", seed=4, progress=False, figures=False, metric_options=FAST)
    assert any(other[n] != first[n] for n in other["metric_names"])  # the seed matters


# ----------------------------------------------------------------------------- sweep report
def test_report_scores_finished_runs_and_lists_the_unfinished_one(sweep, capsys):
    out = ls.report(sweep, "quick", progress=True, metric_options=FAST)
    printed = capsys.readouterr().out
    assert "beta16_seed0" in printed and "unfinished" in printed
    rows = (out / "scores.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[0].startswith("run,beta,beta_norm,seed,eval_seed,protocol,")
    assert {r.split(",")[0] for r in rows[1:]} == {"beta1_seed0", "beta4_seed0"}
    header = rows[0].split(",")
    for col in ("mig", "sap_discrete", "sap_continuous", "recon", "recon_floor", "recon_excess",
                "active_units", "kl_0", "mig_shape", "mig_pos_x",
                "steps", "converged", "loss_change", "train_seconds", "machine"):  # fmt: skip
        assert col in header, col
    for name in ("scores_vs_beta.png", "factors_vs_beta.png", "recon_vs_beta.png",
                 "active_units_vs_beta.png"):  # fmt: skip
        _png_ok(out / name)
    index = (out / "index.md").read_text()
    assert "Unfinished runs" in index and "beta16_seed0" in index and "quick" in index
    # discrete SAP is "SAP", the continuous one is labelled; one seed per β: no pair is tested
    assert "| SAP |" in index and "SAP (continuous)" in index
    assert "fewer than 2 seeds: not testable" in index and "## Convergence" in index
    assert "fewer than 3 runs or 2 β: no trend test" in index
    links = [s.split(")")[0] for s in index.split("](")[1:]]
    assert any("training.gif" in link for link in links) and any(
        "geometry" in link for link in links
    )
    for link in links:  # every relative link resolves
        assert (out / link).exists(), link
    for run in ("beta1_seed0", "beta4_seed0"):
        figs = sweep / run / "figures"
        assert {p.name for p in figs.iterdir()} >= set(evaluation.FIGURES.values())
        assert len(imageio.mimread(figs / "traversals.gif")) > 1


def test_spread_over_seeds_is_the_sample_std():
    """Two seeds 1 and 3: the spread papers report is √2 (ddof=1), not numpy's default 1."""
    assert figures.seed_std([1.0, 3.0]) == pytest.approx(math.sqrt(2))
    assert figures.seed_std([2.0]) == 0.0 and math.isnan(figures.seed_std([]))
    assert figures.seed_std([1.0, float("nan"), 3.0]) == pytest.approx(math.sqrt(2))
    records = [{"beta": 1.0, "beta_norm": 0.01, "mig": v} for v in (0.1, 0.3)]
    records += [{"beta": 4.0, "beta_norm": 0.04, "mig": 0.5}]
    betas, mean, std, _ = figures._by_beta(records, "mig")
    assert betas.tolist() == [1.0, 4.0] and mean == pytest.approx([0.2, 0.5])
    assert std == pytest.approx([0.1 * math.sqrt(2), 0.0])


def test_corrupt_metrics_json_is_named_and_reevaluated(sweep, capsys):
    path = sweep / "beta4_seed0" / "metrics.json"
    path.write_text('{"protocol": "quick", "mig": ')
    with pytest.raises(
        rundir.RunDirError, match=r"beta4_seed0/metrics\.json: metrics file is corrupt"
    ):
        ls.read_metrics(sweep / "beta4_seed0")
    ls.report(sweep, "quick", progress=False, metric_options=FAST)
    assert "metrics.json" in capsys.readouterr().err
    assert ls.read_metrics(sweep / "beta4_seed0")["protocol"] == "quick"


def test_readme_figure_set(sweep, tmp_path):
    written = ls.figures(sweep, tmp_path / "img", progress=False, metric_options=FAST)
    # the seed's contrast, chosen from the grid: β 1 and 4 at 32² have β_norm 0.006 and 0.023;
    # 4 is the nearer to the seed's β=102 at 128² (0.062)
    assert written["betas"]["reference"] == 1.0 and written["betas"]["contrast"] == 4.0
    best = written["betas"]["contrast"]
    for b in {1.0, best}:
        for stem in ("traversals", "factor_response", "geometry"):
            _png_ok(tmp_path / "img" / f"{stem}_beta{b:g}.png")
        assert len(imageio.mimread(tmp_path / "img" / f"training_beta{b:g}.gif")) > 1
    for name in ("scores_vs_beta.png", "factors_vs_beta.png", "active_units_vs_beta.png"):
        _png_ok(tmp_path / "img" / name)


def test_empty_sweep_says_so(tmp_path, sweep):
    empty = tmp_path / "empty"
    empty.mkdir()
    shutil.copytree(sweep / "beta16_seed0", empty / "beta16_seed0")
    out = ls.report(empty, "quick", progress=False)
    assert "No finished runs yet" in (out / "index.md").read_text()
    assert (out / "scores.csv").read_text().startswith("run,beta")


# ----------------------------------------------------------------------------- CLI
def test_cli_errors_are_one_line_with_exit_code_2(tmp_path, sweep):
    cmd = [sys.executable, str(REPO / "latentSpace.py")]
    r = subprocess.run([*cmd, "evaluate", str(sweep / "beta16_seed0"), "--protocol", "quick"],
                       capture_output=True, text=True, cwd=REPO, timeout=120)  # fmt: skip
    last = r.stderr.strip().splitlines()[-1]  # (TensorFlow may log above it at import)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert last.startswith("error:") and "unfinished" in last and "training.py train" in last
    r = subprocess.run([*cmd, "report", str(tmp_path / "missing")], capture_output=True, text=True,
                       cwd=REPO, timeout=120)  # fmt: skip
    assert (
        r.returncode == 2 and "no such sweep directory" in r.stderr and "Traceback" not in r.stderr
    )


def test_import_computes_nothing_and_does_not_import_tensorflow():
    code = "import sys, latentSpace; assert 'tensorflow' not in sys.modules, 'tf imported'"
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert r.returncode == 0, r.stderr


def test_metrics_json_records_the_protocol(run):
    """Active units by one definition, recon against its floor, per-factor scores, the grid."""
    m = ls.evaluate(run, "quick", seed=1, progress=False, figures=False, metric_options=FAST)
    assert m["schema"] == evaluation.METRICS_SCHEMA
    assert m["active_threshold"] == 0.01 and "Burda" in m["active_definition"]
    act = np.array(m["unit_activity"])
    assert m["active_units"] == int((act > 0.01).sum())
    assert m["recon_excess"] == pytest.approx(m["recon"] - m["recon_floor"])
    assert 0 < m["recon_floor"] < m["recon"]
    grid = m["factor_grid"]
    assert grid["circular"] == ["azimuth"] and "categorical" in grid["note"]
    assert grid["factor_sizes"] == m["data_config"]["factor_sizes"]
    assert "mig" in m["per_factor"]  # FAST skips DCI, whose accuracies give "informativeness"
    assert set(m["per_factor"]["mig"]) == set(grid["factor_names"])
    assert np.mean(list(m["per_factor"]["mig"].values())) == pytest.approx(m["mig"])


def test_a_registered_metric_reaches_metrics_json_and_scores_csv(sweep, monkeypatch):
    """A new metric is one registry entry: evaluate records it and the report's scores.csv has
    its column (run last: it re-scores the sweep with other metric options)."""
    from sbd_vae.metrics import Metric, registry

    def spread(data, seed):  # the mean standard deviation of the shared train codes
        return {"dummy_spread": float(data.codes["train"].std(axis=0).mean())}

    monkeypatch.setitem(registry.REGISTRY, "dummy", Metric("dummy", spread))
    opts = {"metrics": ["mig", "dummy"]}
    out = ls.report(sweep, "quick", progress=False, metric_options=opts)
    m = ls.read_metrics(sweep / "beta1_seed0")
    assert "dummy_spread" in m["metric_names"] and m["dummy_spread"] > 0
    with open(out / "scores.csv") as f:
        rows = {r["run"]: r for r in csv.DictReader(f)}
    assert float(rows["beta1_seed0"]["dummy_spread"]) == pytest.approx(m["dummy_spread"], rel=1e-5)
    assert float(rows["beta4_seed0"]["dummy_spread"]) > 0
