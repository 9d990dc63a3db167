"""Train one spatial-broadcast β-VAE, or an objective × β × seed sweep, into resumable run directories.

    python training.py train --preset demo --beta 4 --seed 0 --out runs/b4 [--steps 200 ...]
    python training.py sweep --preset demo --betas 1 4 16 --seeds 0 1 --out runs/sweep
    python training.py sweep --preset demo --objectives beta tcvae dipvae_i --betas 1 4 --out runs/obj

Every ``TrainConfig`` field can be overridden with ``--<field> value``. Re-running the same command
on an existing run directory resumes from its last checkpoint (weights, Adam state, step counter,
sampling RNG and data position); ``--fresh`` starts over. The training loop is ``keras.Model.fit``
with one Keras "epoch" per ``log_every`` steps, so the ``keras.metrics.Mean`` trackers average
exactly one logging interval; its callbacks (sbd_vae/callbacks.py) write history, checkpoints,
frames and the GIF. ``TrainConfig``, the presets and config.json live in sbd_vae/config.py, the
sweep executors in sbd_vae/sweep.py and sbd_vae/sweep_ray.py (both are handed ``train``); this
module re-exports what users call (``__all__``).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import shutil
import sys
import time
from dataclasses import fields
from pathlib import Path

import numpy as np

from sbd_vae import backend, datasets, rundir
from sbd_vae import sweep as sweeps
from sbd_vae.config import (
    PRECISIONS,
    PRESETS,
    TrainConfig,
    check_objective_flags,
    check_or_write_config,
    default_betas,
    load_config,
    preset_config,
)
from sbd_vae.hardware import cpu_flags, gpu_compute_capabilities, machine, resolve_precision
from sbd_vae.hparams import OBJECTIVES
from sbd_vae.sweep import PUBLISHED_FILES, format_sweep_table, grid_names, local_sweep, run_name


# ----------------------------------------------------------------------------- building blocks
def make_strategy(cfg: TrainConfig):
    """The run's data parallelism (``backend.DataParallel``): MirroredStrategy on TensorFlow,
    keras.distribution.DataParallel on JAX; one device unless --distribute asks for more."""
    from sbd_vae.backend import DataParallel

    return DataParallel(cfg.distribute)


def build_model(cfg: TrainConfig, strategy=None, data=None):
    """A compiled BetaVAE for ``cfg`` (under ``strategy``'s scope and ``cfg.precision``). β-TCVAE's
    N is the number of distinct images of ``data`` (``make_dataset(cfg)`` when not given)."""
    import keras

    from variationAutoEncoder import BetaVAE

    if cfg.objective == "tcvae":
        num_points = (data if data is not None else make_dataset(cfg)).num_points
    else:
        num_points = None

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(resolve_precision(cfg.precision))
    try:
        keras.utils.set_random_seed(cfg.seed)  # weight init and the Sampling seed generator
        scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
        with scope:
            model = BetaVAE(**cfg.model_kwargs(num_points))
            model.build()
            # JAX runs the step under jax.jit (eager JAX is op by op); TensorFlow runs it as a
            # tf.function graph, without XLA.
            model.compile(optimizer=keras.optimizers.Adam(cfg.lr), jit_compile=backend.is_jax())
            model.optimizer.build(model.vae_variables())  # FactorVAE's discriminator has its own
    finally:
        keras.config.set_dtype_policy(previous)
    return model


def make_dataset(cfg: TrainConfig):
    """The sampler of the run's data: ``--dataset``'s entry of the registry
    (``sbd_vae.datasets.DATASETS``: shapes → ``dataset.ShapesDataset``, dsprites →
    ``sbd_vae.dsprites.DSpritesDataset``), built from ``cfg``. A missing or corrupt data file,
    or an image size the dataset does not render, fails here with its fix."""
    return datasets.make_dataset(cfg)


def training_stream(data, model, cfg: TrainConfig, start: int):
    """The batches ``fit`` trains on from step ``start``; batch k is a pure function of
    (cfg.seed, k) on each backend, so a resumed run sees the batches an uninterrupted one does.

    The dataset says what it streams (``sbd_vae.datasets.training_stream``). TensorFlow: its
    tf.data stream (``tf_dataset``: ShapesDataset warps in the tf.data threads, in parallel with
    the step). JAX: a dataset with a device warp (ShapesDataset) sends batches of warp parameters
    only (``param_stream``), and ``model.data_warp`` makes the images inside the jitted step, on
    the device; any other (dsprites) sends numpy image batches (``image_stream``). ShapesDataset's
    two streams draw different random numbers, so a run cannot move between backends
    (config.json's backend)."""
    stream, warp = datasets.training_stream(data, cfg.batch_size, cfg.seed, start,
                                            jax=backend.is_jax())  # fmt: skip
    if warp is not None:
        model.data_warp = warp
    return stream


NonFiniteLoss = rundir.NonFiniteLoss


# ----------------------------------------------------------------------------- one run
def train(cfg: TrainConfig, out, fresh=False, progress=True, stop_at=None, deadline=None) -> dict:
    """Trains (or resumes) one run into ``out``; returns the summary dict.

    ``stop_at`` ends this call early at that step (a multiple of ``log_every``), checkpointing
    first, as if the process had been interrupted there; re-running resumes. Tests use it.
    ``deadline`` (a ``time.time()`` value) does the same at the first logging step past that
    time (``callbacks.Checkpoint``; scripts/gpu_study.py's budget): the summary is then
    ``{"status": "interrupted", "step": <the checkpointed step>}``.
    """
    cfg = cfg.validate()
    if stop_at is not None and (stop_at <= 0 or stop_at % cfg.log_every):
        # anything else would train past the last checkpoint and throw those steps away
        raise ValueError(
            f"--stop_at {stop_at} must be a positive multiple of --log_every {cfg.log_every}"
        )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with rundir.RunLock(out):
        # A missing or corrupt data file fails here, before --fresh deletes anything and before
        # config.json is written (which would make the corrected command a "changed config").
        data = make_dataset(cfg)
        if fresh:
            for name in ("checkpoints", "snapshots", "frames", "tb", "history.csv", "training.gif",
                         "model.keras", "summary.json", "metrics.json", "config.json"):  # fmt: skip
                p = out / name
                shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
        cfg = check_or_write_config(cfg, out)  # precision "auto" resolved from here on
        rundir.remove_stale_temps(out)  # temporary files of a killed writer (we hold the lock)

        strategy = make_strategy(cfg)
        replicas = strategy.num_replicas_in_sync
        if cfg.batch_size % replicas:  # Keras splits the global batch evenly across replicas
            raise ValueError(
                f"--batch_size {cfg.batch_size} must be a multiple of the {replicas} replicas "
                "(--distribute); pick a multiple or use --distribute off."
            )
        model = build_model(cfg, strategy, data=data)
        meta = rundir.restore_latest(out, model)
        start = int(meta["step"]) if meta else 0
        finished = start >= cfg.steps and (out / "summary.json").exists()
        if finished and _zip_ok(out / "model.keras"):
            summary = rundir.read_json(out / "summary.json", "run summary")
            if progress:
                print(f"[train] {out}: already finished at step {start}; nothing to do.")
            return summary
        if finished:  # the final checkpoint holds the final weights: rewrite model.keras from it
            print(f"[train] {out}: model.keras is missing or corrupt; rewriting it from the "
                  f"step-{start} checkpoint.", file=sys.stderr)  # fmt: skip
        # Forget anything logged after the checkpoint we resume from: no duplicated steps.
        history = [r for r in rundir.read_history(out) if r["step"] <= start]
        rundir.write_history(out, history)

        end = min(cfg.steps, stop_at) if stop_at is not None else cfg.steps
        ds = training_stream(data, model, cfg, start)
        from sbd_vae import callbacks as cb  # imports keras: kept out of module import time

        fixed = data.images_from_factors(
            data.sample_factors(cfg.frame_images, np.random.RandomState(1234))
        )  # (F, S, S, 1): the same images in every frame of the GIF
        checkpoint = cb.Checkpoint(out, cfg, start, end, deadline)
        callbacks = [
            cb.NaNGuard(out, cfg),
            cb.History(out, cfg, start, history),
            cb.Frames(out, cfg, fixed, start),
            checkpoint,
            cb.Snapshot(out, cfg),
        ]
        if progress:
            callbacks.append(cb.Progress(cfg, start, end))
        t0 = time.time()
        if end > start:
            with strategy.scope():  # JAX: the data-parallel layout of the batches
                model.fit(
                    ds,
                    initial_epoch=start // cfg.log_every,
                    epochs=end // cfg.log_every,
                    steps_per_epoch=cfg.log_every,
                    callbacks=callbacks,
                    shuffle=False,  # the stream is already a pure function of (seed, step)
                    verbose=0,
                )
        elapsed = time.time() - t0
        if checkpoint.stopped_at is not None:  # the deadline cut this call at a checkpoint
            return {"status": "interrupted", "step": checkpoint.stopped_at}
        if end < cfg.steps:
            return {"status": "interrupted", "step": end}

        model_path = out / "model.keras"
        with rundir.atomic_path(model_path, suffix=".keras") as tmp:
            model.save(tmp)
        history = rundir.read_history(out)
        last = history[-1] if history else {}
        active = active_units_of(model, data)
        summary = {
            "status": "done",
            "step": cfg.steps,
            "beta": cfg.beta,
            "beta_norm": cfg.beta_norm,
            "seed": cfg.seed,
            "loss": last.get("loss"),
            "recon": last.get("recon"),
            "kl": last.get("kl"),
            **active,
            "img_per_s": (end - start) * cfg.batch_size / elapsed if end > start else None,
            "train_seconds": elapsed,
            "devices": replicas,
            # the data this run saw (render hash included): latentSpace.check_sampler compares it
            "data_config": datasets.data_config(data),
            "machine": machine(),
            **backend.versions(),  # backend, keras and the backend's version
        }
        if end <= start and (out / "summary.json").exists():  # only model.keras was rewritten
            with contextlib.suppress(rundir.RunDirError):
                old = rundir.read_json(out / "summary.json", "run summary")
                summary.update({k: old[k] for k in ("img_per_s", "train_seconds") if k in old})
        rundir.write_json(out / "summary.json", summary)
        if progress:
            print(
                f"[train] done {out}: β={cfg.beta:g} seed={cfg.seed} step={cfg.steps} "
                f"loss={summary['loss']:.2f} recon={summary['recon']:.2f} kl={summary['kl']:.2f} "
                f"active units={summary['active_units']}/{cfg.latent_dim} (Var_x E[z|x] > "
                f"{summary['active_threshold']:g}) "
                f"{summary['img_per_s'] or 0:.0f} img/s in {elapsed:.0f}s"
            )
        return summary


# The images on which a finished run's active units are counted: fixed, so runs compare.
ACTIVE_IMAGES, ACTIVE_SEED = 1000, 2016


def active_units_of(model, data) -> dict:
    """Active units of a trained model, the repo's one definition (encoding.active_units: Burda
    et al. 2016, the variance over images of the posterior mean > encoding.ACTIVE_VAR), on
    ``ACTIVE_IMAGES`` images drawn with their own RNG (training's RNG state is not touched)."""
    from sbd_vae import encoding

    factors = data.sample_factors(ACTIVE_IMAGES, np.random.RandomState(ACTIVE_SEED))
    mean, _ = encoding.encode(model, data.images_from_factors(factors))  # (N, D) each
    return {
        "active_units": encoding.active_units(mean),
        "active_threshold": encoding.ACTIVE_VAR,
        "active_definition": "Burda et al. 2016: Var over images of the posterior mean > "
        f"active_threshold, on {ACTIVE_IMAGES} images (sample_factors, RandomState({ACTIVE_SEED}))",
    }


def _zip_ok(path: Path) -> bool:
    """model.keras exists and every member's CRC checks out (a .keras file is a zip)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            return zf.testzip() is None
    except Exception:  # noqa: BLE001  missing, truncated, not a zip: all "not ok"
        return False


# ----------------------------------------------------------------------------- sweeps
def sweep(
    base: TrainConfig, betas, seeds, out, fresh=False, progress=True, publish=None, objectives=None
) -> dict:
    """Trains every (objective, β, seed) sequentially into ``out/<run_name>``; keeps
    ``out/sweep.json`` current. ``objectives`` (``--objectives``): default ``[base.objective]``;
    run names carry the objective unless it is "beta" (``sbd_vae.sweep.run_name``).

    Runs go seed-major (every objective and β of the first seed, then the next seed), so a sweep
    stopped part way has whole β grids. A re-run skips finished runs (their summary.json exists) and resumes
    unfinished ones. A run that fails is recorded with its error and the sweep goes on.

    ``publish``: a results folder (e.g. ``results/study``). Each run, once finished, is copied
    there without its checkpoints, frames or TensorBoard logs (``publish_run``), and runs already
    published are skipped, so a study can be run in parts on different machines, each part
    committed as it finishes. (The executor is ``sbd_vae.sweep.local_sweep``; ``--executor ray``
    runs the same grid with ``sbd_vae.sweep_ray.ray_sweep``.)
    """
    return local_sweep(base, betas, seeds, out, train_fn=train, fresh=fresh, progress=progress,
                       publish=publish, save_model=save_without_optimizer,
                       objectives=objectives)  # fmt: skip


def save_without_optimizer(src, dst) -> None:
    """Re-save ``src`` (a model.keras) as ``dst`` with its weights only: the Adam moments are two
    thirds of the file and only resuming needs them (the checkpoints keep them)."""
    import keras

    import variationAutoEncoder  # noqa: F401  registers BetaVAE & co. for load_model

    keras.models.load_model(src, compile=False).save(dst)


def publish_run(run_dir, dest) -> Path:
    """Copy a finished run's published files into ``dest``, the model without its optimizer
    state (``sbd_vae.sweep.publish_run`` with ``save_without_optimizer``)."""
    return sweeps.publish_run(run_dir, dest, save_model=save_without_optimizer)


# ----------------------------------------------------------------------------- CLI
def _shown(value) -> str:
    """A default as it would be typed on the command line."""
    if isinstance(value, tuple | list):
        return " ".join(_shown(v) for v in value) if value else "none"
    return f"{value:g}" if isinstance(value, float) else str(value)


def config_help(name: str, default_preset: str = "paper") -> str:
    """The help of ``--<name>``: the field's own help (``TrainConfig``'s metadata), then its value
    under the default preset and every preset that changes it (and TrainConfig's default where
    that differs)."""
    f = next(f for f in fields(TrainConfig) if f.name == name)
    base = getattr(PRESETS[default_preset], name)
    by_value: dict[str, list[str]] = {}
    for preset, cfg in PRESETS.items():
        if getattr(cfg, name) != base:
            by_value.setdefault(_shown(getattr(cfg, name)), []).append(preset)
    where = [f"default {_shown(base)}"]
    if f.default != base:
        where[0] += f" (--preset {default_preset}; TrainConfig's: {_shown(f.default)})"
    where += [f"--preset {'/'.join(presets)}: {v}" for v, presets in by_value.items()]
    return f"{f.metadata['help']} [{'; '.join(where)}]".replace("%", "%%")


def _add_config_args(p: argparse.ArgumentParser) -> None:
    for f in fields(TrainConfig):
        if f.name in ("preset",):
            continue
        default, helps = f.default, config_help(f.name)
        if f.name == "snapshot_steps":
            p.add_argument(
                f"--{f.name}", type=int, nargs="+", default=None, metavar="STEP", help=helps
            )
        elif isinstance(default, tuple):
            p.add_argument(
                f"--{f.name}", type=float, nargs=2, default=None, metavar=("LO", "HI"), help=helps
            )
        else:
            p.add_argument(f"--{f.name}", type=type(default), default=None, help=helps)


def config_from_args(args) -> TrainConfig:
    overrides = {
        f.name: (tuple(v) if isinstance(v, list) else v)
        for f in fields(TrainConfig)
        if f.name != "preset" and (v := getattr(args, f.name, None)) is not None
    }
    return preset_config(args.preset, **overrides)


def build_parser() -> argparse.ArgumentParser:
    """The CLI's parser (``main`` parses with it; tests read every flag's help from it)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(
        dest="command", required=True, help="train | sweep (each has --help)"
    )
    p_train = sub.add_parser(
        "train", help="train or resume one run", description="Train or resume one run into --out."
    )
    p_sweep = sub.add_parser(
        "sweep",
        help="train an objective × β × seed grid",
        description="Train every (objective, β, seed) of a grid into --out/<run name>; "
        "finished runs are skipped, unfinished ones resumed.",
    )
    presets = ", ".join(f"{k} ({v.image_size}², {v.steps} steps)" for k, v in PRESETS.items())
    for p, out, fresh in (
        (
            p_train,
            "the run directory (an existing run is resumed from its last checkpoint)",
            "delete the run in --out (checkpoints, history, frames, model) and start over",
        ),
        (
            p_sweep,
            "the sweep directory: one run directory per (objective, β, seed) + sweep.json",
            "retrain every run of the grid from step 0, finished ones too",
        ),
    ):
        p.add_argument(
            "--preset",
            default="paper",
            help=f"the values the flags below start from: {presets} [default paper]",
        )
        p.add_argument("--out", required=True, help=f"{out} [required]")
        p.add_argument("--fresh", action="store_true", help=f"{fresh} [off]")
        p.add_argument(
            "--quiet", action="store_true", help="no progress bars or summary lines [off]"
        )
        _add_config_args(p)
    p_train.add_argument(
        "--stop_at",
        type=int,
        default=None,
        metavar="STEP",
        help="stop at this step, checkpointed (a multiple of --log_every); re-running resumes "
        "[default: run to --steps]",
    )
    p_sweep.add_argument(
        "--betas",
        type=float,
        nargs="+",
        default=None,
        metavar="BETA",
        help="the β grid [default: the paper grid "
        + " ".join(f"{b:g}" for b in default_betas(128))
        + " at 128², rescaled to --image_size so β·latents/pixels matches]",
    )
    p_sweep.add_argument(
        "--seeds", type=int, nargs="+", default=[0], metavar="SEED", help="seeds per β [default 0]"
    )
    p_sweep.add_argument(
        "--objectives", nargs="+", default=None, metavar="OBJECTIVE",
        help=f"train each β with each of these, from {' | '.join(OBJECTIVES)} "
        "[default: --objective]",
    )  # fmt: skip
    p_sweep.add_argument(
        "--publish",
        default=None,
        metavar="DIR",
        help="results folder: copy each finished run there without checkpoints, skip runs "
        "already in it (--executor local only) [default: none]",
    )
    p_sweep.add_argument(
        "--executor",
        default="local",
        choices=("local", "ray"),
        help="local: runs one after another in this process | ray: Ray Tune trials [default local]",
    )
    p_sweep.add_argument(
        "--address",
        default=None,
        help="Ray cluster address, e.g. ray://HOST:10001 (--executor ray) [default: a local Ray]",
    )
    p_sweep.add_argument(
        "--gpus-per-trial",
        dest="gpus_per_trial",
        type=float,
        default=0.0,
        help="GPUs per Ray trial, fractions allowed (--executor ray) [default 0]",
    )
    p_sweep.add_argument(
        "--cpus-per-trial",
        dest="cpus_per_trial",
        type=float,
        default=1.0,
        help="CPU cores per Ray trial (--executor ray) [default 1]",
    )
    p_sweep.add_argument(
        "--max-failures",
        dest="max_failures",
        type=int,
        default=3,
        help="retries of a failed Ray trial, each resuming its checkpoint; -1: forever "
        "(--executor ray) [default 3]",
    )
    return parser


