"""scripts/gpu_study.py under its own faults, with ``--smoke`` on a CPU (docs/gpu.md).

- The time budget runs out in the middle of a run: the run is checkpointed at its next logging
  step and stopped, the runs after it are skipped, and the pack still happens: manifest.json
  and study.json (in the first archive) list the cut run as "partial" with the step it reached,
  and the archive holds its newest checkpoint, from which it resumes. Re-running the script
  resumes it (issue 21 found that a re-run was refused as a changed config whenever the
  re-measured img/s changed the checkpoint interval; ``gpu_study._as_started`` fixes it).
- The packing is killed (SIGKILL) at every archive member in turn: the pack folder then has no
  manifest.json (the sign of an interrupted pack; an earlier pack's manifest is removed first)
  and no partial ``gpu_study_*.zip``; packing again gives a complete, consistent pack.
- A missing --data, or a file that is not a dataset: one ``error:`` line naming --data, the
  file and the fix, exit 2, before the devices are touched (``jax.devices`` is made to fail) and
  before anything is written.

The script runs under JAX with TensorFlow unimportable (``JAX_ENV``), as on the GPU machine.
"""

from __future__ import annotations

import json
import signal
import zipfile
from pathlib import Path

import numpy as np
import pytest
from reliability_helpers import HAS_JAX, JAX_ENV, ROOT, STRESS, assert_clean_error, run_cli

from sbd_vae import rundir

pytestmark = pytest.mark.slow
needs_jax = pytest.mark.skipif(not HAS_JAX, reason="scripts/gpu_study.py runs on JAX, and "
                               "jax is not installed in this Python's environment")  # fmt: skip
SCRIPT = ROOT / "scripts" / "gpu_study.py"
SMOKE_S = 1800  # a smoke run takes ~40 s, but minutes on a loaded 2-core machine


def smoke(data, tmp, *extra) -> list[str]:
    return [SCRIPT, "--smoke", "--data", data, "--out", tmp / "runs", "--pack", tmp / "pack",
            "--archive_mib", "1", *extra]  # fmt: skip


def pack_state(pack: Path) -> str:
    """ "complete" (manifest.json, and exactly the archives it lists, each whole, with exactly its
    members) or "interrupted" (no manifest.json); anything else fails the test."""
    archives = sorted(p.name for p in pack.glob("gpu_study_*.zip*"))
    if not (pack / "manifest.json").exists():
        return "interrupted"
    manifest = json.loads((pack / "manifest.json").read_text())
    assert archives == sorted(a["archive"] for a in manifest["archives"]), (archives, manifest)
    for a in manifest["archives"]:
        with zipfile.ZipFile(pack / a["archive"]) as zf:
            assert zf.testzip() is None and zf.namelist() == a["members"], a
    return "complete"


