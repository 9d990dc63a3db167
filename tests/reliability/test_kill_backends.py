"""kill -9 and damaged checkpoints on the newer paths: JAX with TensorFlow unimportable, and
FactorVAE (its discriminator and the discriminator's own Adam state are checkpointed beside the
model) on both backends.

Each variant trains the ``test`` preset for 60 steps (log 10, checkpoint 20, keep 2) through the
CLI in a subprocess (``JAX_ENV``: ``KERAS_BACKEND=jax``, ``tests/no_tensorflow`` first on the
path), so this runs in the TensorFlow pass of ``make test`` and needs no Makefile line. The
promise is that of tests/reliability/test_kill_training.py: after a kill -9 (during training,
during a checkpoint write, during ``sweep --publish``) or with the newest checkpoint corrupt or
truncated (refused by name; the previous one is used), the same command ends with the history
and **every checkpointed array** (weights, both optimisers, RNG state) bit-identical to an
uninterrupted run made by another process.

``make test`` runs one kill, one damaged checkpoint and one publish kill of JAX + FactorVAE;
``make stress`` (STRESS=1) runs every variant at every point.
"""

from __future__ import annotations

import shutil
import time

import numpy as np
import pytest
from reliability_helpers import (
    CLI_ENV,
    HAS_JAX,
    JAX_ENV,
    STRESS,
    check_final_files,
    flip_bit,
    history_steps,
    kill9,
    kill_in_checkpoint_write,
    model_weights,
    popen,
    run_cli,
    temp_files,
    train_cmd,
    tree_hash,
    truncate,
    wait_until,
    weights_equal,
)

from sbd_vae import rundir

pytestmark = pytest.mark.slow
STEPS, LOG_EVERY, CKPT_EVERY = 60, 10, 20
WAIT_S = 1800  # for a kill point; generous: on a loaded 2-core machine a JAX start can take minutes
VARIANTS = {  # name: (environment, extra CLI arguments)
    "jax": (JAX_ENV, []),
    "tf-factorvae": (CLI_ENV, ["--objective", "factorvae"]),
    "jax-factorvae": (JAX_ENV, ["--objective", "factorvae"]),
}
TIMING = ("img_per_s", "elapsed_s")  # the history columns that are not a function of the seed


def _cmd(variant, data, out) -> list[str]:
    return train_cmd(data, out, "--steps", STEPS, *VARIANTS[variant][1])[1:]


def _env(variant):
    if variant.startswith("jax") and not HAS_JAX:
        pytest.skip("jax is not installed in this Python's environment")
    return VARIANTS[variant][0]


@pytest.fixture(scope="session")
def variant_ref(shapes_npz, tmp_path_factory):
    """variant_ref(name): the run directory of an uninterrupted run of that variant (made once)."""
    made = {}

    def get(variant):
        if variant not in made:
            out = tmp_path_factory.mktemp(f"ref-{variant}") / "run"
            res = run_cli(_cmd(variant, shapes_npz, out), env=_env(variant), timeout=WAIT_S)
            if res.returncode != 0:
                pytest.fail(f"reference run {variant} failed:\n{res.stderr[-3000:]}")
            made[variant] = out
        return made[variant]

    return get


def deterministic_history(run) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rundir.read_history(run)]


def assert_same_result(run, ref) -> None:
    """History (every column but the timings) and every array of the final checkpoint equal."""
    assert history_steps(run) == list(range(LOG_EVERY, STEPS + 1, LOG_EVERY))
    assert deterministic_history(run) == deterministic_history(ref), "history differs"
    (last,), (ref_last,) = rundir.list_checkpoints(run)[-1:], rundir.list_checkpoints(ref)[-1:]
    assert last.name == ref_last.name == f"ckpt-{STEPS:08d}.npz"
    meta, arrays = rundir.read_checkpoint(last)
    ref_meta, ref_arrays = rundir.read_checkpoint(ref_last)
    assert meta == ref_meta and len(arrays) == len(ref_arrays)
    diff = [i for i, (a, b) in enumerate(zip(arrays, ref_arrays)) if not np.array_equal(a, b)]
    assert not diff, f"checkpointed arrays {diff} differ from the uninterrupted run"
    assert check_final_files(run) == []


def _kills():
    if not STRESS:
        return [("jax-factorvae", "ckpt", 40)]
    return [(v, kind, at) for v in VARIANTS for kind, at in (("ckpt", 20), ("ckpt", 40),
                                                              ("step", 0.5))]  # fmt: skip


def _past_step(run, step):
    return lambda: max(history_steps(run), default=0) >= step


