"""An objective × β × seed sweep: the grid and its check, ``<sweep>/sweep.json``, publishing finished runs, and
the local executor.

Both executors (``local_sweep`` here, ``sweep_ray.ray_sweep`` on Ray Tune) check the grid with
``check_grid``, keep ``sweep.json`` with ``sweep_index`` and receive the function that trains one
run as ``train_fn(cfg, out, fresh=..., progress=...) -> summary dict`` (``training.train``), so
this package never imports the training module. ``training.sweep`` is the public entry point.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from dataclasses import asdict, replace
from pathlib import Path

from . import rundir
from .config import TrainConfig, check_or_write_config
from .hparams import OBJECTIVES

# What a results folder keeps of a finished run: enough to evaluate, plot and resume nothing.
PUBLISHED_FILES = ("config.json", "summary.json", "history.csv", "training.gif", "model.keras")
# ...and, when the run was scored before publishing, its scores (with the scores over training of
# its snapshots, which are not published: metrics.json["snapshots"]) and figures.
SCORED_FILES = ("metrics.json", "figures")


def run_name(beta: float, seed: int, objective: str = "beta") -> str:
    """``beta4_seed0`` for β-VAE (the names of every sweep made before other objectives, kept);
    any other objective leads the name (``tcvae_beta4_seed0``), so a mixed sweep's names differ."""
    prefix = "" if objective == "beta" else f"{objective}_"
    return f"{prefix}beta{beta:g}_seed{seed}"


def grid_objectives(base: TrainConfig, objectives=None) -> list[str]:
    """The objectives of a sweep: ``objectives`` (``--objectives``), else ``base.objective``.
    An unknown one is refused with a message naming --objectives and the choices."""
    if objectives is None:
        return [base.objective]
    objectives = list(objectives)
    unknown = [o for o in objectives if o not in OBJECTIVES]
    if unknown or not objectives:
        raise ValueError(
            f"--objectives {' '.join(map(str, unknown or ['(none)']))}: choose one or more of "
            f"{', '.join(OBJECTIVES)}"
        )
    return list(dict.fromkeys(objectives))  # each once, in the order given


def check_grid(base: TrainConfig, betas, seeds, objectives=None) -> TrainConfig:
    """Validates ``base`` with every (objective, β, seed) of the grid: a bad β or objective fails
    the whole command before anything is written. Returns the validated ``base``."""
    objectives = grid_objectives(base, objectives)
    base = base.validate()
    for objective in objectives:
        for beta in betas:
            for seed in seeds:
                replace(base, objective=objective, beta=float(beta), seed=int(seed)).validate()
    return base


def run_summary(run_dir: Path) -> dict:
    """A run's summary.json (written when it finishes); {} when unfinished or unreadable."""
    try:
        summary = rundir.read_json(run_dir / "summary.json", "run summary")
    except (rundir.RunDirError, OSError, ValueError):
        return {}
    return summary if isinstance(summary, dict) else {}


def finished_at(run_dir: Path, summary: dict | None = None) -> int:
    """The step a run's summary.json (or ``summary``, already read) says it finished at; 0 when
    unfinished or unreadable."""
    summary = run_summary(run_dir) if summary is None else summary
    try:
        return int(summary.get("step") or 0)
    except ValueError:
        return 0


def grid_names(base: TrainConfig, betas, seeds, objectives=None) -> set[str]:
    """The run names of this grid: what a sweep trains. ``sweep.json`` also lists the runs of an
    earlier, wider grid in the same folder; those are kept in the index but never trained here
    (another process may be training them: two sweeps with disjoint grids share one folder)."""
    objs = grid_objectives(base, objectives)
    return {run_name(b, s, o) for o in objs for b in betas for s in seeds}


