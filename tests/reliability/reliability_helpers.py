"""Helpers of the fault-injection suite: CLI commands, kills, file damage, run-directory checks."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
CLI_ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONHASHSEED="0")
# A JAX-only machine, as `make test`'s JAX pass: TensorFlow unimportable (tests/no_tensorflow).
JAX_ENV = dict(CLI_ENV, KERAS_BACKEND="jax",
               PYTHONPATH=f"{ROOT / 'tests' / 'no_tensorflow'}{os.pathsep}{ROOT}")  # fmt: skip
HAS_JAX = importlib.util.find_spec("jax") is not None  # in this interpreter's environment
STRESS = os.environ.get("STRESS", "") not in ("", "0")  # make stress: the heavy variants
KILL_POINTS = 10 if STRESS else 3
TEMP_RE = re.compile(r"^\..+\.[A-Za-z0-9_]{8}(\.tmp|\.png|\.keras|\.gif)$")  # atomic_path temps


# ----------------------------------------------------------------------------- CLIs
def train_cmd(data, out, *extra) -> list[str]:
    """`training.py train --preset test` (100 steps, log 10, checkpoint 20, keep 2)."""
    return [PY, "training.py", "train", "--preset", "test", "--data_path", str(data),
            "--out", str(out), "--quiet", *map(str, extra)]  # fmt: skip


def run_cli(args, timeout=600, env=None) -> subprocess.CompletedProcess:
    """``args`` run by this Python in the repository root (``env``: CLI_ENV, or JAX_ENV)."""
    return subprocess.run(
        [PY, *map(str, args)], cwd=ROOT, env=env or CLI_ENV, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


def assert_clean_error(res, *needles, code=2) -> str:
    """The CLI failed with exit ``code``, no Python traceback, and every needle in stderr."""
    err = res.stderr
    assert res.returncode == code, (res.returncode, err[-2000:])
    assert "Traceback" not in err, err[-3000:]
    for n in needles:
        assert str(n) in err, (n, err[-2000:])
    return err


def call_main(main, argv, capsys) -> tuple[int, str]:
    """Runs a module's ``main(argv)`` in-process like its CLI: (exit code, stderr)."""
    try:
        code = main(argv)
    except SystemExit as e:  # argparse and p.exit()
        code = e.code
    return (0 if code is None else code), capsys.readouterr().err


def popen(args, out_log: Path, env=None) -> subprocess.Popen:
    f = open(out_log, "w")  # noqa: SIM115  closed by the caller via proc.log.close()
    proc = subprocess.Popen([PY, *map(str, args)], cwd=ROOT, env=env or CLI_ENV, stdout=f,
                            stderr=f)  # fmt: skip
    proc.log = f
    return proc


