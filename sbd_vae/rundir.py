"""Run-directory plumbing: atomic writes, the single-writer lock, checkpoints and history.csv.

The layout is the contract between training.py, latentSpace.py and the notebooks::

    runs/<name>/config.json      resolved TrainConfig, written before step 1
                checkpoints/     ckpt-<step>.npz: model + optimiser + RNG state, atomic, last K kept
                snapshots/       snap-<step>.npz: model weights at --snapshot_steps, never pruned
                history.csv      step, loss, recon, kl, capacity, kl_0..kl_{D-1}, img_per_s, elapsed_s
                tb/              TensorBoard scalars
                frames/ training.gif
                model.keras      final model
                summary.json     written last: its presence marks the run as finished

Every file is written to a temporary name in the same directory, flushed, fsync'ed and renamed
(``os.replace`` is atomic on POSIX), so a crash or ``kill -9`` never leaves a half-written file
under a final name. A checkpoint that still fails to load (disk corruption, a bit flip: the npz's
CRC-32 catches those) is skipped with a warning and the previous one is used.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import json
import os
import re
import tempfile
import warnings
import zipfile
from pathlib import Path

import numpy as np

_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read the process umask (the only portable way is to set and restore it)
CKPT_RE = re.compile(r"^ckpt-(\d{8})\.npz$")
SNAP_RE = re.compile(r"^snap-(\d{8})\.npz$")


class RunDirError(RuntimeError):
    """A run directory is missing, corrupt, locked or was made with another config."""


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or inf; the run stopped and its last good checkpoint is intact."""


# ----------------------------------------------------------------------------- atomic writes
@contextlib.contextmanager
def atomic_path(path, suffix=None):
    """Yields a temporary path next to ``path``; on success it is fsync'ed and renamed onto it.

    ``suffix`` keeps an extension that a writer insists on (Keras wants ``.keras``, imageio
    infers the format from it). On any exception the temporary file is removed and the
    destination is untouched.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_dead_temps(path)
        # The writer's pid is in the name, so a later writer can tell a killed writer's leftover
        # from a live one's file: .<name>.<pid>.<random><suffix>
        fd, tmp = tempfile.mkstemp(
            prefix=f".{path.name}.{os.getpid()}.", suffix=suffix or ".tmp", dir=path.parent
        )
        os.close(fd)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file the usual permissions
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        if isinstance(e, OSError):  # disk full, read-only, permissions: name the file, not errno
            raise RunDirError(
                f"{path}: could not be written ({e.strerror or e}); the previous version, if any, "
                f"is intact. Free some space or fix {path.parent}, then re-run the same command "
                "(a training run resumes from its last checkpoint)."
            ) from e
        raise


def write_bytes(path, data: bytes) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def write_text(path, text: str) -> None:
    write_bytes(path, text.encode())


def write_json(path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray | tuple):
        return list(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_json(path, what="file", fix="delete it and re-run"):
    """Loads JSON or raises RunDirError naming the file and the fix."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise RunDirError(f"{path}: {what} not found; {fix}.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunDirError(f"{path}: {what} is corrupt ({e}); {fix}.") from None


# ----------------------------------------------------------------------------- lock
class RunLock:
    """An exclusive ``flock`` on ``<run>/.lock``: one writer per run directory.

    The kernel drops the lock when the process dies (even by ``kill -9``), so a crashed run
    never leaves a stale lock behind.
    """

    def __init__(self, run_dir):
        self.path = Path(run_dir) / ".lock"
        self.fd = None

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self.fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(self.fd)
            raise RunDirError(
                f"{self.path.parent} is being written by another training process (pid {holder}). "
                "Wait for it to finish, or use another --out directory."
            ) from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, str(os.getpid()).encode(), 0)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


# ----------------------------------------------------------------------------- config
def config_diff(old: dict, new: dict, ignore=()) -> list[str]:
    """Human-readable lines for every key whose value differs (JSON-normalised)."""
    norm = json.loads(json.dumps({"o": old, "n": new}, default=_json_default))
    old, new = norm["o"], norm["n"]
    lines = []
    for key in sorted(set(old) | set(new)):
        if key in ignore:
            continue
        if old.get(key, "<missing>") != new.get(key, "<missing>"):
            lines.append(f"  {key}: {old.get(key, '<missing>')!r} -> {new.get(key, '<missing>')!r}")
    return lines


