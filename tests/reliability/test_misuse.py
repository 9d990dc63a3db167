"""Misuse: bad arguments to every CLI, a changed config on resume, two writers on one run
directory, a report on an empty or half-finished sweep, a typo'd data path. Each gives a clear
error (exit 2, a message naming the argument or file, no traceback) and loses nothing."""

from __future__ import annotations

import json
import os
import shutil
import signal

import pytest
from reliability_helpers import (
    assert_clean_error,
    call_main,
    kill9,
    popen,
    run_cli,
    train_cmd,
    tree_hash,
    wait_until,
)

import training
from sbd_vae import rundir

pytestmark = pytest.mark.slow


def _mains():
    import dataset
    import latentSpace
    from blender import render_shapes

    return {"training.py": training.main, "latentSpace.py": latentSpace.main,
            "dataset.py": dataset.main, "render_shapes.py": render_shapes.main}  # fmt: skip


T = ["train", "--preset", "test", "--quiet"]
S = ["sweep", "--preset", "test", "--quiet"]
# (CLI, argv with {out} {data} {missing} placeholders, words the error must contain)
BAD_ARGS = [
    ("training.py", [*T, "--out", "{out}", "--data_path", "{data}", "--beta", "-1"], ["--beta"]),
    ("training.py", [*T, "--out", "{out}", "--data_path", "{data}", "--steps", "0"], ["--steps"]),
    ("training.py", [*T, "--out", "{out}", "--data_path", "{data}", "--steps", "-10"], ["--steps"]),
    ("training.py", ["train", "--preset", "huge", "--out", "{out}"], ["unknown preset", "huge"]),
    ("training.py", [*T, "--out", "{out}", "--decoder", "unet"], ["--decoder", "unet", "sbd"]),
    ("training.py", [*T, "--out", "{out}", "--image_size", "40"], ["image_size=40", "multiple of 16"]),
    ("training.py", [*T, "--out", "{out}", "--image_size", "8"], ["image_size=8"]),
    ("training.py", [*T, "--out", "{out}", "--lr", "0"], ["--lr"]),
    ("training.py", [*T, "--out", "{out}", "--log_every", "7"], ["--log_every 7"]),
    ("training.py", [*T, "--out", "{out}", "--data_path", "{data}", "--stop_at", "15"], ["--stop_at 15"]),
    ("training.py", [*T, "--out", "{out}", "--data_path", "{data}", "--stop_at", "0"], ["--stop_at 0"]),
    ("training.py", [*T, "--out", "{out}", "--data_path", "{missing}"], ["{missing}", "render_shapes.py"]),
    ("training.py", [*T, "--out", "{out}", "--steps", "ten"], ["--steps", "invalid int"]),
    ("training.py", [*T, "--out", "{out}", "--data_path", "{data}", "--objective", "capacity", "--capacity_steps", "1000"], ["--capacity_steps 1000", "--steps 100", "--capacity_steps 50"]),
    ("training.py", [*T, "--out", "{out}", "--data_path", "{data}", "--snapshot_steps", "35"], ["--snapshot_steps 35", "multiple of --log_every 10"]),
    ("training.py", [*T, "--out", "{out}", "--data_path", "{data}", "--snapshot_steps", "20", "200"], ["--snapshot_steps 200", "at most --steps 100"]),
    ("training.py", [*T, "--out", "{out}", "--data_path", "{data}", "--tc_estimator", "xyz"], ["--tc_estimator 'xyz'", "mws", "mss"]),
    ("training.py", [*T, "--out", "{out}", "--dataset", "mnist"], ["--dataset 'mnist'", "shapes, dsprites"]),
    ("training.py", [*T, "--out", "{out}", "--dataset", "dsprites"], ["--dataset dsprites", "--image_size 64"]),
    ("training.py", [*S, "--out", "{out}", "--dataset", "dsprites"], ["--image_size 64"]),
    ("training.py", [*T, "--out", "{out}", "--data_path", "{data}", "--gamma", "5"], ["--gamma enters only --objective capacity's loss", "trains beta", "pass --objective capacity"]),
    ("training.py", [*T, "--out", "{out}", "--data_path", "{data}", "--objective", "factorvae", "--tc_estimator", "mss"], ["--tc_estimator enters only --objective tcvae's loss", "trains factorvae"]),
    ("training.py", [*S, "--out", "{out}", "--objectives", "beta", "dipvae_i", "--capacity_max", "10"], ["--capacity_max enters only", "trains beta dipvae_i"]),
    ("training.py", ["train", "--preset", "test"], ["--out"]),
    ("training.py", [], ["command"]),
    ("training.py", [*S, "--out", "{out}", "--betas", "1", "-4"], ["--beta -4"]),
    ("training.py", [*S, "--out", "{out}", "--steps", "0"], ["--steps"]),
    ("training.py", ["sweep", "--preset", "huge", "--out", "{out}"], ["unknown preset"]),
    ("training.py", [*S, "--out", "{out}", "--decoder", "unet"], ["--decoder"]),
    ("training.py", [*S, "--out", "{out}", "--snapshot_steps", "35"], ["--snapshot_steps 35"]),
    ("latentSpace.py", ["evaluate"], ["run"]),
    ("latentSpace.py", ["evaluate", "{missing}"], ["{missing}", "no such run directory"]),
    ("latentSpace.py", ["evaluate", "{out}", "--protocol", "bogus"], ["--protocol", "bogus"]),
    ("latentSpace.py", ["evaluate", "{out}", "--seed", "x"], ["--seed"]),
    ("latentSpace.py", ["report"], ["sweep"]),
    ("latentSpace.py", ["report", "{missing}"], ["{missing}", "no such sweep directory"]),
    ("latentSpace.py", ["report", "{empty}"], ["{empty}", "not a sweep directory", "training.py sweep"]),
    ("latentSpace.py", ["figures", "{missing}"], ["{missing}"]),
    ("dataset.py", ["export", "--n", "5"], ["--out"]),
    ("dataset.py", ["export", "--out", "{out}"], ["--n"]),
    ("dataset.py", ["export", "--data", "{data}", "--n", "0", "--out", "{out}"], ["n >= 1"]),
    ("dataset.py", ["export", "--data", "{data}", "--n", "5", "--out", "{out}", "--dtype", "f64"], ["--dtype"]),
    ("dataset.py", ["export", "--data", "{missing}", "--n", "5", "--out", "{out}"], ["{missing}", "render_shapes.py"]),
    ("dataset.py", ["export", "--data", "{data}", "--n", "5", "--out", "{out}", "--image_size", "8"], ["image_size"]),
    ("dataset.py", ["sheet", "--data", "{data}", "--out", "{out}", "--n", "0"], ["batch_size"]),
    ("dataset.py", ["sheet", "--data", "{missing}", "--out", "{out}"], ["{missing}"]),
    ("dataset.py", ["render"], ["invalid choice"]),
    ("render_shapes.py", ["--out", "{out}", "--num_azimuths", "0"], ["num_azimuths"]),
    ("render_shapes.py", ["--out", "{out}", "--shapes", "pyramid"], ["pyramid", "cube"]),
    ("render_shapes.py", ["--out", "{out}", "--resolution", "-1"], ["resolution"]),
    ("render_shapes.py", ["--out", "{out}", "--samples", "x"], ["--samples"]),
    ("render_shapes.py", ["--out", "{out}", "--tilts"], ["--tilts"]),
    ("render_shapes.py", ["--out", "{out}", "--tilts", "15", "15"], ["tilts"]),
]  # fmt: skip