@needs_jax
def test_budget_cut_leaves_resumable_runs_listed_as_partial(shapes_npz, tmp_path, record):
    """--budget_min 0.05 (3 s) with 10⁶ planned steps: β = 1 is cut at a checkpoint, β = 102 is
    skipped, manifest.json and the archived study.json say so; the unzipped partial run resumes
    from its checkpoint; with STRESS=1, a re-run of the script with fewer planned steps resumes
    it too, and finishes it."""
    ok = False
    try:
        res = run_cli(smoke(shapes_npz, tmp_path, "--betas", "1", "102", "--smoke_steps",
                            "1000000", "--budget_min", "0.05"), env=JAX_ENV, timeout=SMOKE_S)  # fmt: skip
        assert res.returncode == 0, res.stderr[-4000:]
        pack = tmp_path / "pack"
        assert pack_state(pack) == "complete"
        manifest = json.loads((pack / "manifest.json").read_text())
        cut, skipped = manifest["runs"]
        assert manifest["partial"] == ["beta1_seed0"] and cut["status"] == "partial"
        assert 0 < cut["steps"] < cut["planned_steps"] == 10**6
        assert skipped["status"] == "skipped: budget spent"
        run = tmp_path / "runs" / "beta1_seed0"
        assert not (run / "summary.json").exists() and not (run / "model.keras").exists()
        ckpt = rundir.list_checkpoints(run)[-1]
        assert rundir.read_checkpoint(ckpt)[0]["step"] == cut["steps"]
        with zipfile.ZipFile(pack / manifest["archives"][0]["archive"]) as zf:
            names = zf.namelist()
            study = json.loads(zf.read("study.json"))
            zf.extractall(tmp_path / "unzipped")
        assert f"beta1_seed0/checkpoints/{ckpt.name}" in names
        assert [r["status"] for r in study["runs"]] == ["partial", "skipped: budget spent"]

        # the unzipped folder is a run that resumes from the packed checkpoint (elsewhere)
        moved = tmp_path / "unzipped" / "beta1_seed0"
        step = cut["steps"]
        code = ("import sys, training; r = sys.argv[1]; "
                "print(training.train(training.load_config(r), r, progress=False, "
                "stop_at=int(sys.argv[2]))['step'])")  # fmt: skip
        res = run_cli(["-c", code, moved, step + 5], env=JAX_ENV, timeout=SMOKE_S)
        assert res.returncode == 0, res.stderr[-4000:]
        # every logged step once, those before the cut from the packed history: the cut lands at
        # a checkpoint, after one log interval or several (on an idle machine)
        every = json.loads((moved / "config.json").read_text())["log_every"]
        logged = list(range(every, step + 5 + 1, every))
        assert [r["step"] for r in rundir.read_history(moved)] == logged

        if not STRESS:  # make stress: also re-run the script itself (another smoke run)
            ok = True
            return
        # the same command with fewer planned steps resumes the cut run and finishes it
        res = run_cli(smoke(shapes_npz, tmp_path, "--betas", "1", "--smoke_steps", step + 5),
                      env=JAX_ENV, timeout=SMOKE_S)  # fmt: skip
        assert res.returncode == 0, res.stderr[-4000:]
        assert pack_state(pack) == "complete"
        manifest = json.loads((pack / "manifest.json").read_text())
        assert manifest["partial"] == [] and manifest["runs"][0]["status"] == "done"
        assert [r["step"] for r in rundir.read_history(run)] == logged
        assert "beta1_seed0/model.keras" in manifest["archives"][0]["members"]
        ok = True
    finally:
        record("GPU script: budget spent mid-run (smoke)", ok)


# A kill at the k-th archive member of a second pack (the first left a complete 2-archive pack).
KILLER = r"""
import os, signal, sys, zipfile, runpy
from pathlib import Path
g = runpy.run_path(sys.argv[1])
src, dest, kill_at = Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
files = [(p, p.name) for p in sorted(src.iterdir())]
runs = [{"run": "beta1_seed0", "status": "done"}]
real, calls = zipfile.ZipFile.write, [0]
def write(self, *a, **k):
    calls[0] += 1
    if calls[0] == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(self, *a, **k)
if kill_at:
    zipfile.ZipFile.write = write
print(g["pack_and_index"](files, dest, 2, float(sys.argv[5]), runs)["archives"])
"""


def _members(n: int, tmp: Path, seed: int) -> Path:
    src = tmp / f"src{seed}"
    src.mkdir()
    rng = np.random.RandomState(seed)
    for i in range(n):  # incompressible 300 KiB each: 3 fit in one 1 MiB archive
        (src / f"member{i}.bin").write_bytes(rng.bytes(300 * 1024))
    return src


KILL_AT = list(range(1, 7)) if STRESS else [2, 5]


