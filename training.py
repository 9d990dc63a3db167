"""Train one spatial-broadcast β-VAE, or a β × seed sweep, into resumable run directories.

    python training.py train --preset demo --beta 4 --seed 0 --out runs/b4 [--steps 200 ...]
    python training.py sweep --preset demo --betas 1 4 16 --seeds 0 1 --out runs/sweep

Every ``TrainConfig`` field can be overridden with ``--<field> value``. Re-running the same command
on an existing run directory resumes from its last checkpoint (weights, Adam state, step counter,
sampling RNG and data position); ``--fresh`` starts over. The training loop is ``keras.Model.fit``
with one Keras "epoch" per ``log_every`` steps, so the ``keras.metrics.Mean`` trackers average
exactly one logging interval; the callbacks below write history, checkpoints, frames and the GIF.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np

import rundir

# β grid of the paper preset (128² Bernoulli pixels): a log grid from 1 to 256 plus the seed's β=102.
PAPER_BETAS = (1, 4, 16, 64, 102, 256)
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
# β grid of the study preset (32²): β_norm 0.01-0.16, around the seed's β=102 at 128² (β_norm 0.062).
STUDY_BETAS = (1, 2, 4, 8, 16)
STUDY_SEEDS = (0, 1, 2)


@dataclass
class TrainConfig:
    """Every hyperparameter of a run; written to ``<run>/config.json`` before step 1."""

    # data (dataset.ShapesDataset)
    data_path: str = "data/shapes.npz"
    image_size: int = 128
    scale_range: tuple[float, float] = (0.35, 0.7)
    pos_range: tuple[float, float] = (-0.2, 0.2)
    # model (variationAutoEncoder.BetaVAE)
    latent_dim: int = 10
    decoder: str = "sbd"  # "sbd" | "deconv"
    channels: int = 64
    hidden: int = 256
    likelihood: str = "bernoulli"  # "bernoulli" | "gaussian"
    gaussian_sigma: float = 0.1
    # objective: Higgins β-VAE, or Burgess capacity γ·|KL − C(t)|
    objective: str = "beta"  # "beta" | "capacity"
    beta: float = 1.0
    gamma: float = 1000.0
    capacity_max: float = 25.0
    capacity_steps: int = 100000
    # optimisation
    lr: float = 3e-4
    batch_size: int = 16
    steps: int = 100000
    seed: int = 0
    # "auto" (bf16 where the hardware runs it fast: resolve_precision) | "float32" |
    # "mixed_bfloat16" | "mixed_float16" (GPU). config.json records the resolved policy.
    precision: str = "auto"
    distribute: str = "auto"  # "auto": MirroredStrategy if >1 GPU | "off" | "mirrored"
    # logging, checkpoints, frames (steps)
    log_every: int = 100
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    frame_every: int = 1000
    frame_images: int = 8
    preset: str = "paper"

    @property
    def beta_norm(self) -> float:
        """β · M / N (Higgins et al. 2017), as variationAutoEncoder.beta_norm; keras-free here."""
        return self.beta * self.latent_dim / self.image_size**2

    def validate(self, stored: bool = False) -> TrainConfig:
        """Checks every field; ``stored=True`` (a config.json read back) skips the checks that
        only guard the start of a new run, so runs made before a check was added still load."""
        from variationAutoEncoder import DECODERS, LIKELIHOODS, OBJECTIVES, check_image_size

        check_image_size(self.image_size)
        problems = []
        if not (self.beta >= 0 and math.isfinite(self.beta)):
            problems.append(f"--beta {self.beta}: β must be a finite number ≥ 0")
        for name, allowed in [
            ("decoder", DECODERS),
            ("likelihood", LIKELIHOODS),
            ("objective", OBJECTIVES),
            ("precision", PRECISIONS),
            ("distribute", ("auto", "off", "mirrored")),
        ]:
            if getattr(self, name) not in allowed:
                problems.append(f"--{name} {getattr(self, name)!r}: choose one of {allowed}")
        for name in (
            "steps",
            "batch_size",
            "latent_dim",
            "channels",
            "log_every",
            "keep_checkpoints",
        ):
            if getattr(self, name) <= 0:
                problems.append(f"--{name} {getattr(self, name)}: must be > 0")
        if not self.lr > 0:
            problems.append(f"--lr {self.lr}: must be > 0")
        if self.steps % self.log_every:
            problems.append(
                f"--steps {self.steps} must be a multiple of --log_every {self.log_every}"
            )
        for name in ("checkpoint_every", "frame_every"):
            if getattr(self, name) <= 0 or getattr(self, name) % self.log_every:
                problems.append(
                    f"--{name} {getattr(self, name)} must be a positive multiple of --log_every {self.log_every}"
                )
        if not stored and self.objective == "capacity" and self.capacity_steps > self.steps:
            # C(t) would still be rising when the run ends: the "capacity" asked for is never reached
            reached = self.capacity_max * self.steps / self.capacity_steps
            problems.append(
                f"--capacity_steps {self.capacity_steps} > --steps {self.steps}: the capacity ramp "
                f"would end at C = {reached:.3g} nats instead of --capacity_max "
                f"{self.capacity_max:g}; pass --capacity_steps {max(self.steps // 2, 1)} (the ramp "
                "ends half way) or at most --steps"
            )
        if problems:
            raise ValueError("invalid training config:\n  " + "\n  ".join(problems))
        return self


PRESETS = {
    # Watters et al. 2019 defaults at 128²: 10 latents, 64-channel convs, Adam 3e-4.
    # bf16 is 2.98× faster than float32 at an equal loss on an AMX CPU but 10× slower on an
    # AVX2-only one (BENCHMARKS.md, DESIGN.md): "auto" picks it only where it is fast.
    # Every preset's capacity ramp (--objective capacity) ends half way through the run.
    "paper": TrainConfig(precision="auto", capacity_steps=50000),
    # make demo: three β at 32² in ≈ 3 min each on 2 CPU cores; reconstructions follow position/size.
    "demo": TrainConfig(
        image_size=32, channels=32, batch_size=32, steps=2000, log_every=50,
        checkpoint_every=250, frame_every=100, capacity_steps=1000, precision="float32",
        preset="demo",
    ),
    # The converged β study (results/study/README.md has the evidence for each setting): 32² is
    # what a 2-core CPU affords; objects large enough (scale 0.6-0.9) that shape and pose are
    # worth their nats; 8 000 steps of 32: in 4 000-step runs a latent could still switch on after
    # step 3 000 (β=4; results/study/README.md has the evidence).
    "study": TrainConfig(
        image_size=32, channels=32, batch_size=32, steps=8000, lr=5e-4, scale_range=(0.6, 0.9),
        pos_range=(-0.1, 0.1), log_every=50, checkpoint_every=500, frame_every=250,
        preset="study", precision="float32",
    ),
    # CI: seconds per run.
    "test": TrainConfig(
        image_size=32, latent_dim=6, channels=16, hidden=64, batch_size=16, steps=100, log_every=10,
        checkpoint_every=20, frame_every=20, keep_checkpoints=2, frame_images=4, capacity_steps=50,
        precision="float32", preset="test",
    ),
}  # fmt: skip


def preset_config(name: str, **overrides) -> TrainConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)} (--preset).")
    return replace(PRESETS[name], preset=name, **overrides).validate()


def default_betas(image_size: int) -> list[float]:
    """The paper grid rescaled so β_norm = β·M/N matches the 128² grid at another image size."""
    k = (image_size / 128.0) ** 2
    return sorted({round(max(b * k, 0.25), 3) for b in PAPER_BETAS} | {1.0})


# ----------------------------------------------------------------------------- building blocks
def cpu_flags() -> set[str]:
    """The CPU feature flags of /proc/cpuinfo (``avx2``, ``amx_bf16``, …); empty off Linux."""
    if not sys.platform.startswith("linux"):
        return set()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):  # x86: one "flags : ..." line per core, all alike
            return set(line.partition(":")[2].split())
    return set()


def machine() -> str:
    """The machine in words, for every published figure: CPU model, core count and the vector
    units that decide speed here (AMX / AVX-512 / AVX2-only), e.g.
    "Intel(R) Xeon(R) Processor, 2 cores, AMX-BF16 + AVX-512"."""
    import os
    import platform

    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    flags = cpu_flags()
    units = ("AMX-BF16 + AVX-512" if "amx_bf16" in flags else "AVX-512" if "avx512f" in flags
             else "AVX2-only" if "avx2" in flags else "no AVX2")  # fmt: skip
    return f"{model}, {os.cpu_count()} cores, {units}"


def gpu_compute_capabilities() -> list[tuple[int, int]]:
    """(major, minor) CUDA compute capability of each GPU TensorFlow sees; [] on a CPU build."""
    import tensorflow as tf

    caps = []
    for gpu in tf.config.list_physical_devices("GPU"):
        cc = tf.config.experimental.get_device_details(gpu).get("compute_capability")
        caps.append(tuple(cc) if cc else (0, 0))
    return caps


def resolve_precision(requested: str) -> str:
    """The Keras dtype policy for ``--precision requested``: itself, unless it is "auto".

    "auto" is "mixed_bfloat16" only where bf16 is fast: GPUs with bf16 tensor cores (compute
    capability ≥ 8.0, every visible GPU) or, without a GPU, a CPU with AMX-BF16 (2.98× float32).
    Elsewhere "float32": an AVX2-only CPU runs bf16 10× slower than float32 (DESIGN.md), and an
    avx512_bf16 CPU without AMX is not measured. Tests replace ``cpu_flags`` and
    ``gpu_compute_capabilities`` (looked up at call time) to mock the hardware.
    """
    if requested != "auto":
        return requested
    caps = gpu_compute_capabilities()
    if caps:
        return "mixed_bfloat16" if min(caps) >= (8, 0) else "float32"
    return "mixed_bfloat16" if "amx_bf16" in cpu_flags() else "float32"


def make_strategy(cfg: TrainConfig):
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    if cfg.distribute == "mirrored" or (cfg.distribute == "auto" and len(gpus) > 1):
        # On CPU-only machines MirroredStrategy() has one replica: the CPU.
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def build_model(cfg: TrainConfig, strategy=None):
    """A compiled BetaVAE for ``cfg`` (under ``strategy``'s scope and ``cfg.precision``)."""
    import keras

    from variationAutoEncoder import BetaVAE

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(resolve_precision(cfg.precision))
    try:
        keras.utils.set_random_seed(cfg.seed)  # weight init and the Sampling seed generator
        scope = strategy.scope() if strategy is not None else _null()
        with scope:
            model = BetaVAE(
                image_size=cfg.image_size, latent_dim=cfg.latent_dim, decoder=cfg.decoder,
                channels=cfg.channels, hidden=cfg.hidden, beta=cfg.beta, objective=cfg.objective,
                gamma=cfg.gamma, capacity_max=cfg.capacity_max, capacity_steps=cfg.capacity_steps,
                likelihood=cfg.likelihood, gaussian_sigma=cfg.gaussian_sigma, seed=cfg.seed,
            )  # fmt: skip
            model.build()
            model.compile(optimizer=keras.optimizers.Adam(cfg.lr), jit_compile=False)
            model.optimizer.build(model.trainable_variables)
    finally:
        keras.config.set_dtype_policy(previous)
    return model


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def make_dataset(cfg: TrainConfig):
    from dataset import ShapesDataset

    return ShapesDataset(
        cfg.data_path, image_size=cfg.image_size, scale_range=tuple(cfg.scale_range),
        pos_range=tuple(cfg.pos_range),
    )  # fmt: skip


NonFiniteLoss = rundir.NonFiniteLoss


# ----------------------------------------------------------------------------- one run
def train(cfg: TrainConfig, out, fresh=False, progress=True, stop_at=None) -> dict:
    """Trains (or resumes) one run into ``out``; returns the summary dict.

    ``stop_at`` ends this call early at that step (a multiple of ``log_every``), checkpointing
    first, as if the process had been interrupted there; re-running resumes. Tests use it.
    """
    import keras
    import tensorflow as tf

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
            for name in ("checkpoints", "frames", "tb", "history.csv", "training.gif",
                         "model.keras", "summary.json", "metrics.json", "config.json"):  # fmt: skip
                p = out / name
                shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
        cfg = _check_or_write_config(cfg, out)  # precision "auto" resolved from here on
        rundir.remove_stale_temps(out)  # temporary files of a killed writer (we hold the lock)

        strategy = make_strategy(cfg)
        replicas = strategy.num_replicas_in_sync
        if cfg.batch_size % replicas:  # Keras splits the global batch evenly across replicas
            raise ValueError(
                f"--batch_size {cfg.batch_size} must be a multiple of the {replicas} replicas "
                "(--distribute); pick a multiple or use --distribute off."
            )
        model = build_model(cfg, strategy)
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
        ds = data.tf_dataset(cfg.batch_size, seed=cfg.seed, start=start)
        import callbacks as cb  # imports keras: kept out of module import time

        fixed = data.images_from_factors(
            data.sample_factors(cfg.frame_images, np.random.RandomState(1234))
        )  # (F, S, S, 1): the same images in every frame of the GIF
        callbacks = [
            cb.NaNGuard(out, cfg),
            cb.History(out, cfg, start, history),
            cb.Frames(out, cfg, fixed, start),
            cb.Checkpoint(out, cfg, start, end),
        ]
        if progress:
            callbacks.append(cb.Progress(cfg, start, end))
        t0 = time.time()
        if end > start:
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
            "data_config": data.config(),
            "machine": machine(),
            "tf": tf.__version__,
            "keras": keras.__version__,
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
    import encoding

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


def _check_or_write_config(cfg: TrainConfig, out: Path) -> TrainConfig:
    """config.json is written before step 1; a resume with another config is refused.

    ``--precision auto`` is resolved first, so config.json records the policy the run uses. A
    resume with "auto" keeps the run's recorded policy: "auto" asks for no particular one, and
    switching policy half way would change the experiment. Returns the resolved config."""
    path = out / "config.json"
    old = None
    if path.exists():
        old = rundir.read_json(path, "run config", "fix it, or pass --fresh to start the run over")
        if not isinstance(old, dict):
            raise rundir.RunDirError(
                f"{path}: run config is not a JSON object; fix it, or pass --fresh to start over."
            )
    if cfg.precision == "auto":
        here = resolve_precision("auto")
        stored = old.get("precision") if old is not None else None
        if stored in PRECISIONS and stored != "auto":
            if stored != here:
                print(f"[train] {out}: resuming with the run's --precision {stored} ('auto' "
                      f"would pick {here} on this machine).", file=sys.stderr)  # fmt: skip
            here = stored
        cfg = replace(cfg, precision=here)
    new = asdict(cfg)
    if old is not None:
        # Extending a run (a larger --steps) is a resume, not a new experiment; the capacity
        # schedule does not enter a β-VAE's loss (so a preset's new ramp does not block its runs).
        ignore = ["steps"]
        if old.get("objective") == new["objective"] == "beta":
            ignore += ["gamma", "capacity_max", "capacity_steps"]
        diff = rundir.config_diff(old, new, ignore=tuple(ignore))
        if diff:
            raise rundir.RunDirError(
                f"{out} was started with another config:\n"
                + "\n".join(diff)
                + f"\nRe-run with the original values, use another --out, or pass --fresh to discard {out}."
            )
    rundir.write_json(path, new)
    return cfg


def load_config(run_dir) -> TrainConfig:
    """The TrainConfig stored in ``<run_dir>/config.json``."""
    path = Path(run_dir) / "config.json"
    raw = rundir.read_json(path, "run config", "re-run training.py train")
    if not isinstance(raw, dict):
        raise rundir.RunDirError(
            f"{path}: run config is not a JSON object; re-run training.py train."
        )
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise rundir.RunDirError(f"{run_dir}/config.json has unknown fields {unknown}.")
    try:
        for key in ("scale_range", "pos_range"):
            if key in raw:
                raw[key] = tuple(raw[key])
        return TrainConfig(**raw).validate(stored=True)
    except (TypeError, ValueError) as e:  # a hand-edited or damaged value
        raise rundir.RunDirError(f"{path}: run config is invalid ({e}).") from None


# ----------------------------------------------------------------------------- sweeps
def run_name(beta: float, seed: int) -> str:
    return f"beta{beta:g}_seed{seed}"


def sweep(base: TrainConfig, betas, seeds, out, fresh=False, progress=True, publish=None) -> dict:
    """Trains every (β, seed) sequentially into ``out/<run_name>``; keeps ``out/sweep.json`` current.

    Runs go seed-major (every β of the first seed, then the next seed), so a sweep stopped part
    way has whole β grids. A re-run skips finished runs (their summary.json exists) and resumes
    unfinished ones. A run that fails is recorded with its error and the sweep goes on.

    ``publish``: a results folder (e.g. ``results/study``). Each run, once finished, is copied
    there without its checkpoints, frames or TensorBoard logs (``publish_run``), and runs already
    published are skipped, so a study can be run in parts on different machines, each part
    committed as it finishes.
    """
    for beta in betas:  # a bad β fails the whole command before anything is written
        for seed in seeds:
            replace(base, beta=float(beta), seed=int(seed)).validate()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    index = _sweep_index(base, betas, seeds, out)
    published = Path(publish) if publish is not None else None
    for entry in index["runs"]:
        if (
            published is not None
            and not fresh
            and _is_published(published / entry["name"], base.steps)
        ):
            entry["status"] = "done"
            continue
        if entry["status"] == "done" and not fresh:
            if published is not None:
                publish_run(out / entry["name"], published / entry["name"])
            continue
        entry["status"] = "running"
        rundir.write_json(out / "sweep.json", index)
        cfg = replace(base, beta=entry["beta"], seed=entry["seed"])
        try:
            summary = train(cfg, out / entry["name"], fresh=fresh, progress=progress)
            entry.update(
                status="done", loss=summary["loss"], recon=summary["recon"], kl=summary["kl"]
            )
            if published is not None:
                publish_run(out / entry["name"], published / entry["name"])
        except (NonFiniteLoss, rundir.RunDirError, ValueError) as e:
            entry.update(status="failed", error=str(e))
            print(f"[sweep] {entry['name']} failed: {e}", file=sys.stderr)
        rundir.write_json(out / "sweep.json", index)
    if published is not None:
        rundir.write_json(published / "sweep.json", index)
    if progress:
        print(format_sweep_table(index))
    return index


# What a results folder keeps of a finished run: enough to evaluate, plot and resume nothing.
PUBLISHED_FILES = ("config.json", "summary.json", "history.csv", "training.gif", "model.keras")


def _finished_at(run_dir: Path) -> int:
    """The step a run's summary.json says it finished at; 0 when unfinished or unreadable."""
    try:
        return int(rundir.read_json(run_dir / "summary.json", "run summary").get("step") or 0)
    except (rundir.RunDirError, OSError, ValueError, AttributeError):
        return 0


def _is_published(dest: Path, steps: int) -> bool:
    """``dest`` holds every published file of a run finished at ``steps`` or later (a run
    published at fewer steps is extended: ``--steps`` may grow, as in ``train``)."""
    return all((dest / n).exists() for n in PUBLISHED_FILES) and _finished_at(dest) >= steps


def save_without_optimizer(src, dst) -> None:
    """Re-save ``src`` (a model.keras) as ``dst`` with its weights only: the Adam moments are two
    thirds of the file and only resuming needs them (the checkpoints keep them)."""
    import keras

    import variationAutoEncoder  # noqa: F401  registers BetaVAE & co. for load_model

    keras.models.load_model(src, compile=False).save(dst)


def publish_run(run_dir, dest) -> Path:
    """Copy a finished run's ``PUBLISHED_FILES`` into ``dest`` (a folder named as the run), the
    model without its optimizer state (``save_without_optimizer``).

    Written to a temporary sibling folder, then renamed: a killed copy leaves no half run."""
    run_dir, dest = Path(run_dir), Path(dest)
    missing = [n for n in PUBLISHED_FILES if not (run_dir / n).exists()]
    if missing:
        raise rundir.RunDirError(f"{run_dir}: cannot publish an unfinished run (no {missing}).")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for name in PUBLISHED_FILES:
        if name == "model.keras":
            save_without_optimizer(run_dir / name, tmp / name)
        else:
            shutil.copy2(run_dir / name, tmp / name)
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(tmp, dest)
    return dest


def _sweep_index(base: TrainConfig, betas, seeds, out: Path) -> dict:
    old = {}
    if (out / "sweep.json").exists():
        old = {r["name"]: r for r in rundir.read_json(out / "sweep.json", "sweep index")["runs"]}
    runs = []
    for seed in seeds:
        for beta in betas:
            name = run_name(beta, seed)
            done = _finished_at(out / name) >= base.steps
            entry = {**old.get(name, {}), "name": name, "beta": float(beta), "seed": int(seed)}
            entry["beta_norm"] = replace(base, beta=float(beta)).beta_norm
            entry["status"] = "done" if done else "pending"
            runs.append(entry)
    names = {r["name"] for r in runs}
    runs += [r for n, r in old.items() if n not in names]  # keep runs of an earlier, wider grid
    return {"preset": base.preset, "base_config": asdict(base), "runs": runs}


def format_sweep_table(index: dict) -> str:
    def num(r, k):
        return f"{r[k]:.2f}" if isinstance(r.get(k), float) else "-"

    head = f"{'run':<22}{'β':>8}{'β_norm':>9}{'seed':>6}  {'status':<8}{'loss':>10}{'recon':>10}{'kl':>8}"
    lines = [head]
    for r in index["runs"]:
        lines.append(
            f"{r['name']:<22}{r['beta']:>8g}{r['beta_norm']:>9.4f}{r['seed']:>6}  {r['status']:<8}"
            f"{num(r, 'loss'):>10}{num(r, 'recon'):>10}{num(r, 'kl'):>8}"
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- CLI
def _add_config_args(p: argparse.ArgumentParser) -> None:
    for f in fields(TrainConfig):
        if f.name in ("preset",):
            continue
        default = f.default
        if isinstance(default, tuple):
            p.add_argument(f"--{f.name}", type=float, nargs=2, default=None, metavar=("LO", "HI"))
        else:
            p.add_argument(f"--{f.name}", type=type(default), default=None)


def config_from_args(args) -> TrainConfig:
    overrides = {
        f.name: (tuple(v) if isinstance(v, list) else v)
        for f in fields(TrainConfig)
        if f.name != "preset" and (v := getattr(args, f.name, None)) is not None
    }
    return preset_config(args.preset, **overrides)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_train = sub.add_parser("train", help="train or resume one run")
    p_sweep = sub.add_parser("sweep", help="train a β × seed grid")
    for p in (p_train, p_sweep):
        p.add_argument("--preset", default="paper", help=f"one of {sorted(PRESETS)}")
        p.add_argument("--out", required=True, help="run (train) or sweep (sweep) directory")
        p.add_argument(
            "--fresh", action="store_true", help="discard what --out holds and start over"
        )
        p.add_argument("--quiet", action="store_true", help="no progress bar")
        _add_config_args(p)
    p_train.add_argument(
        "--stop_at", type=int, default=None, help="stop (checkpointed) at this step"
    )
    p_sweep.add_argument(
        "--betas", type=float, nargs="+", default=None, help="default: preset grid"
    )
    p_sweep.add_argument("--seeds", type=int, nargs="+", default=[0])
    p_sweep.add_argument(
        "--publish", default=None, help="results folder: copy finished runs there, skip those in it"
    )
    p_sweep.add_argument("--executor", default="local", choices=("local", "ray"))
    p_sweep.add_argument("--address", default=None, help="Ray cluster address (default: local Ray)")
    p_sweep.add_argument("--gpus-per-trial", dest="gpus_per_trial", type=float, default=0.0)
    p_sweep.add_argument("--cpus-per-trial", dest="cpus_per_trial", type=float, default=1.0)
    p_sweep.add_argument("--max-failures", dest="max_failures", type=int, default=3)
    args = parser.parse_args(argv)
    try:
        cfg = config_from_args(args)
        if args.command == "train":
            summary = train(
                cfg, args.out, fresh=args.fresh, progress=not args.quiet, stop_at=args.stop_at
            )
            return 0 if summary["status"] in ("done", "interrupted") else 1
        betas = args.betas or default_betas(cfg.image_size)
        if args.executor == "ray":
            from sweep_ray import ray_sweep

            index = ray_sweep(
                cfg, betas, args.seeds, args.out, address=args.address, fresh=args.fresh,
                gpus_per_trial=args.gpus_per_trial, cpus_per_trial=args.cpus_per_trial,
                max_failures=args.max_failures, progress=not args.quiet,
            )  # fmt: skip
        else:
            index = sweep(
                cfg, betas, args.seeds, args.out, fresh=args.fresh, progress=not args.quiet,
                publish=args.publish,
            )  # fmt: skip
        return 0 if all(r["status"] == "done" for r in index["runs"]) else 1
    except (ValueError, rundir.RunDirError, NonFiniteLoss, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

__all__ = [
    "TrainConfig", "PRESETS", "preset_config", "default_betas", "build_model", "make_dataset",
    "train", "sweep", "load_config", "run_name", "NonFiniteLoss", "format_sweep_table",
]  # fmt: skip