def test_every_cli_rejects_bad_arguments(shapes_npz, tmp_path, capsys, record):
    """Each bad command line: exit 2, the message names the argument, nothing written."""
    mains = _mains()
    (tmp_path / "empty").mkdir()
    subs = dict(
        data=shapes_npz, missing=str(tmp_path / "missing.npz"), empty=str(tmp_path / "empty")
    )
    failures = []
    for i, (cli, argv, words) in enumerate(BAD_ARGS):
        out = tmp_path / f"out{i}"
        fill = dict(subs, out=str(out))
        argv = [a.format(**fill) for a in argv]
        words = [w.format(**fill) for w in words]
        n_failed = len(failures)
        try:
            code, err = call_main(mains[cli], argv, capsys)
        except Exception as e:  # noqa: BLE001  a raw exception = a traceback on the CLI
            failures.append(f"{cli} {argv}: raised {type(e).__name__}: {e}")
            code, err = None, ""
        missing = [w for w in words if w not in err]
        if code is not None and (code != 2 or missing or "Traceback" in err):
            failures.append(f"{cli} {' '.join(argv)}: exit {code}, missing {missing} in {err!r}")
        if out.exists() and any(p.is_file() and p.name != ".lock" for p in out.rglob("*")):
            failures.append(f"{cli} {' '.join(argv)}: wrote {sorted(out.rglob('*'))}")
        record("bad CLI arguments (4 CLIs, in-process main)", len(failures) == n_failed)
    assert not failures, "\n".join(failures)


