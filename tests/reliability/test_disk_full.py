"""A full disk during training: an error naming the file (RunDirError, which the CLI prints as
"error: ..."), every file under a final name still complete (the previous checkpoint intact, no
partial checkpoint), and, once there is space again, the same command resumes to the same result.

Two ways to fill the disk: a real 900 KiB tmpfs (needs root and mount permission; skipped
otherwise) and a patched writer that fails mid-write with ENOSPC (always runs).
"""

from __future__ import annotations

import errno
import shutil
import subprocess

import pytest
from reliability_helpers import (
    assert_clean_error,
    check_final_files,
    history_steps,
    model_weights,
    run_cli,
    temp_files,
    train_cmd,
    weights_equal,
)

import training
from sbd_vae import rundir

pytestmark = pytest.mark.slow


def _cfg(shapes_npz):
    return training.preset_config("test", data_path=str(shapes_npz))


def _leftover_temps(run):
    return temp_files(run) + temp_files(run / "checkpoints") + temp_files(run / "frames")


@pytest.fixture
def tiny_tmpfs(tmp_path):
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=900k", "tmpfs", str(mnt)],
                       capture_output=True, text=True)  # fmt: skip
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip()}); the patched writer covers it")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_real_full_disk_on_the_cli_then_resume(
    tiny_tmpfs, shapes_npz, ref_weights, tmp_path, record
):
    run = tiny_tmpfs / "run"
    survived, lost = False, "none"
    try:
        res = run_cli(train_cmd(shapes_npz, run)[1:])
        assert_clean_error(res, "No space left on device", str(run), "re-run the same command")
        problems = check_final_files(run)
        if problems:
            lost = "partial file under a final name"
        assert problems == []
        assert _leftover_temps(run) == []
        assert rundir.list_checkpoints(run), (
            "expected at least one checkpoint before the disk filled"
        )
        # space again: move the run to a roomy disk and re-run the same command
        roomy = tmp_path / "roomy"
        shutil.copytree(run, roomy)
        training.train(_cfg(shapes_npz), roomy, progress=False)
        assert history_steps(roomy) == list(range(10, 101, 10))
        if not weights_equal(model_weights(roomy / "model.keras"), ref_weights):
            lost = "result differs from the uninterrupted run"
            raise AssertionError(lost)
        survived = True
    finally:
        record("disk full (real 900 KiB tmpfs)", survived, lost)


class _FullDiskFile:
    """A file object whose writes stop half-way with ENOSPC."""

    def __init__(self, f):
        self.f = f

    def write(self, data):
        self.f.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()
        return False

    def __getattr__(self, name):
        return getattr(self.f, name)


@pytest.mark.parametrize("what", ["checkpoint", "any file"])
def test_patched_full_disk_then_resume(what, shapes_npz, ref_weights, tmp_path, monkeypatch,
                                       record):  # fmt: skip
    """From step 40 on, writes fail mid-way: only checkpoint writes ("checkpoint"), or every
    write of rundir (history.csv comes first at step 40, "any file")."""
    run = tmp_path / "run"
    state = {"armed": False}
    real_open = open

    def full_open(path, mode="r", *a, **k):
        f = real_open(path, mode, *a, **k)
        hit = "checkpoints" in str(path) if what == "checkpoint" else True
        if state["armed"] and hit and "w" in mode:
            return _FullDiskFile(f)
        return f

    from sbd_vae import callbacks

    real_history_end = callbacks.History.on_epoch_end

    def arm_at_40(self, epoch, logs=None):
        if self.step() == 40:
            state["armed"] = True
        return real_history_end(self, epoch, logs)

    monkeypatch.setattr(rundir, "open", full_open, raising=False)
    monkeypatch.setattr(callbacks.History, "on_epoch_end", arm_at_40)
    survived, lost = False, "none"
    try:
        with pytest.raises(rundir.RunDirError, match="No space left on device") as e:
            training.train(_cfg(shapes_npz), run, progress=False)
        named = "ckpt-00000040.npz" if what == "checkpoint" else "history.csv"
        assert named in str(e.value), str(e.value)
        problems = check_final_files(run)
        if problems:
            lost = "partial file under a final name"
        assert problems == []
        assert [p.name for p in rundir.list_checkpoints(run)] == ["ckpt-00000020.npz"]
        assert _leftover_temps(run) == []
        monkeypatch.undo()  # space again
        training.train(_cfg(shapes_npz), run, progress=False)
        assert history_steps(run) == list(range(10, 101, 10))
        if not weights_equal(model_weights(run / "model.keras"), ref_weights):
            lost = "result differs from the uninterrupted run"
            raise AssertionError(lost)
        survived = True
    finally:
        record(f"disk full (patched writer: {what})", survived, lost, 20)