def kill9(proc: subprocess.Popen) -> None:
    """SIGKILL the process by its pid and reap it."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    proc.log.close()


def wait_until(proc: subprocess.Popen, predicate, timeout=300, poll=0.0002) -> bool:
    """Polls ``predicate()`` until it is true (True) or the process has exited (False)."""
    t_end = time.time() + timeout
    while time.time() < t_end:
        if predicate():
            return True
        if proc.poll() is not None:
            return bool(predicate())
        time.sleep(poll)
    raise TimeoutError("condition not reached")


def temp_files(directory) -> list[str]:
    d = Path(directory)
    try:
        return sorted(e.name for e in os.scandir(d) if TEMP_RE.match(e.name))
    except FileNotFoundError:
        return []


CKPT_TEMP_RE = re.compile(r"^\.ckpt-(\d{8})\.npz\.")  # a checkpoint being written


def kill_in_checkpoint_write(start, run, step: int, every: int, attempts: int = 5,
                             timeout: float = 300):  # fmt: skip
    """SIGKILLs a training while it writes a checkpoint of step >= ``step``: (hit, last process).

    ``start()`` launches the training command (a new process, which resumes the run). A small
    model's checkpoint is written in milliseconds, so a kill sent the moment its temporary file
    is seen can land after the rename, more often on a loaded machine (one CI run lost this race).
    A miss is still a valid kill between two writes: the next attempt resumes the run and aims at
    the next checkpoint, up to ``attempts`` times. ``hit`` is True once a write was interrupted
    (its temporary file is left in checkpoints/), False if the run finished first.
    """
    from sbd_vae import rundir

    def writing():
        names = temp_files(Path(run) / "checkpoints")
        return any((m := CKPT_TEMP_RE.match(n)) and int(m.group(1)) >= step for n in names)

    for _ in range(attempts):
        proc = start()
        try:
            hit = wait_until(proc, writing, timeout=timeout)
        finally:
            kill9(proc)  # also when the wait failed: no training outlives the test
        if not hit or temp_files(Path(run) / "checkpoints"):
            return hit, proc
        done = rundir.list_checkpoints(Path(run))  # missed: the write completed before the kill
        step = (int(done[-1].name[5:13]) if done else 0) + every
    raise AssertionError(f"{attempts} kills all landed after the checkpoint write they aimed at")


# ----------------------------------------------------------------------------- damage
def flip_bit(path, pos: int, bit: int) -> None:
    b = bytearray(Path(path).read_bytes())
    b[pos] ^= 1 << bit
    Path(path).write_bytes(bytes(b))


def truncate(path, fraction: float) -> None:
    raw = Path(path).read_bytes()
    Path(path).write_bytes(raw[: int(len(raw) * fraction)])


def npy_header_len_offsets(raw: bytes) -> list[int]:
    """Offsets of the (low) header-length byte of every .npy member (format 1.0, 2.0 or 3.0)
    of an uncompressed npz."""
    return [m.start() + 8 for m in re.finditer(rb"\x93NUMPY[\x01\x02\x03]\x00", raw)]


def zip_directory_offsets(raw: bytes) -> range:
    """The central directory and end record of a zip: names, sizes, CRCs, offsets."""
    return range(raw.rfind(b"PK\x01\x02", 0, raw.find(b"PK\x05\x06")) - 200, len(raw))


# ----------------------------------------------------------------------------- run directories
def tree_hash(root, exclude=(".lock",)) -> dict[str, str]:
    """{relative path: sha256} of every file under ``root`` (``.lock`` holds the last pid)."""
    root = Path(root)
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name not in exclude:
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def model_weights(path) -> list[np.ndarray]:
    import keras

    import variationAutoEncoder  # noqa: F401  registers the classes

    return [np.asarray(v.numpy()) for v in keras.models.load_model(path, compile=False).variables]


def weights_equal(a, b) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


def history_lines(run) -> list[str]:
    p = Path(run) / "history.csv"
    return p.read_text().splitlines()[1:] if p.exists() else []


def history_steps(run) -> list[int]:
    return [int(line.split(",")[0]) for line in history_lines(run)]


def history_values(run, ncols=4) -> dict[int, tuple]:
    """{step: (step, loss, recon, kl) as written}: the deterministic part of each row."""
    return {int(x.split(",")[0]): tuple(x.split(",")[:ncols]) for x in history_lines(run)}


def check_final_files(run) -> list[str]:
    """Problems with files under their final names in a run directory (empty: all complete).

    Every checkpoint loads with finite arrays, every JSON parses, history.csv parses with
    consecutive steps, every PNG/GIF decodes and model.keras loads."""
    import imageio.v2 as imageio

    from sbd_vae import rundir

    run, problems = Path(run), []
    for p in rundir.list_checkpoints(run):
        try:
            _, arrays = rundir.read_checkpoint(p)
            if not all(np.isfinite(a).all() for a in arrays if a.dtype.kind == "f"):
                problems.append(f"{p.name}: non-finite values")
        except rundir.RunDirError as e:
            problems.append(str(e))
    for name in ("config.json", "summary.json", "metrics.json"):
        if (run / name).exists():
            try:
                json.loads((run / name).read_text())
            except ValueError as e:
                problems.append(f"{name}: {e}")
    steps = history_steps(run)
    if steps and steps != list(range(steps[0], steps[0] * (len(steps) + 1), steps[0])):
        problems.append(f"history.csv steps {steps}")
    # final names only: a killed writer's ".frame_….<pid>.<rand>.png" temp is not a final file
    for p in [*sorted((run / "frames").glob("frame_*.png")), run / "training.gif"]:
        if p.exists():
            try:
                imageio.mimread(p) if p.suffix == ".gif" else imageio.imread(p)
            except Exception as e:  # noqa: BLE001
                problems.append(f"{p.name}: {type(e).__name__}: {e}")
    if (run / "model.keras").exists():
        try:
            model_weights(run / "model.keras")
        except Exception as e:  # noqa: BLE001
            problems.append(f"model.keras: {type(e).__name__}: {e}")
    return problems