def sweep_index(base: TrainConfig, betas, seeds, out: Path, objectives=None) -> dict:
    """The sweep.json of this grid: one entry per (objective, β, seed), seed-major (then objective,
    then β), "done" when its run finished at ``base.steps`` or later; entries of an earlier, wider
    grid are kept. ``objectives``: see ``grid_objectives``."""
    old = {}
    if (out / "sweep.json").exists():
        old = {r["name"]: r for r in rundir.read_json(out / "sweep.json", "sweep index")["runs"]}
    runs = []
    for seed in seeds:
        for objective in grid_objectives(base, objectives):
            for beta in betas:
                name = run_name(beta, seed, objective)
                summary = run_summary(out / name)
                done = finished_at(out / name, summary) >= base.steps
                entry = {**old.get(name, {}), "name": name, "beta": float(beta), "seed": int(seed)}
                entry["objective"] = objective
                entry["beta_norm"] = replace(base, beta=float(beta)).beta_norm
                entry["status"] = "done" if done else "pending"
                if done and entry.get("loss") is None:  # finished by another process or command
                    # the numbers the sweep table shows, for a run this process did not train
                    entry.update({k: summary[k] for k in ("loss", "recon", "kl")
                                  if isinstance(summary.get(k), float)})  # fmt: skip
                runs.append(entry)
    names = {r["name"] for r in runs}
    runs += [r for n, r in old.items() if n not in names]  # keep runs of an earlier, wider grid
    return {"preset": base.preset, "base_config": asdict(base), "runs": runs}


