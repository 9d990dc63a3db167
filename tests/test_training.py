"""Real short trainings on a real bpy render: learning, layout, resume, sweeps, bad input."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import training
from sbd_vae import hardware, rundir

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


def test_summary_counts_active_units_as_encoding_does(finished_run, cfg):
    """summary.json's active units: Var over images of the posterior mean > encoding.ACTIVE_VAR
    (Burda et al. 2016), the definition metrics.json uses, not a count of per-latent KLs."""
    from sbd_vae import encoding

    out, summary = finished_run
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["active_threshold"] == encoding.ACTIVE_VAR
    assert "Burda" in on_disk["active_definition"]
    data = training.make_dataset(cfg)
    factors = data.sample_factors(
        training.ACTIVE_IMAGES, np.random.RandomState(training.ACTIVE_SEED)
    )
    mean, _ = encoding.encode(
        keras.models.load_model(out / "model.keras"), data.images_from_factors(factors)
    )
    assert on_disk["active_units"] == summary["active_units"] == encoding.active_units(mean)


# ----------------------------------------------------------------------------- capacity ramp
def test_capacity_ramp_longer_than_the_run_is_refused(tmp_path):
    out = tmp_path / "X"
    cmd = [sys.executable, "training.py", "train", "--preset", "demo", "--objective", "capacity",
           "--capacity_steps", "100000", "--steps", "2000", "--out", str(out)]  # fmt: skip
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 2, res.stderr
    assert "--capacity_steps 100000" in res.stderr and "Traceback" not in res.stderr
    assert "C = 0.5 nats" in res.stderr and "--capacity_steps 1000" in res.stderr  # 25·2000/100000
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("name", ["paper", "demo", "study", "wide", "dsprites", "test"])
def test_preset_capacity_ramps_end_before_the_run(name):
    cfg = training.preset_config(name, objective="capacity")  # validates
    assert cfg.capacity_steps <= cfg.steps // 2


def test_stored_config_with_a_long_ramp_still_loads(tmp_path):
    """Runs made before the ramp check (capacity_steps > steps) can still be evaluated."""
    old = training.preset_config("test")
    rundir.write_json(tmp_path / "config.json",
                      dict(vars(old), objective="capacity", capacity_steps=10**5))  # fmt: skip
    assert training.load_config(tmp_path).capacity_steps == 10**5


# ----------------------------------------------------------------------------- precision
AVX2 = {"fpu", "sse4_2", "avx", "avx2", "fma"}
AVX512_BF16 = AVX2 | {"avx512f", "avx512_bf16"}
AMX = AVX512_BF16 | {"amx_bf16", "amx_tile", "amx_int8"}


def _hardware(monkeypatch, flags, gpus=()):
    monkeypatch.setattr(hardware, "cpu_flags", lambda: set(flags))
    monkeypatch.setattr(hardware, "gpu_compute_capabilities", lambda: list(gpus))


@pytest.mark.parametrize(
    "flags, gpus, policy",
    [
        (AVX2, (), "float32"),
        (AVX512_BF16, (), "mixed_bfloat16"),  # measured 1.80× at 128² (BENCHMARKS.md)
        (AMX, (), "mixed_bfloat16"),
        (AVX2, [(8, 0)], "mixed_bfloat16"),
        (AMX, [(7, 5)], "float32"),  # a pre-Ampere GPU trains, whatever the host CPU
        (AVX2, [(9, 0), (7, 0)], "float32"),
    ],
)
def test_auto_precision_follows_the_hardware(monkeypatch, flags, gpus, policy):
    _hardware(monkeypatch, flags, gpus)
    assert training.resolve_precision("auto") == policy
    for explicit in ("float32", "mixed_bfloat16", "mixed_float16"):
        assert training.resolve_precision(explicit) == explicit


def test_cpu_flags_are_absent_off_linux(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    assert training.cpu_flags() == set()


def test_defaults_auto_precision_and_study_stays_float32():
    assert training.TrainConfig().precision == "auto"
    assert training.PRESETS["paper"].precision == "auto"
    for name in ("demo", "study", "test"):
        assert training.PRESETS[name].precision == "float32"


TINY_PAPER = ["--image_size", "32", "--channels", "8", "--hidden", "16", "--log_every", "10",
              "--checkpoint_every", "10", "--frame_every", "10", "--quiet"]  # fmt: skip


@pytest.mark.parametrize("flags, policy", [(AVX2, "float32"), (AMX, "mixed_bfloat16")])
def test_paper_preset_records_the_resolved_precision(monkeypatch, shapes_npz, tmp_path, flags,
                                                     policy):  # fmt: skip
    _hardware(monkeypatch, flags)
    out = tmp_path / "run"
    argv = ["train", "--preset", "paper", "--out", str(out), "--data_path", shapes_npz,
            "--steps", "10", *TINY_PAPER]  # fmt: skip
    assert training.main(argv) == 0
    assert json.loads((out / "config.json").read_text())["precision"] == policy
    assert training.load_config(out).precision == policy


def test_auto_resume_keeps_the_runs_precision(monkeypatch, shapes_npz, tmp_path, capsys):
    """A run started where auto meant bf16, resumed with auto where it means float32: resumed
    (not refused as a changed config), in the run's own precision."""
    out = tmp_path / "run"
    argv = ["train", "--preset", "paper", "--out", str(out), "--data_path", shapes_npz,
            *TINY_PAPER]  # fmt: skip
    _hardware(monkeypatch, AMX)
    assert training.main([*argv, "--steps", "10"]) == 0
    _hardware(monkeypatch, AVX2)
    assert training.main([*argv, "--steps", "20"]) == 0, capsys.readouterr().err
    assert "mixed_bfloat16" in capsys.readouterr().err  # says which precision it kept
    assert json.loads((out / "config.json").read_text())["precision"] == "mixed_bfloat16"
    assert [r["step"] for r in rundir.read_history(out)] == [10, 20]
    assert (
        training.main([*argv, "--steps", "20", "--precision", "float32"]) == 2
    )  # explicit: a change


def test_beta_run_resumes_across_a_new_capacity_ramp(cfg, tmp_path):
    """The capacity schedule is not part of a β-VAE run: a preset's new ramp does not block it."""
    out = tmp_path / "run"
    training.train(cfg, out, progress=False, stop_at=10)
    config = json.loads((out / "config.json").read_text())
    rundir.write_json(out / "config.json", dict(config, capacity_steps=100000))  # an older preset
    training.train(cfg, out, progress=False, stop_at=20)
    assert rundir.list_checkpoints(out)[-1].name == "ckpt-00000020.npz"
