"""β-sweeps as Ray Tune trials (sbd_vae/sweep_ray.py) on a local 2-CPU Ray instance, on a real render.

The Ray sweep (run through the CLI, by a driver that joins the module's Ray instance by address)
must leave the very run directories and sweep.json of the local executor, survive a SIGKILLed trial
worker by resuming from the checkpoint, and fail fast with a clear message on bad input (no Ray, an
unreachable address, GPUs that the cluster does not have).
"""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import training
from sbd_vae import rundir, sweep_ray

REPO = Path(__file__).resolve().parents[1]
BETAS, SEEDS, STEPS = [1.0, 4.0], [0], 40
KILLED = training.run_name(4.0, 0)  # the trial whose worker the test SIGKILLs


@pytest.fixture(scope="module")
def cfg(shapes_npz):
    return training.preset_config("test", data_path=str(shapes_npz), steps=STEPS)


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray instance with 2 CPUs for this module; ray_sweep reuses the connection."""
    pytest.importorskip("ray.tune", reason=sweep_ray.INSTALL)
    import ray

    started = sweep_ray.connect(
        num_cpus=2, object_store_memory=128 * 1024**2
    )  # tiny: shared CI box
    yield ray.get_runtime_context().gcs_address
    if started:
        ray.shutdown()


def _kill_after_checkpoint(run: Path, record: dict, deadline_s=240.0):
    """SIGKILLs the process that trains ``run`` (its pid is in <run>/.lock) once a checkpoint
    exists and before the run finishes; records what was on disk at that moment."""
    t0 = time.time()
    while time.time() - t0 < deadline_s:
        ckpts = rundir.list_checkpoints(run)
        if ckpts and not (run / "summary.json").exists():
            record["ckpt_step"] = int(rundir.CKPT_RE.match(ckpts[-1].name).group(1))
            record["rows"] = rundir.read_history(run)
            record["pid"] = int((run / ".lock").read_text())
            os.kill(record["pid"], signal.SIGKILL)
            return
        time.sleep(0.05)


@pytest.fixture(scope="module")
def local_sweep(cfg, tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "sweep"
    return out, training.sweep(cfg, BETAS, SEEDS, out, progress=False)


@pytest.fixture(scope="module")
def ray_sweep_killed(cfg, ray_cluster, shapes_npz, tmp_path_factory):
    """The same sweep through the CLI, as a second driver process that joins the module's Ray
    instance by address (as on a cluster); one trial's worker is SIGKILLed after a checkpoint."""
    out = tmp_path_factory.mktemp("ray") / "sweep"
    record = {}
    killer = threading.Thread(target=_kill_after_checkpoint, args=(out / KILLED, record))
    killer.start()
    cmd = [sys.executable, "training.py", "sweep", "--executor", "ray", "--address", ray_cluster,
           "--max-failures", "2", "--preset", "test", "--data_path", str(shapes_npz),
           "--steps", str(STEPS), "--betas", *map(str, BETAS), "--seeds", *map(str, SEEDS),
           "--out", str(out)]  # fmt: skip
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    killer.join()
    print(r.stdout, r.stderr[-3000:])  # shown by pytest on failure
    assert r.returncode == 0, r.stdout + r.stderr
    return out, json.loads((out / "sweep.json").read_text()), record, r.stdout


def _files(run: Path) -> set[str]:
    # tb/ holds one event file per process (a resumed run has two): compare its presence only.
    return {
        str(p.relative_to(run))
        for p in run.rglob("*")
        if p.is_file() and p.parent.name != "tb" and p.name != ".lock"
    }


@pytest.mark.slow
def test_ray_sweep_matches_local_executor(local_sweep, ray_sweep_killed):
    (lout, _), (rout, rsweep, _, log) = local_sweep, ray_sweep_killed
    lsweep = json.loads((lout / "sweep.json").read_text())
    assert rsweep.keys() == lsweep.keys() and rsweep["base_config"] == lsweep["base_config"]
    assert [r["name"] for r in rsweep["runs"]] == [r["name"] for r in lsweep["runs"]]
    for lr, rr in zip(lsweep["runs"], rsweep["runs"]):
        assert rr.keys() == lr.keys(), (rr, lr)
        assert rr["status"] == lr["status"] == "done"
        # Same seed, same data stream, exact resume: equal up to CPU float rounding, which grows
        # over 40 Adam steps (trials run with 1 intra-op thread, the local sweep with 2; measured
        # here: loss equal to 6 digits, kl ≈ 0.028 nats off by 2.5e-5).
        for k in ("loss", "recon", "kl"):
            np.testing.assert_allclose(rr[k], lr[k], rtol=1e-4, atol=1e-3, err_msg=rr["name"])
        lrun, rrun = lout / lr["name"], rout / rr["name"]
        assert _files(rrun) == _files(lrun)
        assert any((rrun / "tb").iterdir())
        assert (rrun / "config.json").read_text() == (lrun / "config.json").read_text()
        lh, rh = rundir.read_history(lrun), rundir.read_history(rrun)
        assert [r["step"] for r in rh] == [r["step"] for r in lh]
        np.testing.assert_allclose(
            [r["loss"] for r in rh], [r["loss"] for r in lh], rtol=1e-4, err_msg=rr["name"]
        )
    # progress: one line per trial and logging interval, then the summary table
    for run in (training.run_name(b, s) for b in BETAS for s in SEEDS):
        assert f"[ray] {run}" in log and f"step {STEPS:>6}/{STEPS}" in log
    assert training.format_sweep_table(rsweep) in log


