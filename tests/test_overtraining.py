"""Scores over training: snapshots kept during a real short training, scored like the final model,
carried by publishing, and summarised by the report (settled or not, the paired climb)."""

import csv
import json
import math

import numpy as np
import pytest

import latentSpace
import training
from sbd_vae import evaluation, overtraining, rundir

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cfg(shapes_npz):
    return training.preset_config("test", data_path=str(shapes_npz), snapshot_steps=(40, 100))


@pytest.fixture(scope="module")
def scored_sweep(cfg, tmp_path_factory):
    """A 2 β × 2 seed test sweep with snapshots at 40 and 100, reported with --all-snapshots."""
    out = tmp_path_factory.mktemp("sweep") / "sw"
    training.sweep(cfg, [1.0, 8.0], [0, 1], out, progress=False)
    latentSpace.report(out, protocol="quick", progress=False, all_snapshots=True)
    return out


def test_snapshots_are_kept_at_the_asked_steps_and_survive_pruning(scored_sweep, cfg):
    run = scored_sweep / "beta1_seed0"
    assert list(rundir.list_snapshots(run)) == [40, 100]
    # checkpoints are pruned to the last 2; snapshots are not
    assert len(rundir.list_checkpoints(run)) == cfg.keep_checkpoints
    assert json.loads((run / "config.json").read_text())["snapshot_steps"] == [40, 100]


def test_the_last_snapshot_scores_equal_the_final_model_scores(scored_sweep):
    m = latentSpace.read_metrics(scored_sweep / "beta8_seed1")
    last = m["snapshots"]["steps"]["100"]
    assert m["snapshots"]["protocol"] == "quick" and m["snapshots"]["seed"] == 0
    for key in m["metric_names"]:
        assert last[key] == m[key] or (math.isnan(last[key]) and math.isnan(m[key])), key
    assert last["kl_total"] == pytest.approx(m["kl_total"])
    assert last["images_seen"] == 100 * 16
    # the weights did change between the snapshots, and so did their numbers
    assert m["snapshots"]["steps"]["40"]["recon"] != last["recon"]


def test_the_final_step_snapshot_scored_afresh_gives_the_final_scores(scored_sweep):
    """What lets evaluate take the final scores for the snapshot at the final step: the same
    weights, protocol and seed give the same numbers when scored again."""
    run = scored_sweep / "beta8_seed1"
    m = latentSpace.read_metrics(run)
    _, cfg, sampler = latentSpace.load_run(run)
    core = evaluation.score_model(latentSpace.snapshot_model(run)(100), sampler, "quick", 0, False)
    fresh = evaluation.snapshot_record(core, 100, cfg.batch_size)
    for key in m["metric_names"]:
        assert fresh[key] == m[key] or (math.isnan(fresh[key]) and math.isnan(m[key])), key
    assert fresh["recon"] == m["recon"] and fresh["kl_per_latent"] == m["kl_per_latent"]
    assert fresh["per_factor"] == m["per_factor"]
    # and the record evaluate takes instead is that record, field for field (NaN included)
    assert json.dumps(evaluation.record_of_final(m, cfg.batch_size), sort_keys=True) == json.dumps(
        fresh, sort_keys=True
    )


def test_evaluate_scores_the_final_weights_once(scored_sweep, tmp_path, monkeypatch):
    """evaluate --all-snapshots scores the final model and the step-40 snapshot, and takes the
    final scores for the step-100 snapshot (it holds the final weights): 2 scorings, not 3."""
    import shutil

    run = tmp_path / "beta1_seed0"
    shutil.copytree(scored_sweep / "beta1_seed0", run)
    (run / "metrics.json").unlink()
    calls, real = [], evaluation.score_model
    monkeypatch.setattr(evaluation, "score_model", lambda *a, **k: calls.append(1) or real(*a, **k))
    m = latentSpace.evaluate(run, protocol="quick", progress=False, figures=False,
                             all_snapshots=True)  # fmt: skip
    assert len(calls) == 2
    assert m["snapshots"]["steps"]["100"] == evaluation.record_of_final(m, 16)
    assert m["snapshots"]["steps"]["40"]["recon"] != m["recon"]