@pytest.mark.parametrize("variant, kind, at", _kills(), ids=lambda x: str(x))
def test_kill9_then_resume_equals_uninterrupted(variant, kind, at, variant_ref, shapes_npz,
                                                tmp_path, record):  # fmt: skip
    """kill -9 while checkpoint ``at`` is written, or at a random moment after step
    ``at``·STEPS is logged; the same command then ends bit-identical to the reference."""
    env, run = _env(variant), tmp_path / "run"
    ok = False
    try:
        start = lambda: popen(_cmd(variant, shapes_npz, run), tmp_path / "killed.log", env=env)  # noqa: E731
        if kind == "ckpt":
            hit, proc = kill_in_checkpoint_write(start, run, at, CKPT_EVERY, timeout=WAIT_S)
        else:
            proc = start()
            try:
                hit = wait_until(proc, _past_step(run, int(at * STEPS)), WAIT_S, poll=0.005)
                time.sleep(np.random.RandomState(len(variant)).uniform(0.0, 1.0))
                hit = hit and proc.poll() is None
            finally:
                kill9(proc)  # also when the wait failed: no training outlives the test
        if not hit:
            assert proc.returncode == 0, (tmp_path / "killed.log").read_text()[-3000:]
            pytest.skip(f"the run finished before kill point {kind}={at}")
        assert check_final_files(run) == []  # only complete files under final names
        if kind == "ckpt":
            assert temp_files(run / "checkpoints"), "no checkpoint write was interrupted"
        res = run_cli(_cmd(variant, shapes_npz, run), env=env, timeout=WAIT_S)
        assert res.returncode == 0, res.stderr[-3000:]
        assert_same_result(run, variant_ref(variant))
        assert temp_files(run) + temp_files(run / "checkpoints") == []
        ok = True
    finally:
        record(f"kill -9 ({kind}), {variant}", ok, "none" if ok else "?")


def _damages():
    if not STRESS:
        return [("jax-factorvae", "bit flip")]
    return [(v, d) for v in VARIANTS for d in ("bit flip", "truncated")]


@pytest.mark.parametrize("variant, damage", _damages())
def test_damaged_newest_checkpoint_is_refused_and_the_previous_used(variant, damage,
                                                                    variant_ref, shapes_npz,
                                                                    tmp_path, record):  # fmt: skip
    """The reference run as a kill after its last checkpoint leaves it (checkpoints 40 and 60,
    no model.keras or summary.json yet), with ckpt-60 damaged: the same command names it as
    skipped, resumes from ckpt-40 and ends bit-identical to the reference."""
    env, run = _env(variant), tmp_path / "run"
    shutil.copytree(variant_ref(variant), run)
    for name in ("model.keras", "summary.json"):
        (run / name).unlink()
    ok = False
    try:
        newest = rundir.list_checkpoints(run)[-1]
        assert newest.name == f"ckpt-{STEPS:08d}.npz"
        if damage == "bit flip":
            flip_bit(newest, newest.stat().st_size // 2, 3)  # inside the array data
        else:
            truncate(newest, 0.6)
        res = run_cli(_cmd(variant, shapes_npz, run), env=env, timeout=WAIT_S)
        assert res.returncode == 0, res.stderr[-3000:]
        assert "skipping" in res.stderr and newest.name in res.stderr, res.stderr[-3000:]
        assert_same_result(run, variant_ref(variant))
        ok = True
    finally:
        record(f"damaged newest checkpoint ({damage}), {variant}", ok, "none" if ok else "?",
               redone=CKPT_EVERY)  # fmt: skip


def _publish_kills():
    if not STRESS:
        return [("jax-factorvae", 4)]
    return [(v, k) for v in VARIANTS for k in (0, 1, 4)]


@pytest.mark.parametrize("variant, files", _publish_kills())
def test_kill9_during_publish(variant, files, variant_ref, shapes_npz, tmp_path, record):
    """A finished run published by ``sweep --publish``, killed once ``files`` files are in the
    temporary copy (4: while model.keras is re-saved): the published folder is absent or
    complete, never partial; the same command publishes it, equal to the run's files, and
    removes what the killed publisher left."""
    env = _env(variant)
    ref = variant_ref(variant)
    objective = VARIANTS[variant][1][1:] or ["beta"]
    name = "beta1_seed0" if objective == ["beta"] else f"{objective[0]}_beta1_seed0"
    runs, pub = tmp_path / "runs", tmp_path / "results"
    shutil.copytree(ref, runs / name)
    cmd = ["training.py", "sweep", "--preset", "test", "--steps", STEPS, "--betas", 1,
           "--seeds", 0, "--objectives", *objective, "--data_path", shapes_npz, "--out", runs,
           "--publish", pub, "--quiet"]  # fmt: skip
    ok = False
    try:

        def copying():
            tmps = list(pub.glob(f".{name}.tmp*")) if pub.exists() else []
            return any(sum(1 for _ in t.iterdir()) >= files for t in tmps if t.is_dir())

        proc = popen(cmd, tmp_path / "killed.log", env=env)
        try:
            hit = wait_until(proc, copying, timeout=WAIT_S)
        finally:
            kill9(proc)
        if not hit:
            assert proc.returncode == 0, (tmp_path / "killed.log").read_text()[-3000:]
            pytest.skip(f"the publish finished before {files} files were copied")
        dest = pub / name
        assert not dest.exists() or check_final_files(dest) == [], "a partial published run"
        res = run_cli(cmd, env=env, timeout=WAIT_S)
        assert res.returncode == 0, res.stderr[-3000:]
        published = tree_hash(dest)
        source = tree_hash(runs / name)
        for n in ("config.json", "summary.json", "history.csv", "training.gif"):
            assert published[n] == source[n], n
        assert weights_equal(model_weights(dest / "model.keras"),
                             model_weights(runs / name / "model.keras"))  # fmt: skip
        assert sorted(p.name for p in pub.iterdir()) == [name, "sweep.json"]  # no leftovers
        ok = True
    finally:
        record(f"kill -9 during publish, {variant}", ok, "none" if ok else "?")