def format_sweep_table(index: dict) -> str:
    def num(r, k):
        return f"{r[k]:.2f}" if isinstance(r.get(k), float) else "-"

    w = max(
        [22] + [len(r["name"]) + 2 for r in index["runs"]]
    )  # names of other objectives are longer
    head = f"{'run':<{w}}{'β':>8}{'β_norm':>9}{'seed':>6}  {'status':<8}{'loss':>10}{'recon':>10}{'kl':>8}"
    lines = [head]
    for r in index["runs"]:
        lines.append(
            f"{r['name']:<{w}}{r['beta']:>8g}{r['beta_norm']:>9.4f}{r['seed']:>6}  {r['status']:<8}"
            f"{num(r, 'loss'):>10}{num(r, 'recon'):>10}{num(r, 'kl'):>8}"
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- publishing
def is_published(dest: Path, steps: int) -> bool:
    """``dest`` holds every published file of a run finished at ``steps`` or later (a run
    published at fewer steps is extended: ``--steps`` may grow, as in ``train``)."""
    return all((dest / n).exists() for n in PUBLISHED_FILES) and finished_at(dest) >= steps


def newer_scores(run_dir: Path, dest: Path) -> bool:
    """The run in ``run_dir`` has a metrics.json that its published copy ``dest`` lacks or has
    an older version of (a run scored after it was published, e.g. ``--all-snapshots``)."""
    src, pub = run_dir / "metrics.json", dest / "metrics.json"
    return src.exists() and (not pub.exists() or src.stat().st_mtime > pub.stat().st_mtime)


def publish_run(run_dir, dest, save_model=shutil.copy2) -> Path:
    """Copy a finished run's ``PUBLISHED_FILES`` (and ``SCORED_FILES`` where present) into ``dest`` (a folder named as the run), the
    model with ``save_model(src, dst)`` (``training.save_without_optimizer``: the model without its
    optimizer state; the default copies the file as it is).

    Written to a temporary sibling folder, then renamed; an earlier copy is renamed aside before
    and deleted after, so ``dest`` is never half deleted either. A killed publish leaves at most
    no ``dest`` (the next sweep publishes it again) and hidden ``.<name>.tmp<pid>`` /
    ``.<name>.old<pid>`` folders, which the next publish removes once that pid is dead."""
    run_dir, dest = Path(run_dir), Path(dest)
    missing = [n for n in PUBLISHED_FILES if not (run_dir / n).exists()]
    if missing:
        raise rundir.RunDirError(f"{run_dir}: cannot publish an unfinished run (no {missing}).")
    dest.parent.mkdir(parents=True, exist_ok=True)
    stale = re.compile(rf"^\.{re.escape(dest.name)}\.(tmp|old)(\d+)$")
    for p in dest.parent.iterdir():  # what killed publishers of this run left behind
        m = stale.match(p.name)
        if m and int(m.group(2)) != os.getpid() and not rundir.pid_alive(int(m.group(2))):
            shutil.rmtree(p, ignore_errors=True)
    tmp = dest.with_name(f".{dest.name}.tmp{os.getpid()}")
    aside = dest.with_name(f".{dest.name}.old{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for name in PUBLISHED_FILES:
        if name == "model.keras":
            save_model(run_dir / name, tmp / name)
        else:
            shutil.copy2(run_dir / name, tmp / name)
    for name in SCORED_FILES:
        if (run_dir / name).is_dir():
            shutil.copytree(run_dir / name, tmp / name)
        elif (run_dir / name).exists():
            shutil.copy2(run_dir / name, tmp / name)
    if dest.exists():
        # a rename, not rmtree: a kill half way through rmtree would leave a half run at dest
        shutil.rmtree(aside, ignore_errors=True)
        os.replace(dest, aside)
    os.replace(tmp, dest)
    shutil.rmtree(aside, ignore_errors=True)
    return dest


# ----------------------------------------------------------------------------- local executor
def local_sweep(
    base: TrainConfig,
    betas,
    seeds,
    out,
    *,
    train_fn,
    fresh=False,
    progress=True,
    publish=None,
    save_model=shutil.copy2,
    objectives=None,
) -> dict:
    """Trains every (objective, β, seed) sequentially with ``train_fn`` into ``out/<run_name>``;
    keeps ``out/sweep.json`` current; publishes with ``publish_run(..., save_model)``; see
    ``training.sweep``."""
    check_grid(base, betas, seeds, objectives)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    index = sweep_index(base, betas, seeds, out, objectives)
    grid = grid_names(base, betas, seeds, objectives)
    published = Path(publish) if publish is not None else None
    for entry in index["runs"]:
        if entry["name"] not in grid:  # a run of an earlier, wider grid: listed, not trained
            continue
        if (
            published is not None
            and not fresh
            and is_published(published / entry["name"], base.steps)
        ):
            if newer_scores(out / entry["name"], published / entry["name"]):
                # scored (e.g. its snapshots) after it was published: publish the scores too
                publish_run(out / entry["name"], published / entry["name"], save_model)
            entry["status"] = "done"
            continue
        cfg = replace(base, objective=entry["objective"], beta=entry["beta"], seed=entry["seed"])
        if entry["status"] == "done" and not fresh:
            try:  # adopted only if it is this grid's experiment: the check a resume makes
                check_or_write_config(cfg, out / entry["name"], write=False)
            except (rundir.RunDirError, ValueError) as e:
                entry.update(status="failed", error=f"finished, but not this grid's run: {e}")
                print(f"[sweep] {entry['name']}: {entry['error']}", file=sys.stderr)
                continue
            if published is not None:
                publish_run(out / entry["name"], published / entry["name"], save_model)
            continue
        entry["status"] = "running"
        rundir.write_json(out / "sweep.json", index)
        try:
            summary = train_fn(cfg, out / entry["name"], fresh=fresh, progress=progress)
            entry.update(
                status="done", loss=summary["loss"], recon=summary["recon"], kl=summary["kl"]
            )
            if published is not None:
                publish_run(out / entry["name"], published / entry["name"], save_model)
        except (rundir.NonFiniteLoss, rundir.RunDirError, ValueError) as e:
            entry.update(status="failed", error=str(e))
            print(f"[sweep] {entry['name']} failed: {e}", file=sys.stderr)
        rundir.write_json(out / "sweep.json", index)
    # also when every run was already done (e.g. trained by `training.py train` into this folder):
    # the report and the notebooks find the sweep by this file
    rundir.write_json(out / "sweep.json", index)
    if published is not None:
        rundir.write_json(published / "sweep.json", index)
    if progress:
        print(format_sweep_table(index))
    return index
