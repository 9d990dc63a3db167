"""Objective × β × seed sweeps as Ray Tune trials: the local sweep's run directories and sweep.json, on a cluster.

    python training.py sweep --preset demo --betas 1 4 16 --seeds 0 1 --out runs/sweep --executor ray
    python training.py sweep ... --executor ray --address HEAD:6379 --gpus-per-trial 1

Each (objective, β, seed) is one Tune trial: a function trainable that calls
``train_fn(cfg, <sweep>/<run_name>, progress=False)`` (``training.py`` passes ``training.train``),
exactly what the local executor does in-process, so ``latentSpace.py report`` and the notebooks
read the result unchanged. The driver (the process that calls ``ray_sweep``) owns
``<sweep>/sweep.json`` and prints one line per trial and logging interval (β, seed, step, loss),
then ``sweep.format_sweep_table``.

Storage: shared filesystem
    Trials write into ``<sweep>/<run_name>/`` on whichever node runs them, and the driver writes
    ``<sweep>/sweep.json``, so ``--out`` must be a path that every node sees at the same place (NFS,
    a cluster filesystem, or one machine). The same holds for the repository (workers import it
    through PYTHONPATH, not by uploading it) and for a relative ``--data_path``: each trial
    changes into the driver's working directory, so relative paths resolve as they do locally and
    config.json is identical to the local executor's. Tune's own experiment state goes to
    ``<sweep>/.ray_results/`` (``storage_path`` overrides it); nothing reads it back.

Fault tolerance
    A trial whose worker dies (a node lost, OOM-killed, ``kill -9``) is retried up to
    ``max_failures`` times (Tune's ``FailureConfig``); the retry calls ``train()`` again, which
    resumes from the run's last checkpoint: history.csv keeps its rows up to that step and goes on
    from there. Errors that a retry would only repeat (a non-finite loss, a locked or mismatched
    run directory, bad config or data) are not retried: the run is recorded as "failed" with the
    message, as the local executor does. Re-running the same command skips finished runs
    (``summary.json`` exists) and resumes the others.

Ray is imported only inside functions: the default local executor never needs it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict, replace
from pathlib import Path
from urllib.parse import urlsplit

from . import backend, rundir
from .config import TrainConfig, from_dict
from .sweep import check_grid, format_sweep_table, grid_names, sweep_index

# The repository root: workers import training.py (train_fn's module) from it.
REPO = Path(__file__).resolve().parents[1]
INSTALL = '.venv/bin/pip install "ray[tune]==2.60.0"'
CONNECT_TIMEOUT_S = 5.0
PROBE_TIMEOUT_S = 20.0
POLL_S = 0.5
# Errors a retry would only repeat: the run is recorded as failed instead of being retried.
DETERMINISTIC = (rundir.NonFiniteLoss, rundir.RunDirError, ValueError, FileNotFoundError)


class ClusterError(ValueError):
    """Ray is missing, the cluster cannot be reached, or it cannot run the requested trials.

    A ValueError, so training.py's CLI reports it as ``error: ...`` with exit status 2.
    """


# ----------------------------------------------------------------------------- connecting
def import_ray():
    """(ray, ray.tune), or ClusterError with the install command."""
    try:
        import ray
        from ray import tune
    except ImportError as e:
        raise ClusterError(
            f"--executor ray needs Ray Tune, which cannot be imported here ({e}). "
            f"Install it with: {INSTALL}   (or use the default --executor local)"
        ) from None
    return ray, tune


def check_address(
    address: str, timeout: float = CONNECT_TIMEOUT_S, probe_timeout: float = PROBE_TIMEOUT_S
) -> None:
    """Fails fast, naming ``address``, where ray.init would retry for minutes.

    ``host:port`` and ``ray://host:port``: a TCP connect within ``timeout`` s. ``host:port``
    also has to answer as a Ray head (its GCS) within ``probe_timeout`` s; the probe runs in a
    child process, since a GCS client waits on a silent port far longer.
    """
    if address in ("auto", "local"):
        return
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    try:
        host, port = parts.hostname, parts.port or (10001 if parts.scheme == "ray" else 6379)
    except ValueError as e:
        raise ClusterError(f"--address {address!r} is not HOST:PORT ({e}).") from None
    if not host:
        raise ClusterError(f"--address {address!r} is not HOST:PORT (for example 10.0.0.1:6379).")
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        raise ClusterError(
            f"cannot reach the Ray cluster at --address {address!r} ({host}:{port}: {e}). "
            "Start its head with `ray start --head --port=6379` and check host, port and firewall, "
            "or leave --address out to run on a local Ray instance."
        ) from None
    if parts.scheme != "ray":  # Ray Client (ray://) has its own bounded retries
        _probe_gcs(address, f"{host}:{port}", probe_timeout)


def _probe_gcs(address: str, hostport: str, timeout: float) -> None:
    code = (
        "import sys\nfrom ray._raylet import GcsClient\nGcsClient(address=sys.argv[1]).cluster_id"
    )
    try:
        r = subprocess.run(
            [sys.executable, "-c", code, hostport], capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        raise ClusterError(
            f"--address {address!r} accepts connections, but no Ray head (GCS) answered there "
            f"within {timeout:g} s. Give the head's --port (6379 unless `ray start --head` was "
            "given another), as printed by `ray start --head` or `ray status` on the head."
        ) from None
    lines = r.stderr.strip().splitlines()
    if r.returncode and not any(w in r.stderr for w in ("ImportError", "AttributeError")):
        raise ClusterError(
            f"--address {address!r}: no Ray head (GCS) answered there "
            f"({lines[-1] if lines else r.returncode})."
        )  # (a probe that cannot import Ray's internals stays silent: ray.init decides)


def _runtime_env() -> dict:
    # Shared filesystem: workers import the project from the same path as the driver.
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    env = {"PYTHONPATH": path, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    env["KERAS_BACKEND"] = backend.requested()  # trials train on the driver's backend
    return {"env_vars": env}


def connect(address: str | None = None, num_cpus: int | None = None, **init_kwargs) -> bool:
    """Joins the Ray cluster at ``address``, or starts a local instance (``num_cpus`` CPUs,
    default all; ``init_kwargs`` go to ``ray.init``, e.g. ``object_store_memory``); True if this
    call connected (the caller then shuts it down with ``ray.shutdown()``).

    A process that is already connected (``ray.is_initialized()``) keeps that connection, so a
    script or test can connect once and run several sweeps (``address`` is still checked).
    """
    ray, _ = import_ray()
    if address:
        check_address(address)
    if ray.is_initialized():
        return False
    common = dict(
        runtime_env=_runtime_env(),
        logging_level=logging.WARNING,
        log_to_driver=False,  # trial errors come back through Tune; worker logs stay in /tmp/ray
        include_dashboard=False,
    )
    try:
        if address:
            ray.init(address=address, **common, **init_kwargs)
        else:  # "local": never attach to a cluster that `ray start` left running on this machine
            ray.init(
                address="local", num_cpus=num_cpus or os.cpu_count() or 1, **common, **init_kwargs
            )
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as e:
        where = f"the Ray cluster at --address {address!r}" if address else "a local Ray instance"
        raise ClusterError(f"could not connect to {where}: {e}") from None
    return True


def check_resources(ray, cpus_per_trial: float, gpus_per_trial: float, where: str) -> None:
    """Fails early when no node could ever run one trial (Tune would wait forever)."""
    total = ray.cluster_resources()
    gpus, cpus = total.get("GPU", 0.0), total.get("CPU", 0.0)
    if gpus_per_trial > gpus:
        raise ClusterError(
            f"--gpus-per-trial {gpus_per_trial:g} was requested, but {where} has {gpus:g} GPUs "
            f"(resources: {cpus:g} CPU, {gpus:g} GPU). Use --gpus-per-trial 0 to train on CPUs, or "
            "join a cluster whose nodes have GPUs (`ray start` on a GPU node registers them)."
        )
    if cpus_per_trial > cpus:
        raise ClusterError(
            f"--cpus-per-trial {cpus_per_trial:g} was requested, but {where} has only {cpus:g} CPUs."
        )


# ----------------------------------------------------------------------------- the trial
def _config(base: dict, beta: float, seed: int, objective: str) -> TrainConfig:
    return replace(from_dict(base), objective=objective, beta=beta, seed=seed)


def _setup_worker(cpus: float) -> None:
    """Threads to match the trial's CPU share; GPU memory on demand (fractional GPUs share one).
    On JAX only the memory: XLA allocates on demand when told before it starts, and sizes its
    CPU thread pool itself."""
    if backend.requested() == "jax":
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
        return
    import tensorflow as tf

    threads = max(1, math.ceil(cpus))
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
        for gpu in tf.config.list_physical_devices("GPU"):
            tf.config.experimental.set_memory_growth(gpu, True)
    except RuntimeError:  # TF already initialised in this worker: keep its settings
        pass


def _checkpoint_step(run: Path) -> int:
    ckpts = rundir.list_checkpoints(run)
    return int(rundir.CKPT_RE.match(ckpts[-1].name).group(1)) if ckpts else 0


def _mtime(path: Path):
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return None


def _trial(config, runs, base, out, cwd, cpus, train_fn):
    """Tune function trainable: trains one run with ``train_fn``; reports each new history.csv row."""
    from ray import tune

    if not Path(cwd).is_dir() or not Path(out).is_dir():
        raise rundir.RunDirError(
            f"{socket.gethostname()}: {cwd} or {out} does not exist on this node; the sweep "
            "directory and the repository must be on a filesystem that all nodes share."
        )
    os.chdir(cwd)  # relative paths in the config (data_path) resolve as on the driver
    _setup_worker(cpus)
    name = config["run"]
    beta, seed, objective = runs[name]
    cfg = _config(base, beta, seed, objective)
    run = Path(out) / name
    start = _checkpoint_step(run)
    history = run / "history.csv"
    stale = _mtime(history)  # rows of a killed attempt until train() rewrites the file
    outcome = {}

    def work():
        try:
            outcome["summary"] = train_fn(cfg, run, progress=False)
        except BaseException as e:  # handed to the trial's thread below
            outcome["error"] = e

    tune.report({"event": "start", "step": start, "start_step": start})
    worker = threading.Thread(target=work, name=f"train-{name}", daemon=True)
    worker.start()
    last = start
    while True:
        alive = worker.is_alive()
        if _mtime(history) != stale:
            for row in rundir.read_history(run):
                if row["step"] > last:
                    last = row["step"]
                    tune.report(
                        {"event": "log", "step": last, "start_step": start,
                         **{k: row[k] for k in ("loss", "recon", "kl")}}
                    )  # fmt: skip
        if not alive:
            break
        worker.join(POLL_S)
    error = outcome.get("error")
    if isinstance(error, DETERMINISTIC):
        tune.report({"event": "end", "status": "failed", "error": str(error), "step": last})
        return
    if error is not None:
        raise error  # a crash: Tune retries the trial (FailureConfig), train() resumes
    summary = outcome["summary"]
    tune.report(
        {"event": "end", "step": summary["step"], "start_step": start,
         **{k: summary[k] for k in ("status", "loss", "recon", "kl")}}
    )  # fmt: skip


# ----------------------------------------------------------------------------- the sweep
def _wipe(run: Path) -> None:
    """--fresh: discard a run directory, under its lock (refused while another process trains)."""
    if run.exists():
        with rundir.RunLock(run):
            for p in run.iterdir():
                if p.name != ".lock":
                    shutil.rmtree(p) if p.is_dir() else p.unlink()


def _short(error) -> str:
    text = str(error).strip() or type(error).__name__
    return text if len(text) <= 2000 else text[:2000] + " …"


def ray_sweep(
    base: TrainConfig,
    betas,
    seeds,
    out,
    *,
    train_fn,
    address: str | None = None,
    fresh: bool = False,
    gpus_per_trial: float = 0.0,
    cpus_per_trial: float = 1.0,
    max_failures: int = 3,
    num_cpus: int | None = None,
    storage_path: str | None = None,
    progress: bool = True,
    objectives=None,
) -> dict:
    """Trains every (objective, β, seed) as a Ray Tune trial into ``out/<run_name>``; returns the sweep index.

    ``train_fn(cfg, run_dir, progress=False) -> summary`` trains one run (``training.train``; it
    is pickled by reference, so workers must import its module: the repository is on their
    PYTHONPATH). The index and ``out/sweep.json`` have the structure of the local executor's
    (``sweep.local_sweep``). ``address``:
    join that cluster (``HOST:6379``); None starts a local Ray instance with ``num_cpus`` CPUs.
    Each trial asks for ``cpus_per_trial`` CPUs and ``gpus_per_trial`` GPUs; with 2 or more GPUs,
    ``--distribute auto`` trains it with MirroredStrategy over them. A trial whose worker dies is
    retried ``max_failures`` times (-1: forever) and resumes from its last checkpoint.
    """
    if not cpus_per_trial > 0 or gpus_per_trial < 0:
        raise ClusterError(
            f"--cpus-per-trial {cpus_per_trial:g} must be > 0 and --gpus-per-trial "
            f"{gpus_per_trial:g} must be ≥ 0."
        )
    if max_failures < -1:
        raise ClusterError(f"--max-failures {max_failures}: use -1 (retry forever), 0 or more.")
    # a bad β or objective fails the whole command before anything is written
    base = check_grid(base, betas, seeds, objectives)
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    say = print if progress else (lambda *a, **k: None)

    index = sweep_index(base, betas, seeds, out, objectives)
    todo = [e for e in index["runs"] if e["name"] in grid_names(base, betas, seeds, objectives)]
    todo = [e for e in todo if fresh or e["status"] != "done"]
    if not todo:
        rundir.write_json(out / "sweep.json", index)
        say(f"[ray] {out}: every run is finished; nothing to do.")
        say(format_sweep_table(index))
        return index

    ray, tune = import_ray()
    started = connect(address, num_cpus)
    try:
        where = f"the Ray cluster at {address}" if address else "the local Ray instance"
        check_resources(ray, cpus_per_trial, gpus_per_trial, where)
        if fresh:
            for entry in todo:
                _wipe(out / entry["name"])
        by_name = {e["name"]: e for e in todo}
        for entry in todo:
            entry["status"] = "pending"
        rundir.write_json(out / "sweep.json", index)
        say(
            f"[ray] {len(todo)} trials on {where} ({ray.cluster_resources().get('CPU', 0):g} CPU, "
            f"{ray.cluster_resources().get('GPU', 0):g} GPU), {cpus_per_trial:g} CPU + "
            f"{gpus_per_trial:g} GPU each, up to {max_failures} retries; runs in {out}"
        )

        trainable = tune.with_resources(
            tune.with_parameters(
                _trial,
                runs={e["name"]: (e["beta"], e["seed"], e["objective"]) for e in todo},
                base=asdict(base),
                out=str(out),
                cwd=os.getcwd(),
                cpus=cpus_per_trial,
                train_fn=train_fn,
            ),
            {"cpu": cpus_per_trial, "gpu": gpus_per_trial},
        )
        callback = _progress_callback(tune, index, by_name, out, base.steps, max_failures, say)
        tuner = tune.Tuner(
            trainable,
            param_space={"run": tune.grid_search([e["name"] for e in todo])},
            tune_config=tune.TuneConfig(
                reuse_actors=False,  # a fresh process per trial: clean TF state, thread settings
                trial_name_creator=_trial_name,
                trial_dirname_creator=_trial_name,
            ),
            run_config=tune.RunConfig(
                name=time.strftime("sweep-%Y%m%d-%H%M%S"),
                storage_path=str(
                    Path(storage_path).resolve() if storage_path else out / ".ray_results"
                ),
                failure_config=tune.FailureConfig(max_failures=max_failures),
                verbose=0,
                callbacks=[callback],
            ),
        )
        with _env(RAY_AIR_NEW_OUTPUT="0"):
            results = tuner.fit()  # verbose=0 is silent with the classic output engine
        for result in results:
            entry = by_name[result.config["run"]]
            if result.error is not None:
                entry.update(status="failed", error=_short(result.error))
            else:
                _update(entry, result.metrics)
        for entry in todo:  # the run directory has the last word on "done"
            if (out / entry["name"] / "summary.json").exists():
                entry["status"] = "done"
                entry.pop("error", None)
            elif entry["status"] not in ("failed",):
                entry.update(status="failed", error=entry.get("error", "the trial did not finish"))
        rundir.write_json(out / "sweep.json", index)
    finally:
        if started:
            ray.shutdown()
    say(format_sweep_table(index))
    return index


@contextlib.contextmanager
def _env(**values):
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def _trial_name(trial) -> str:
    return trial.config["run"]


def _update(entry: dict, metrics: dict) -> None:
    if metrics.get("status") == "done":
        entry.pop("error", None)
        entry.update(status="done", **{k: metrics[k] for k in ("loss", "recon", "kl")})
    elif metrics.get("status") == "failed":
        entry.update(status="failed", error=metrics.get("error", "failed"))


def _progress_callback(tune, index, by_name, out, steps, max_failures, say):
    """Driver-side Tune callback: progress lines, and sweep.json kept current."""

    def line(entry, text):
        say(f"[ray] {entry['name']:<20} β={entry['beta']:<7g} seed={entry['seed']:<3} {text}")
        sys.stdout.flush()

    class Progress(tune.Callback):
        def on_trial_start(self, iteration, trials, trial, **info):
            entry = by_name[trial.config["run"]]
            entry["status"] = "running"
            rundir.write_json(out / "sweep.json", index)

        def on_trial_result(self, iteration, trials, trial, result, **info):
            entry = by_name[trial.config["run"]]
            event = result.get("event")
            if event == "start":
                s = result["start_step"]
                line(entry, f"resuming at step {s} (its last checkpoint)" if s else "started")
            elif event == "log":
                line(
                    entry,
                    f"step {result['step']:>6}/{steps}  loss {result['loss']:.2f}  "
                    f"recon {result['recon']:.2f}  kl {result['kl']:.2f}",
                )
            elif event == "end":
                _update(entry, result)
                rundir.write_json(out / "sweep.json", index)
                if result.get("status") == "failed":
                    line(entry, f"failed: {result.get('error')}")
                else:
                    line(entry, f"done at step {result['step']}  loss {result['loss']:.2f}")

        def on_trial_recover(self, iteration, trials, trial, **info):
            entry = by_name[trial.config["run"]]
            line(
                entry,
                f"trial failed ({trial.num_failures}/{max_failures}, {trial.error_file}); "
                "retrying from the run's last checkpoint",
            )

        def on_trial_error(self, iteration, trials, trial, **info):
            entry = by_name[trial.config["run"]]
            entry.update(status="failed", error="the trial failed after all retries")
            rundir.write_json(out / "sweep.json", index)
            line(entry, "failed after all retries; re-run the same command to resume it")

    return Progress()


__all__ = ["ray_sweep", "connect", "check_address", "check_resources", "import_ray", "ClusterError"]