def check_cli_misuse(args, cfg: TrainConfig) -> None:
    """Flags that would be silently ignored, refused before anything is written: an objective's
    own flag given to another objective (``config.check_objective_flags``), and ``--distribute
    mirrored`` where only one device is visible (``make_strategy`` would train on that one)."""
    given = {f.name for f in fields(TrainConfig) if getattr(args, f.name, None) is not None}
    objectives = getattr(args, "objectives", None) or [cfg.objective]
    check_objective_flags(given, objectives)
    if cfg.distribute == "mirrored" and make_strategy(cfg).num_replicas_in_sync == 1:
        raise ValueError(
            "--distribute mirrored: only one device is visible here, so there is nothing to "
            "mirror; drop it (--distribute auto uses every GPU when there are several)"
        )


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        backend.check_requested()
        cfg = config_from_args(args)
        check_cli_misuse(args, cfg)
        if args.command == "train":
            summary = train(
                cfg, args.out, fresh=args.fresh, progress=not args.quiet, stop_at=args.stop_at
            )
            return 0 if summary["status"] in ("done", "interrupted") else 1
        betas = args.betas or default_betas(cfg.image_size)
        if args.executor == "ray":
            from sbd_vae.sweep_ray import ray_sweep

            # Ray pickles train_fn by reference to its module: run as a script, this module is
            # __main__, which workers cannot import, so hand over the importable `training.train`.
            train_fn = (
                train if __name__ != "__main__" else importlib.import_module("training").train
            )
            index = ray_sweep(
                cfg, betas, args.seeds, args.out, train_fn=train_fn, address=args.address, fresh=args.fresh,
                gpus_per_trial=args.gpus_per_trial, cpus_per_trial=args.cpus_per_trial,
                max_failures=args.max_failures, progress=not args.quiet, objectives=args.objectives,
            )  # fmt: skip
        else:
            index = sweep(
                cfg, betas, args.seeds, args.out, fresh=args.fresh, progress=not args.quiet,
                publish=args.publish, objectives=args.objectives,
            )  # fmt: skip
        # the exit status is this grid's: sweep.json may also list another grid's runs
        grid = grid_names(cfg, betas, args.seeds, args.objectives)
        return 0 if all(r["status"] == "done" for r in index["runs"] if r["name"] in grid) else 1
    except (ValueError, rundir.RunDirError, NonFiniteLoss, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

__all__ = [
    "TrainConfig", "PRESETS", "PRECISIONS", "preset_config", "default_betas", "load_config",
    "build_model", "make_dataset", "train", "sweep", "run_name", "publish_run", "PUBLISHED_FILES",
    "format_sweep_table", "NonFiniteLoss", "resolve_precision", "cpu_flags",
    "gpu_compute_capabilities", "machine", "main",
]  # fmt: skip
