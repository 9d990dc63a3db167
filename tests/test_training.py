"""Real short trainings on a real bpy render: learning, layout, resume, sweeps, bad input."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import rundir
import training

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cfg(shapes_npz):
    return training.preset_config("test", data_path=str(shapes_npz))


@pytest.fixture(scope="module")
def finished_run(cfg, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "full"
    summary = training.train(cfg, out, progress=False)
    return out, summary


def _weights(path):
    return [v.numpy() for v in keras.models.load_model(path).variables]


def test_run_directory_layout(finished_run, cfg):
    out, summary = finished_run
    assert summary["status"] == "done" and summary["step"] == cfg.steps
    assert json.loads((out / "config.json").read_text())["beta"] == cfg.beta
    with open(out / "history.csv") as f:
        rows = list(csv.DictReader(f))
    header = list(rows[0])
    kl_cols = [f"kl_{i}" for i in range(cfg.latent_dim)]
    assert header[:4] == ["step", "loss", "recon", "kl"] and set(kl_cols) <= set(header)
    assert "img_per_s" in header
    assert [int(r["step"]) for r in rows] == list(
        range(cfg.log_every, cfg.steps + 1, cfg.log_every)
    )
    assert any((out / "tb").iterdir())
    frames = sorted((out / "frames").glob("frame_*.png"))
    assert len(frames) == cfg.steps // cfg.frame_every + 1  # step 0 and every frame_every steps
    import imageio.v2 as imageio

    assert len(imageio.mimread(out / "training.gif")) == len(frames)
    assert len(rundir.list_checkpoints(out)) == cfg.keep_checkpoints
    assert (out / "model.keras").stat().st_size > 0 and (out / "summary.json").exists()


def test_test_preset_lowers_reconstruction_loss(finished_run):
    rows = rundir.read_history(finished_run[0])
    first, last = rows[0]["recon"], min(r["recon"] for r in rows[-3:])
    assert last < 0.7 * first, (first, last)


def test_resume_equals_uninterrupted(cfg, finished_run, tmp_path):
    out = tmp_path / "resumed"
    part = training.train(cfg, out, progress=False, stop_at=40)
    assert part == {"status": "interrupted", "step": 40}
    assert rundir.list_checkpoints(out)[-1].name == "ckpt-00000040.npz"
    training.train(cfg, out, progress=False)
    steps = [r["step"] for r in rundir.read_history(out)]
    assert steps == sorted(set(steps)) and steps[-1] == cfg.steps  # no duplicated step
    for a, b in zip(_weights(finished_run[0] / "model.keras"), _weights(out / "model.keras")):
        np.testing.assert_array_equal(a, b)


def test_rerun_of_finished_run_is_a_no_op(cfg, finished_run):
    before = (finished_run[0] / "model.keras").stat().st_mtime_ns
    assert training.train(cfg, finished_run[0], progress=False)["status"] == "done"
    assert (finished_run[0] / "model.keras").stat().st_mtime_ns == before


def test_changed_config_is_refused_with_a_diff_and_fresh_starts_over(cfg, tmp_path):
    out = tmp_path / "run"
    training.train(cfg, out, progress=False, stop_at=20)
    changed = training.preset_config("test", data_path=cfg.data_path, beta=8.0)
    with pytest.raises(rundir.RunDirError, match=r"beta: 1\.0 -> 8\.0(.|\n)*--fresh"):
        training.train(changed, out, progress=False)
    assert rundir.list_checkpoints(out)[-1].name == "ckpt-00000020.npz"  # nothing lost
    training.train(changed, out, progress=False, fresh=True, stop_at=10)
    assert json.loads((out / "config.json").read_text())["beta"] == 8.0
    assert [p.name for p in rundir.list_checkpoints(out)] == ["ckpt-00000010.npz"]


def test_second_writer_is_locked_out(cfg, tmp_path):
    out = tmp_path / "run"
    with rundir.RunLock(out), pytest.raises(rundir.RunDirError, match="another training process"):
        training.train(cfg, out, progress=False)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(cfg, tmp_path, monkeypatch, nan_after):
    out = tmp_path / "run"
    real = training.make_dataset
    monkeypatch.setattr(training, "make_dataset", lambda c: nan_after(real(c), 25))
    with pytest.raises(training.NonFiniteLoss, match=r"step 26(.|\n)*ckpt-00000020\.npz is intact"):
        training.train(cfg, out, progress=False)
    assert (out / "config.json").exists()
    assert [p.name for p in rundir.list_checkpoints(out)] == ["ckpt-00000020.npz"]
    model = training.build_model(cfg)
    assert rundir.restore_latest(out, model)["step"] == 20
    assert all(np.isfinite(v.numpy()).all() for v in model.variables)


def test_sweep_layout_and_rerun_skips_finished(cfg, tmp_path, capsys):
    out = tmp_path / "sweep"
    small = training.preset_config("test", data_path=cfg.data_path, steps=20, checkpoint_every=10)
    index = training.sweep(small, [1.0, 4.0], [0], out, progress=False)
    assert [r["name"] for r in index["runs"]] == ["beta1_seed0", "beta4_seed0"]
    assert all(r["status"] == "done" for r in index["runs"])
    on_disk = json.loads((out / "sweep.json").read_text())
    assert on_disk["runs"][1]["beta_norm"] == pytest.approx(4.0 * small.latent_dim / 32**2)
    for name in ("beta1_seed0", "beta4_seed0"):
        for f in ("config.json", "history.csv", "training.gif", "model.keras", "summary.json"):
            assert (out / name / f).exists(), (name, f)
    stamp = (out / "beta1_seed0" / "model.keras").stat().st_mtime_ns
    training.sweep(small, [1.0, 4.0, 16.0], [0], out, progress=False)
    assert (out / "beta1_seed0" / "model.keras").stat().st_mtime_ns == stamp
    assert json.loads((out / "sweep.json").read_text())["runs"][2]["status"] == "done"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--beta", "-1"], "beta"),
        (["--steps", "0"], "--steps"),
        (["--decoder", "unet"], "--decoder"),
        (["--image_size", "40"], "image_size"),
        (["--likelihood", "laplace"], "--likelihood"),
    ],
)
def test_cli_rejects_bad_arguments(args, message, tmp_path):
    from contextlib import redirect_stderr
    from io import StringIO

    err = StringIO()
    with redirect_stderr(err):
        code = training.main(["train", "--preset", "test", "--out", str(tmp_path / "r"), *args])
    assert code == 2 and message in err.getvalue()
    assert not (tmp_path / "r" / "checkpoints").exists()


def test_cli_unknown_preset_and_missing_data(tmp_path):
    cmd = [sys.executable, "training.py", "train", "--preset", "huge", "--out", str(tmp_path / "r")]
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 2 and "unknown preset 'huge'" in res.stderr
    cmd = [sys.executable, "training.py", "train", "--preset", "test", "--out", str(tmp_path / "r"),
           "--data_path", str(tmp_path / "missing.npz")]  # fmt: skip
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 2 and "missing.npz" in res.stderr and "Traceback" not in res.stderr


def test_larger_steps_extends_a_finished_run(cfg, tmp_path):
    out = tmp_path / "run"
    short = training.preset_config("test", data_path=cfg.data_path, steps=20)
    assert training.train(short, out, progress=False)["step"] == 20
    longer = training.preset_config("test", data_path=cfg.data_path, steps=40)
    summary = training.train(longer, out, progress=False)
    assert summary["status"] == "done" and summary["step"] == 40
    assert [r["step"] for r in rundir.read_history(out)] == [10, 20, 30, 40]
    assert json.loads((out / "config.json").read_text())["steps"] == 40