@pytest.mark.parametrize("kill_at", KILL_AT)
def test_pack_killed_half_way_looks_interrupted(kill_at, tmp_path, record):
    """kill -9 while the k-th member is zipped (k = 1…6: both archives, first and last members)
    of a pack that replaces an earlier, complete one: no manifest.json, no partial archive;
    packing again is complete and holds the new members."""
    ok = False
    try:
        pack = tmp_path / "pack"
        old, new = _members(6, tmp_path, 0), _members(6, tmp_path, 1)
        argv = ["-c", KILLER, SCRIPT, old, pack, 0, 1]
        assert run_cli(argv).returncode == 0 and pack_state(pack) == "complete"
        res = run_cli(["-c", KILLER, SCRIPT, new, pack, kill_at, 1])
        assert res.returncode == -signal.SIGKILL, res.stderr[-2000:]
        assert pack_state(pack) == "interrupted"
        for p in pack.glob("gpu_study_*.zip"):  # whatever is under a final name is whole
            with zipfile.ZipFile(p) as zf:
                assert zf.testzip() is None
        assert run_cli(["-c", KILLER, SCRIPT, new, pack, 0, 1]).returncode == 0
        assert pack_state(pack) == "complete"
        manifest = json.loads((pack / "manifest.json").read_text())
        for a in manifest["archives"]:
            with zipfile.ZipFile(pack / a["archive"]) as zf:
                assert all(zf.read(m) == (new / m).read_bytes() for m in a["members"])
        assert not list(pack.glob("*.tmp"))
        ok = True
    finally:
        record("GPU script: kill -9 while packing", ok)


@needs_jax
@pytest.mark.parametrize("bad", ["missing", "text", "other npz"] if STRESS else ["other npz"])
def test_bad_data_fails_before_the_devices_are_touched(bad, tmp_path, record):
    """A missing --data, a text file, an .npz of something else: exit 2, one error line that
    names --data, the file and the render command, with ``jax.devices`` made to fail (so it was
    never reached) and no pack or run folder written."""
    data = tmp_path / "shapes.npz"
    if bad == "text":
        data.write_text("not a dataset\n")
    elif bad == "other npz":
        np.savez(data, images=np.zeros((2, 8, 8), np.uint8))
    code = ("import sys, runpy, jax\n"
            "def touched(*a, **k): raise SystemExit('the devices were touched')\n"
            "jax.devices = touched\n"
            "sys.argv = sys.argv[1:]\n"
            "runpy.run_path(sys.argv[0], run_name='__main__')\n")  # fmt: skip
    ok = False
    try:
        res = run_cli(["-c", code, *smoke(data, tmp_path)], env=JAX_ENV, timeout=SMOKE_S)
        err = assert_clean_error(res, f"--data {data}", "render_shapes.py")
        assert "touched" not in err
        assert not (tmp_path / "pack").exists() and not (tmp_path / "runs").exists()
        ok = True
    finally:
        record("GPU script: missing or non-dataset --data", ok)


BAD_COMBOS = {
    # --dataset dsprites makes its images in the script: a --data file would be silently unused
    "dsprites with --data": (["--dataset", "dsprites", "--data", "some.npz"],
                             ["--data some.npz", "--dataset dsprites", "drop --data"]),
    "unknown --dataset": (["--dataset", "mnist"], ["--dataset", "'mnist'", "shapes", "dsprites"]),
}  # fmt: skip


@needs_jax
@pytest.mark.parametrize("combo", list(BAD_COMBOS))
def test_a_dataset_it_cannot_train_fails_before_anything_is_written(combo, tmp_path, record):
    """``--dataset dsprites --data FILE`` (dsprites reads no file) and an unknown --dataset:
    exit 2, one line naming the flags and the fix (or the choices), no traceback, and no pack
    or run folder written."""
    extra, needles = BAD_COMBOS[combo]
    argv = [SCRIPT, "--smoke", "--out", tmp_path / "runs", "--pack", tmp_path / "pack", *extra]
    ok = False
    try:
        res = run_cli(argv, env=JAX_ENV, timeout=SMOKE_S)
        assert_clean_error(res, *needles)
        assert not (tmp_path / "pack").exists() and not (tmp_path / "runs").exists()
        ok = True
    finally:
        record("GPU script: a --dataset it cannot train, or --data with dsprites", ok)