MISUSE_ENV = [  # (KERAS_BACKEND, a backend to pretend is not installed, words of the error)
    ("torch", None, ["KERAS_BACKEND=torch", "runs on tensorflow or jax", "KERAS_BACKEND=jax"]),
    ("jax", "jax", ["KERAS_BACKEND=jax: jax is not installed", "KERAS_BACKEND=tensorflow"]),
]


@pytest.mark.parametrize("value, absent, words", MISUSE_ENV)
def test_an_unusable_keras_backend_is_one_line_with_the_fix(value, absent, words, shapes_npz,
                                                            tmp_path, capsys, monkeypatch,
                                                            record):  # fmt: skip
    """KERAS_BACKEND naming a backend this code does not run on, or one not installed: training
    and latentSpace exit 2 with the fix before anything is written (``backend.check_requested``
    reads the variable without importing Keras)."""
    import importlib.util

    import latentSpace

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda n, *a: None if n == absent else real(n, *a))  # fmt: skip
    monkeypatch.setenv("KERAS_BACKEND", value)
    out = tmp_path / "run"
    ok = True
    for main, argv in ((training.main, [*T, "--out", str(out), "--data_path", shapes_npz]),
                       (latentSpace.main, ["evaluate", str(out)])):  # fmt: skip
        code, err = call_main(main, argv, capsys)
        ok = ok and code == 2 and all(w in err for w in words) and not out.exists()
        record("bad KERAS_BACKEND (training, latentSpace)", ok)
        assert ok, (code, err)


def test_distribute_mirrored_with_one_device_is_refused(shapes_npz, tmp_path, capsys, record):
    """--distribute mirrored where one device is visible would train on that one device: refused
    before anything is written (train and sweep)."""
    import tensorflow as tf

    if len(tf.config.list_logical_devices("CPU")) != 1 or tf.config.list_logical_devices("GPU"):
        pytest.skip("this process sees several devices")
    out = tmp_path / "run"
    ok = True
    for head in (T, S):
        argv = [*head, "--out", str(out), "--data_path", shapes_npz, "--distribute", "mirrored"]
        code, err = call_main(training.main, argv, capsys)
        ok = ok and code == 2 and "--distribute mirrored: only one device" in err
        ok = ok and not out.exists()
        record("--distribute mirrored with one device", ok)
        assert ok, (code, err)


def test_bad_arguments_in_a_real_process_have_no_traceback(tmp_path, record):
    """The same through real processes, once per CLI (the in-process test covers the rest)."""
    cases = [
        (["training.py", "train", "--preset", "test", "--out", str(tmp_path / "r"), "--beta", "-1"], "--beta"),
        (["latentSpace.py", "report", str(tmp_path / "nope")], "no such sweep directory"),
        (["dataset.py", "export", "--n", "5", "--out", str(tmp_path / "e.npz"), "--data", str(tmp_path / "x.npz")], "x.npz"),
        (["blender/render_shapes.py", "--out", str(tmp_path / "s.npz"), "--num_azimuths", "0"], "num_azimuths"),
    ]  # fmt: skip
    ok = False
    try:
        for args, word in cases:
            assert_clean_error(run_cli(args, timeout=300), word)
        ok = True
    finally:
        record("bad CLI arguments, real processes", ok)


# ----------------------------------------------------------------------------- run directories
@pytest.fixture
def run(mid_run, tmp_path):
    shutil.copytree(mid_run, tmp_path / "run")
    return tmp_path / "run"


def test_resume_with_a_changed_config_is_refused_and_changes_nothing(run, shapes_npz, capsys,
                                                                      record):  # fmt: skip
    before = tree_hash(run)
    ok = False
    try:
        for extra, word in ((["--beta", "4"], "beta: 1.0 -> 4.0"),
                            (["--decoder", "deconv"], "decoder: 'sbd' -> 'deconv'"),
                            (["--data_path", shapes_npz, "--latent_dim", "3"], "latent_dim: 6 -> 3")):  # fmt: skip
            argv = [*T, "--out", str(run), "--data_path", shapes_npz, *extra]
            code, err = call_main(training.main, argv, capsys)
            assert code == 2 and word in err and "--fresh" in err, err
            assert tree_hash(run) == before
        ok = True
    finally:
        record("resume with a changed config", ok)