def test_snapshot_weights_are_the_weights_at_that_step(scored_sweep, cfg):
    """snap-100 holds exactly the final model's weights; snap-40 does not."""
    import keras

    run = scored_sweep / "beta1_seed1"
    final = keras.models.load_model(run / "model.keras", compile=False)
    model_at = latentSpace.snapshot_model(run)
    at_end = model_at(100)
    for a, b in zip(final.encoder.weights, at_end.encoder.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    at_40 = model_at(40)
    assert any(
        not np.array_equal(a.numpy(), b.numpy())
        for a, b in zip(final.encoder.weights, at_40.encoder.weights)
    )


def test_report_writes_the_curves_and_the_over_training_section(scored_sweep):
    rep = scored_sweep / "report"
    with open(rep / "scores_over_training.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted({(r["run"], int(r["step"])) for r in rows}) == sorted(
        (f"beta{b}_seed{s}", t) for b in (1, 8) for s in (0, 1) for t in (40, 100)
    )
    assert (rep / "scores_over_training.png").stat().st_size > 10_000
    assert (rep / "factors_over_training.png").exists()
    index = (rep / "index.md").read_text()
    assert "## Scores over training" in index and "Settled scores" in index
    assert "![Scores over training](scores_over_training.png)" in index


def test_a_rerun_report_scores_no_snapshot_twice(scored_sweep, monkeypatch):
    calls = []
    real = latentSpace.evaluate

    def counting(*a, **k):
        calls.append(a[0])
        return real(*a, **k)

    from sbd_vae import report as sweep_report

    monkeypatch.setattr(latentSpace, "evaluate", counting)
    sweep_report.report(scored_sweep, counting, "quick", 0, False, None, True)
    assert calls == []


def test_publish_carries_the_snapshot_scores_not_the_snapshots(scored_sweep, tmp_path):
    dest = training.publish_run(scored_sweep / "beta1_seed0", tmp_path / "pub" / "beta1_seed0")
    m = latentSpace.read_metrics(dest)
    assert sorted(m["snapshots"]["steps"], key=int) == ["40", "100"]
    assert not (dest / "snapshots").exists() and (dest / "figures").is_dir()


def test_a_sweep_republishes_a_run_scored_after_publishing(scored_sweep, cfg, tmp_path):
    """make study_wide: publish first, score the snapshots in runs/, then the same sweep command
    carries the new scores over (and nothing is trained again)."""
    import os

    pub = tmp_path / "pub"
    training.sweep(cfg, [1.0, 8.0], [0, 1], scored_sweep, progress=False, publish=pub)
    src = scored_sweep / "beta1_seed0" / "metrics.json"
    m = json.loads(src.read_text())
    m["marker"] = 1.0  # stands for snapshot scores added after publishing
    src.write_text(json.dumps(m))
    os.utime(src, (src.stat().st_atime, (pub / "beta1_seed0" / "metrics.json").stat().st_mtime + 5))
    training.sweep(cfg, [1.0, 8.0], [0, 1], scored_sweep, progress=False, publish=pub)
    assert json.loads((pub / "beta1_seed0" / "metrics.json").read_text())["marker"] == 1.0
    assert "marker" not in json.loads((pub / "beta8_seed0" / "metrics.json").read_text())


def test_missing_snapshot_step_is_refused_naming_the_steps_there(scored_sweep):
    with pytest.raises(rundir.RunDirError, match="no snapshot at step 60; snapshots: 40 100"):
        latentSpace.evaluate(scored_sweep / "beta1_seed0", "quick", steps=[60], progress=False)


@pytest.mark.parametrize("steps", [(0,), (35,), (200,)])
def test_bad_snapshot_steps_are_refused_before_anything_is_written(shapes_npz, tmp_path, steps):
    with pytest.raises(ValueError, match="--snapshot_steps"):
        training.train(
            training.preset_config("test", data_path=shapes_npz, snapshot_steps=steps),
            tmp_path / "r",
            progress=False,
        )
    assert not (tmp_path / "r" / "config.json").exists()


# ----------------------------------------------------------------------------- known answers
def _rec(run, beta, seed, step, mig, dci=0.5):
    return dict(run=run, beta=beta, beta_norm=beta / 100, seed=seed, objective="beta", step=step,
                images_seen=step * 32, mig=mig, dci_disentanglement=dci)  # fmt: skip


def test_settled_uses_the_last_two_snapshots_and_the_stated_tolerance():
    tol = overtraining.SETTLE_TOL
    recs = [_rec("a", 1, 0, 8000, 0.10), _rec("a", 1, 0, 16000, 0.30), _rec("a", 1, 0, 32000, 0.30 + tol / 2),
            _rec("b", 1, 1, 16000, 0.30), _rec("b", 1, 1, 32000, 0.30 + 2 * tol)]  # fmt: skip
    rows = {r["run"]: r for r in overtraining.settled(recs)}
    assert rows["a"]["settled"] and rows["a"]["steps"] == (16000, 32000)
    assert not rows["b"]["settled"] and rows["b"]["change"]["mig"] == pytest.approx(2 * tol)


def test_climb_is_a_paired_test_of_last_minus_before():
    from scipy import stats

    gains = [0.10, 0.12, 0.14, 0.11]
    recs = []
    for i, g in enumerate(gains):
        recs += [
            _rec(f"r{i}", 1, i, 8000, 0.2 + i / 100),
            _rec(f"r{i}", 1, i, 32000, 0.2 + i / 100 + g),
        ]
    c = overtraining.climb(recs, "mig")
    assert c["n"] == 4 and c["mean"] == pytest.approx(np.mean(gains))
    assert c["p"] == pytest.approx(stats.ttest_1samp(gains, 0).pvalue)
    lo, hi = c["ci"]
    assert lo < np.mean(gains) < hi and lo > 0  # all gains positive: the interval excludes 0
    flat = [dict(r, mig=0.3) for r in recs]
    assert math.isnan(overtraining.climb(flat, "mig")["p"])  # no spread: not testable, never p=0