# ----------------------------------------------------------------------------- checkpoints
def _model_state(model) -> list:
    # model.variables include the Sampling layer's SeedGenerator state, so ε resumes exactly;
    # optimizer.variables include its iteration counter and Adam moments.
    return list(model.variables) + list(model.optimizer.variables)


def _write_state(path, variables, run_dir, step: int, extra: dict, what: str) -> Path:
    """Writes ``variables`` (+ a JSON meta member) to the .npz ``path`` atomically; refuses
    non-finite weights, naming the last good checkpoint."""
    arrays = {f"v{i:04d}": np.asarray(v.numpy()) for i, v in enumerate(variables)}
    bad = [v.path for v, a in zip(variables, arrays.values())
           if a.dtype.kind == "f" and not np.isfinite(a).all()]  # fmt: skip
    if bad:  # a finite loss can still come with a NaN update: never checkpoint it
        kept = list_checkpoints(run_dir)
        raise NonFiniteLoss(
            f"{run_dir}: the weights became non-finite by step {step} ({', '.join(bad[:3])}"
            f"{', ...' if len(bad) > 3 else ''}); {what}, "
            + (f"the last good checkpoint {kept[-1]} is intact" if kept else "no checkpoint yet")
            + ". Lower --lr or β and start over with --fresh (or another --out)."
        )
    meta = {"step": int(step), "paths": [v.path for v in variables], **extra}
    arrays["meta"] = np.frombuffer(json.dumps(meta, default=_json_default).encode(), np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    write_bytes(path, buf.getvalue())
    return Path(path)


def save_checkpoint(run_dir, model, step: int, extra: dict, keep: int) -> Path:
    """Writes checkpoints/ckpt-<step>.npz atomically, then prunes all but the last ``keep``."""
    path = Path(run_dir) / "checkpoints" / f"ckpt-{step:08d}.npz"
    _write_state(path, _model_state(model), run_dir, step, extra, "not checkpointed")
    for old in list_checkpoints(run_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def save_snapshot(run_dir, model, step: int) -> Path:
    """Writes snapshots/snap-<step>.npz atomically: the model's weights at ``step``, without the
    optimiser (a third of a checkpoint), for scoring over training; never pruned."""
    path = Path(run_dir) / "snapshots" / f"snap-{step:08d}.npz"
    return _write_state(path, list(model.variables), run_dir, step, {}, "snapshot not written")


def list_snapshots(run_dir) -> dict[int, Path]:
    """{step: snapshots/snap-<step>.npz} of a run, in step order ({} without snapshots)."""
    snap_dir = Path(run_dir) / "snapshots"
    if not snap_dir.is_dir():
        return {}
    found = {int(m.group(1)): p for p in snap_dir.iterdir() if (m := SNAP_RE.match(p.name))}
    return dict(sorted(found.items()))


def load_snapshot(path, model) -> int:
    """Assigns the weights of snapshot ``path`` to ``model`` (built with the run's config);
    returns its step. RunDirError naming the file if it is corrupt or of another architecture."""
    meta, arrays = read_checkpoint(path)
    variables = list(model.variables)
    if [a.shape for a in arrays] != [tuple(v.shape) for v in variables]:
        raise RunDirError(
            f"{path}: snapshot does not match the model of the run's config.json (another "
            "architecture); delete it, or score the run's final model only."
        )
    for v, a in zip(variables, arrays):
        v.assign(a)
    return int(meta["step"])


# Temporary files of atomic_path (".<name>.<8 random chars><suffix>") that only training writes:
# a kill -9 mid-write leaves one behind; they never match a final name and are removed on resume.
_TRAINING_TEMP_RE = re.compile(
    r"^\.((ckpt|snap)-\d{8}\.npz|frame_\d{8}\.png|history\.csv|config\.json|summary\.json|"
    r"model\.keras|training\.gif)\.(\d+\.)?[A-Za-z0-9_]{8}(\.tmp|\.png|\.keras|\.gif)$"
)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_dead_temps(path) -> list[Path]:
    """Deletes the temporary files of ``path`` (.<name>.<pid>.*) whose writer process is dead:
    what a ``kill -9`` during an atomic write leaves behind (an export can be hundreds of MB)."""
    path = Path(path)
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.(\d+)\.[A-Za-z0-9_]{{8}}\.\w+$")
    removed = []
    if path.parent.is_dir():
        for p in path.parent.iterdir():
            m = pattern.match(p.name)
            if m and int(m.group(1)) != os.getpid() and not pid_alive(int(m.group(1))):
                p.unlink(missing_ok=True)
                removed.append(p)
    return removed


def remove_stale_temps(run_dir) -> list[Path]:
    """Deletes temporary files left by a killed training process; call it holding the RunLock."""
    removed = []
    for d in (Path(run_dir), *(Path(run_dir) / n for n in ("checkpoints", "snapshots", "frames"))):
        if d.is_dir():
            for p in d.iterdir():
                if _TRAINING_TEMP_RE.match(p.name) and p.is_file():
                    p.unlink(missing_ok=True)
                    removed.append(p)
    return removed


def list_checkpoints(run_dir) -> list[Path]:
    """Complete checkpoint files, oldest first (temporary files never match the pattern)."""
    ckpt_dir = Path(run_dir) / "checkpoints"
    if not ckpt_dir.is_dir():
        return []
    return sorted(p for p in ckpt_dir.iterdir() if CKPT_RE.match(p.name))


def check_zip_crc(path) -> None:
    """Raises zipfile.BadZipFile unless every member of the .npz at ``path`` has a good CRC-32.

    np.load reads a member only as far as its .npy header says, so zipfile checks the CRC-32 only
    of members read to the end: a flipped bit in a header length would shift the data silently.
    testzip() reads every member in full and checks every CRC.
    """
    with zipfile.ZipFile(path) as zf:
        bad = zf.testzip()
    if bad is not None:
        raise zipfile.BadZipFile(f"bad CRC-32 for {bad}")


def read_checkpoint(path) -> tuple[dict, list]:
    """(meta, arrays) of one checkpoint; RunDirError naming the file if it is unreadable."""
    try:
        check_zip_crc(path)
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(z["meta"].tobytes().decode())
            arrays = [z[f"v{i:04d}"] for i in range(len(meta["paths"]))]
    except Exception as e:  # noqa: BLE001  any unreadable checkpoint is a corrupt checkpoint
        raise RunDirError(
            f"{path}: checkpoint is corrupt or truncated ({type(e).__name__}: {e})"
        ) from None
    return meta, arrays


def restore_latest(run_dir, model) -> dict | None:
    """Loads the newest readable checkpoint into ``model`` (weights, optimiser, RNG); its meta.

    Returns None when there is no checkpoint. A corrupt newest file is skipped with a warning,
    so at most one more checkpoint interval is lost; if none can be read, RunDirError says so.
    """
    candidates = list_checkpoints(run_dir)
    if not candidates:
        return None
    variables = _model_state(model)
    for path in reversed(candidates):
        try:
            meta, arrays = read_checkpoint(path)
        except RunDirError as e:
            warnings.warn(f"skipping {e}", stacklevel=2)
            continue
        if len(arrays) != len(variables) or any(
            a.shape != tuple(v.shape) for a, v in zip(arrays, variables)
        ):
            raise RunDirError(
                f"{path}: checkpoint does not match this model's variables "
                "(the architecture changed); use --fresh to start over."
            )
        for v, a in zip(variables, arrays):
            v.assign(a)
        return meta
    raise RunDirError(
        f"{Path(run_dir) / 'checkpoints'}: no readable checkpoint "
        f"({len(candidates)} corrupt); use --fresh to start over."
    )


# ----------------------------------------------------------------------------- history
def read_history(run_dir) -> list[dict]:
    """history.csv as a list of dicts of floats (``step`` as int); [] if absent."""
    path = Path(run_dir) / "history.csv"
    if not path.exists():
        return []
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    out = []
    for row in rows:
        try:
            rec = {k: float(v) for k, v in row.items()}
        except (TypeError, ValueError):
            break  # a torn last line (e.g. a crash on a non-atomic filesystem): ignore the tail
        rec["step"] = int(rec["step"])
        out.append(rec)
    return out


def write_history(run_dir, rows: list[dict]) -> None:
    """Rewrites history.csv atomically (a few hundred rows: cheap, and never torn)."""
    if not rows:
        return
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    write_text(Path(run_dir) / "history.csv", buf.getvalue())