@pytest.mark.slow
def test_killed_trial_resumes_from_its_checkpoint(ray_sweep_killed, cfg):
    out, index, record, log = ray_sweep_killed
    assert "pid" in record, f"the trial finished before it could be killed:\n{log}"
    k = record["ckpt_step"]
    assert 0 < k < cfg.steps
    assert "trial failed (1/2" in log  # Tune saw the dead worker and retried (FailureConfig)
    resumed = [int(line.split("resuming at step ")[1].split()[0]) for line in log.splitlines()
               if KILLED in line and "resuming at step" in line]  # fmt: skip
    assert resumed and resumed[0] >= k, log  # not from step 0
    rows = rundir.read_history(out / KILLED)
    steps = [r["step"] for r in rows]
    assert steps == list(range(cfg.log_every, cfg.steps + 1, cfg.log_every))  # no duplicates
    # Rows up to the checkpoint are the killed attempt's own, timings included: they were kept,
    # not re-trained (a restart from step 0 would have rewritten img_per_s and elapsed_s).
    before = [r for r in record["rows"] if r["step"] <= k]
    assert before and rows[: len(before)] == before
    entry = next(r for r in index["runs"] if r["name"] == KILLED)
    assert entry["status"] == "done" and (out / KILLED / "summary.json").exists()


@pytest.mark.slow
def test_rerun_skips_finished_runs(ray_sweep_killed, cfg):
    """In-process this time: ray_sweep returns the index, and starts no trial."""
    out = ray_sweep_killed[0]
    before = {p: p.stat().st_mtime_ns for p in out.rglob("model.keras")}
    t0 = time.time()
    index = sweep_ray.ray_sweep(cfg, BETAS, SEEDS, out, train_fn=training.train, progress=False)
    assert time.time() - t0 < 10
    assert json.loads(json.dumps(index, default=list)) == json.loads(
        (out / "sweep.json").read_text()
    )
    assert all(r["status"] == "done" for r in index["runs"])
    assert {p: p.stat().st_mtime_ns for p in out.rglob("model.keras")} == before


@pytest.mark.slow
def test_gpu_request_on_a_cpu_cluster_fails_early(ray_cluster, cfg, tmp_path):
    t0 = time.time()
    with pytest.raises(sweep_ray.ClusterError, match=r"--gpus-per-trial 1 .* has 0 GPUs"):
        sweep_ray.ray_sweep(
            cfg,
            [1.0],
            [0],
            tmp_path / "gpu",
            train_fn=training.train,
            gpus_per_trial=1,
            progress=False,
        )
    assert time.time() - t0 < 10
    assert not (tmp_path / "gpu" / "beta1_seed0").exists()  # nothing was started


def test_unreachable_address_is_named_quickly(tmp_path, capsys):
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"127.0.0.1:{port}"
    t0 = time.time()
    with pytest.raises(sweep_ray.ClusterError, match=f"cannot reach the Ray cluster at --address '{address}'"):  # fmt: skip
        sweep_ray.check_address(address)
    # through the CLI: "error: ..." naming the address, exit status 2, no traceback
    argv = ["sweep", "--executor", "ray", "--address", address, "--preset", "test",
            "--betas", "1", "--out", str(tmp_path / "s")]  # fmt: skip
    assert training.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and address in err and "Traceback" not in err
    assert time.time() - t0 < 15


def test_port_that_is_not_a_ray_head_is_named(tmp_path):
    pytest.importorskip("ray.tune", reason=sweep_ray.INSTALL)
    with socket.socket() as srv:  # accepts TCP connections but never speaks Ray's protocol
        srv.bind(("127.0.0.1", 0))
        srv.listen(8)
        address = f"127.0.0.1:{srv.getsockname()[1]}"
        t0 = time.time()
        with pytest.raises(sweep_ray.ClusterError, match="no Ray head"):
            sweep_ray.check_address(address, probe_timeout=3)
        assert time.time() - t0 < 10


def test_missing_ray_names_the_install_command(monkeypatch, shapes_npz, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(sweep_ray.ClusterError, match=r'pip install "ray\[tune\]==2\.60\.0"'):
        sweep_ray.import_ray()
    argv = ["sweep", "--executor", "ray", "--preset", "test", "--data_path", str(shapes_npz),
            "--betas", "1", "--out", str(tmp_path / "s")]  # fmt: skip
    assert training.main(argv) == 2
    assert "ray[tune]==2.60.0" in capsys.readouterr().err


def test_default_executor_does_not_import_ray():
    code = "import sys, training; from sbd_vae import sweep_ray; sys.exit('ray' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(cpus_per_trial=0), "--cpus-per-trial 0 must be > 0"),
        (dict(gpus_per_trial=-1), "--gpus-per-trial -1"),
        (dict(max_failures=-2), "--max-failures -2"),
    ],
)
def test_bad_resource_arguments(kwargs, message, tmp_path):
    cfg = training.preset_config("test")
    with pytest.raises(sweep_ray.ClusterError, match=message):
        sweep_ray.ray_sweep(
            cfg, [1.0], [0], tmp_path / "s", train_fn=training.train, progress=False, **kwargs
        )