def test_a_typo_in_data_path_does_not_poison_or_wipe_the_run(run, shapes_npz, tmp_path, capsys,
                                                              record):  # fmt: skip
    """A wrong --data_path fails before anything is written: the corrected command then works
    without --fresh, and --fresh with a wrong path deletes nothing."""
    ok = False
    try:
        fresh = tmp_path / "new"
        bad = str(tmp_path / "shapes_typo.npz")
        code, err = call_main(training.main, [*T, "--out", str(fresh), "--data_path", bad], capsys)
        assert code == 2 and "shapes_typo.npz" in err
        assert not (fresh / "config.json").exists()
        code, err = call_main(training.main, [*T, "--out", str(fresh), "--data_path", shapes_npz,
                                              "--stop_at", "10"], capsys)  # fmt: skip
        assert code == 0, err
        before = tree_hash(run)
        code, err = call_main(training.main, [*T, "--out", str(run), "--data_path", bad, "--fresh"],
                              capsys)  # fmt: skip
        assert code == 2 and "shapes_typo.npz" in err
        assert tree_hash(run) == before
        ok = True
    finally:
        record("typo'd --data_path (new run, and with --fresh)", ok)


def test_data_path_readme_gets_a_hint_that_destroys_nothing(tmp_path, record):
    """A new user passes the README as --data_path. The error must not propose rendering over
    README.md (the old hint did), and the renderer refuses to, unless --force."""
    import re
    import subprocess

    from reliability_helpers import CLI_ENV, PY, ROOT

    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    before = (tmp_path / "README.md").read_bytes()

    def run(*args):
        return subprocess.run([PY, *map(str, args)], cwd=tmp_path, env=CLI_ENV,
                              capture_output=True, text=True, timeout=300)  # fmt: skip

    ok = False
    try:
        res = run(ROOT / "training.py", "train", "--preset", "test", "--data_path", "README.md",
                  "--out", "runs/first")  # fmt: skip
        err = assert_clean_error(res, "README.md", "render_shapes.py")
        proposed = re.findall(r"render_shapes\.py --out (\S+?)`", err)
        assert proposed == ["data/shapes.npz"] and "--data_path data/shapes.npz" in err, err
        res = run(ROOT / "blender" / "render_shapes.py", "--out", "README.md")  # the old hint
        assert_clean_error(res, "README.md", "--force", "not a dataset")
        assert (tmp_path / "README.md").read_bytes() == before
        assert not (tmp_path / "data").exists()
        ok = True
    finally:
        record("--data_path README.md: hint and renderer leave it intact", ok)


def test_two_trainings_into_one_run_directory(shapes_npz, tmp_path, capsys, record):
    """Two real processes: the second exits 2 with the lock error naming the first's pid (also
    with --fresh, which must delete nothing); the first finishes normally. The first is paused
    (SIGSTOP) while the second tries, so a slow machine cannot let it finish first."""
    run = tmp_path / "run"
    cmd = train_cmd(shapes_npz, run, "--stop_at", "20")
    first = popen(cmd[1:], tmp_path / "first.log")
    ok = False
    try:
        lock = run / ".lock"
        assert wait_until(first, lambda: lock.exists() and lock.read_text().strip() == str(first.pid)
                          and (run / "config.json").exists(), poll=0.01)  # fmt: skip
        os.kill(first.pid, signal.SIGSTOP)  # holds the lock until SIGCONT, however slow the second
        try:
            second = run_cli(cmd[1:])
            assert_clean_error(second, "another training process", f"pid {first.pid}", "--out")
            code, err = call_main(training.main, [*cmd[2:], "--fresh"], capsys)  # this process
            assert code == 2 and "another training process" in err
            assert (run / "config.json").exists()
        finally:
            os.kill(first.pid, signal.SIGCONT)
        assert first.wait(timeout=600) == 0, (tmp_path / "first.log").read_text()[-3000:]
        assert [p.name for p in rundir.list_checkpoints(run)] == ["ckpt-00000020.npz"]
        assert [r["step"] for r in rundir.read_history(run)] == [10, 20]
        ok = True
    finally:
        kill9(first)
        record("two trainings into one run directory", ok)


