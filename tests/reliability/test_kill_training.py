"""kill -9 of `training.py train` at random points, then the same command again.

Each kill point: start the CLI in a subprocess, SIGKILL it (at a seeded random time, or the
moment a checkpoint's temporary file appears, i.e. during the write), inspect what is on disk,
re-run the command to completion. The promise (issue 7): the newest checkpoint is complete, the
run resumes from it (at most one checkpoint interval is recomputed), history.csv has every step
once, and the final weights and logged losses are bit-identical to an uninterrupted run.
Cross-process bit-exactness holds on this CPU build (oneDNN, fixed threads per process): checked
here against the reference run, itself made by another process.
"""

from __future__ import annotations

import subprocess
import time

import numpy as np
import pytest
from reliability_helpers import (
    KILL_POINTS,
    STRESS,
    check_final_files,
    history_lines,
    history_steps,
    history_values,
    kill9,
    kill_in_checkpoint_write,
    model_weights,
    popen,
    run_cli,
    temp_files,
    train_cmd,
    wait_until,
    weights_equal,
)

pytestmark = pytest.mark.slow
STEPS, LOG_EVERY, CKPT_EVERY = 100, 10, 20  # the "test" preset


def kill_plan(n: int, seed: int = 7) -> list[tuple[str, float]]:
    """n kill points: ("ckpt", k) kills during the write of checkpoint k·20; ("step", u) kills
    at a random moment of training step ≈ u·100 (u < 0.1: during startup, after config.json)."""
    rng = np.random.RandomState(seed)
    n_ckpt = 1 if n <= 3 else 3
    plan = [("ckpt", int(k)) for k in rng.choice([1, 2, 3, 4], n_ckpt, replace=False)]
    plan += [("step", round(float(u), 3)) for u in rng.uniform(0.0, 1.0, n - n_ckpt)]
    return plan


PLAN = kill_plan(KILL_POINTS)


def _kill_at_progress(proc, run, u: float, rng) -> bool:
    """Waits for the logging interval that holds step u·STEPS, then a random part of it (the
    interval's length is measured as it runs, so this works on a loaded machine too)."""
    target = int(u * STEPS) // LOG_EVERY * LOG_EVERY  # the last logged step before the kill
    marks = {}

    def reached():
        steps = history_steps(run) if (run / "history.csv").exists() else []
        last = max(steps, default=0)
        marks.setdefault(last, time.time())
        return (run / "config.json").exists() and last >= target

    if not wait_until(proc, reached, poll=0.005):
        return False
    times = sorted(marks.values())
    dt = times[-1] - times[-2] if len(times) > 1 else 2.0
    try:
        proc.wait(timeout=rng.uniform(0.0, 1.0) * dt)
    except subprocess.TimeoutExpired:
        pass
    return proc.poll() is None


@pytest.mark.parametrize("kind, arg", PLAN, ids=[f"{k}-{a:g}" for k, a in PLAN])
def test_kill9_then_rerun_equals_uninterrupted(kind, arg, ref_run, ref_weights, shapes_npz,
                                               tmp_path, record):  # fmt: skip
    run = tmp_path / "run"
    cmd = train_cmd(shapes_npz, run)
    scenario = "kill -9 during a checkpoint write" if kind == "ckpt" else "kill -9 at a random step"
    survived, lost, redone = False, "none", None
    try:
        if kind == "ckpt":
            start = lambda: popen(cmd[1:], tmp_path / "killed.log")  # noqa: E731
            hit, proc = kill_in_checkpoint_write(start, run, int(arg) * CKPT_EVERY, CKPT_EVERY)
        else:
            proc = popen(cmd[1:], tmp_path / "killed.log")
            hit = _kill_at_progress(proc, run, arg, np.random.RandomState(int(arg * 1000)))
            kill9(proc)
        if not hit:
            log = (tmp_path / "killed.log").read_text()[-3000:]
            assert proc.returncode == 0, f"the run failed before the kill point:\n{log}"
            pytest.skip(f"the run finished before kill point {kind}={arg:g} (every write missed)")

        # --- what a kill leaves behind: only complete files under final names
        from sbd_vae import rundir

        ckpts = rundir.list_checkpoints(run)
        problems = check_final_files(run)
        if problems:
            lost = "corrupt file under a final name"
        assert not problems, problems
        if kind == "ckpt":  # the kill really interrupted a write: its temp file is still there
            assert temp_files(run / "checkpoints"), "no checkpoint write was interrupted"
        resumed_from = int(ckpts[-1].name[5:13]) if ckpts else 0
        logged = max(history_steps(run), default=0)
        before = [x for x in history_lines(run) if int(x.split(",")[0]) <= resumed_from]

        # --- the same command again, to completion
        res = run_cli(cmd[1:])
        assert res.returncode == 0, res.stderr[-3000:]
        redone = max(0, logged - resumed_from)
        assert redone <= CKPT_EVERY  # at most one checkpoint interval is recomputed
        steps = history_steps(run)
        assert steps == list(range(LOG_EVERY, STEPS + 1, LOG_EVERY)), steps
        # resumed, not restarted: the rows up to the checkpoint are those of the killed process
        # (their img_per_s and elapsed_s columns are timings of that process)
        assert history_lines(run)[: len(before)] == before
        same_history = history_values(run) == history_values(ref_run["out"])
        same_weights = weights_equal(model_weights(run / "model.keras"), ref_weights)
        if not (same_history and same_weights):
            lost = "result differs from the uninterrupted run"
        assert same_history, "logged losses differ from the uninterrupted run"
        assert same_weights, "final weights differ from the uninterrupted run"
        frames = sorted(p.name for p in (run / "frames").glob("frame_*.png"))
        assert frames == sorted(p.name for p in (ref_run["out"] / "frames").glob("frame_*.png"))
        assert check_final_files(run) == []
        leftovers = temp_files(run) + temp_files(run / "checkpoints") + temp_files(run / "frames")
        assert leftovers == [], (
            f"temporary files of the killed process were not cleaned up: {leftovers}"
        )
        survived = True
    finally:
        record(scenario, survived, lost, redone)


@pytest.mark.skipif(not STRESS, reason="STRESS=1 only: a second kill during the resumed run")
def test_two_kills_in_a_row(ref_run, ref_weights, shapes_npz, tmp_path, record):
    """Killed, resumed, killed again during the next checkpoint write, resumed to the end."""
    run = tmp_path / "run"
    cmd = train_cmd(shapes_npz, run)
    survived = False
    try:
        for i, step in enumerate((20, 60)):
            start = lambda i=i: popen(cmd[1:], tmp_path / f"killed{i}.log")  # noqa: E731
            hit, _ = kill_in_checkpoint_write(start, run, step, CKPT_EVERY)
            assert hit, f"the run ended before a checkpoint write at or after step {step}"
            assert check_final_files(run) == []
        res = run_cli(cmd[1:])
        assert res.returncode == 0, res.stderr[-3000:]
        assert history_steps(run) == list(range(LOG_EVERY, STEPS + 1, LOG_EVERY))
        assert history_values(run) == history_values(ref_run["out"])
        assert weights_equal(model_weights(run / "model.keras"), ref_weights)
        survived = True
    finally:
        record("kill -9 twice (two checkpoint writes)", survived, "none" if survived else "?")