def test_evaluate_a_snapshot_the_run_did_not_keep(ref_run, tmp_path, capsys, record):
    """`latentSpace.py evaluate RUN --steps 60` where RUN kept no snapshot at 60: exit 2 before
    anything is scored or written, with the snapshots the run has (or how to keep some)."""
    import latentSpace

    run = tmp_path / "run"
    shutil.copytree(ref_run["out"], run)
    ok = False
    try:
        before = tree_hash(run)
        code, err = call_main(latentSpace.main, ["evaluate", str(run), "--steps", "60"], capsys)
        assert code == 2 and "no snapshot at step 60" in err and "--snapshot_steps" in err, err
        assert "Traceback" not in err and tree_hash(run) == before
        # a run that kept some: the message lists them (the weights are never read: the final
        # model's stand in for the steps' own)
        model, _, _ = latentSpace.load_run(run)
        for step in (20, 40):
            rundir.save_snapshot(run, model, step)
        before = tree_hash(run)
        code, err = call_main(latentSpace.main, ["evaluate", str(run), "--steps", "20", "60"],
                              capsys)  # fmt: skip
        assert code == 2 and "no snapshot at step 60; snapshots: 20 40" in err, err
        assert tree_hash(run) == before
        ok = True
    finally:
        record("latentSpace evaluate --steps without that snapshot", ok)


# ----------------------------------------------------------------------------- sweep reports
def _sweep_index(runs):
    return {"preset": "test", "base_config": {}, "runs": [
        {"name": training.run_name(b, 0), "beta": b, "seed": 0, "beta_norm": b * 6 / 32**2,
         "status": "pending"} for b in runs]}  # fmt: skip


def test_report_on_an_empty_sweep(tmp_path, record):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    rundir.write_json(sweep / "sweep.json", _sweep_index([1.0, 4.0]))
    before = tree_hash(sweep)
    ok = False
    try:
        res = run_cli(["latentSpace.py", "report", str(sweep), "--protocol", "quick"])
        assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr[-3000:]
        assert "beta1_seed0" in res.stdout and "beta4_seed0" in res.stdout
        index = (sweep / "report" / "index.md").read_text()
        assert "No finished runs" in index and "beta1_seed0" in index and "beta4_seed0" in index
        assert {k: v for k, v in tree_hash(sweep).items() if not k.startswith("report/")} == before
        ok = True
    finally:
        record("latentSpace report on an empty sweep", ok)


def test_report_on_a_half_finished_sweep(ref_run, mid_run, tmp_path, capsys, record):
    """One finished run (with a corrupt metrics.json), one stopped mid-way, one never started:
    the corrupt metrics file is named in a warning and re-evaluated, the finished run is scored,
    the other two are listed as unfinished, and neither of them is touched."""
    import latentSpace

    sweep = tmp_path / "sweep"
    sweep.mkdir()
    shutil.copytree(ref_run["out"], sweep / "beta1_seed0")
    shutil.copytree(mid_run, sweep / "beta4_seed0")
    cfg = json.loads((sweep / "beta4_seed0" / "config.json").read_text())
    rundir.write_json(sweep / "beta4_seed0" / "config.json", dict(cfg, beta=4.0))
    rundir.write_json(sweep / "sweep.json", _sweep_index([1.0, 4.0, 16.0]))
    unfinished = tree_hash(sweep / "beta4_seed0")
    corrupt = sweep / "beta1_seed0" / "metrics.json"
    corrupt.write_text('{"protocol": "quick", "scores": {"mig": 0.')
    ok = False
    try:
        import inspect

        # one metric is enough to show the plumbing (the scores are tested in test_latent_space)
        params = inspect.signature(latentSpace.compute_metrics).parameters
        opts = {"metrics": ["mig"]} if "metrics" in params else None
        out = latentSpace.report(sweep, "quick", progress=True, metric_options=opts)
        captured = capsys.readouterr()
        printed = captured.out
        assert str(corrupt) in captured.err  # the warning names the corrupt file
        assert latentSpace.read_metrics(sweep / "beta1_seed0")["protocol"] == "quick"
        rows = (out / "scores.csv").read_text().splitlines()
        assert len(rows) == 2 and rows[1].startswith("beta1_seed0,")
        index = (out / "index.md").read_text()
        for name in ("beta4_seed0", "beta16_seed0"):
            assert name in printed and name in index
        assert tree_hash(sweep / "beta4_seed0") == unfinished
        ok = True
    finally:
        record("latentSpace report: half-finished sweep, corrupt metrics.json", ok)
