"""Every hyperparameter of a run (``TrainConfig``), the presets, and config.json.

``training.py`` re-exports all of it under the same names (``from training import TrainConfig``).
One way to configure: a dataclass with defaults, argparse overrides (``--<field> value``), and the
resolved config written to ``<run>/config.json`` before step 1. Validation of the model's part is
``hparams.model_problems``, the same function ``BetaVAE`` uses.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from . import backend, datasets, hardware, hparams, rundir

PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
DISTRIBUTE = ("auto", "off", "mirrored")
# β grid of the paper preset (128² Bernoulli pixels): a log grid from 1 to 256 plus the seed's β=102.
PAPER_BETAS = (1, 4, 16, 64, 102, 256)
# β grid of the study preset (32²): β_norm 0.01-0.16, around the seed's β=102 at 128² (β_norm 0.062).
# `make study` trains it for STUDY_SEEDS (the Makefile repeats both lists on its command line).
STUDY_BETAS = (1, 2, 4, 8, 16)
STUDY_SEEDS = (0, 1, 2)
# β grid of the wide preset's study (results/study_wide): both ends and the middle of STUDY_BETAS.
WIDE_BETAS = (1, 4, 16)
# disentanglement_lib's training budget (Locatello et al. 2019, unsupervised study: 300 000 steps
# of batch 64, Adam 1e-4): the "full budget" of the dsprites preset, whose default --steps is a
# CPU's; scripts and reports quote fractions of it.
DLIB_STEPS = 300_000


# The value a config.json written before a field existed means: β-TCVAE used minibatch stratified
# sampling before --tc_estimator, and every run trained on the shapes before --dataset.
LEGACY_DEFAULTS = {"tc_estimator": "mss", "dataset": datasets.DEFAULT, "encoder": hparams.ENCODER}


def _networks(registry: dict) -> str:
    """--encoder / --decoder help: "name (about) | …" from the registry (hparams)."""
    return " | ".join(f"{name} ({net.about})" for name, net in registry.items())


def _arg(default, help: str):
    """A field with its --flag's help (one line: what it is, its unit), stored with the field;
    training.py's ``--<field>`` help is ``f.metadata["help"]`` plus the defaults of the presets."""
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    """Every hyperparameter of a run; written to ``<run>/config.json`` before step 1."""

    # data: the dataset (sbd_vae/datasets.py, DATASETS) and the fields its sampler reads. A
    # config.json written before --dataset existed trained on "shapes" (from_dict).
    dataset: str = _arg(
        "shapes",
        "the training data: " + " | ".join(datasets.DATASETS) + " (shapes: the Blender renders "
        "of --data_path; dsprites: dSprites-like (procedural), its exact grid rendered here, 64² "
        "only, no download)",
    )
    data_path: str = _arg(
        "data/shapes.npz",
        "the rendered shapes (.npz of blender/render_shapes.py); --dataset shapes only",
    )
    image_size: int = _arg(128, "side of the training images, pixels (a multiple of 16, ≥ 32)")
    scale_range: tuple[float, float] = _arg(
        (0.35, 0.7),
        "object scale LO HI (bounding-disc radius 0.4·scale·width), uniform in training; "
        "--dataset shapes only",
    )
    pos_range: tuple[float, float] = _arg(
        (-0.2, 0.2),
        "object centre's offset LO HI from the image centre, fractions of the width; "
        "--dataset shapes only",
    )
    # model (variationAutoEncoder.BetaVAE: the fields named in hparams.MODEL_ARGS)
    latent_dim: int = _arg(10, "number of latents (dimensions of z)")
    # the architectures: one registry line each (hparams.ENCODERS, DECODERS)
    encoder: str = _arg(hparams.ENCODER, "the encoder: " + _networks(hparams.ENCODERS))
    decoder: str = _arg(hparams.DECODER, "the decoder: " + _networks(hparams.DECODERS))
    channels: int = _arg(
        64, "channels of every convolution of --encoder conv and --decoder sbd | deconv"
    )
    hidden: int = _arg(256, "units of --encoder conv's dense layer (and --decoder deconv's)")
    likelihood: str = _arg("bernoulli", "pixel likelihood: bernoulli | gaussian (--gaussian_sigma)")
    gaussian_sigma: float = _arg(0.1, "σ of the gaussian likelihood, in pixel values (0 to 1)")
    # objective (hparams.OBJECTIVES): Higgins β-VAE, Burgess capacity γ·|KL − C(t)|, β-TCVAE,
    # DIP-VAE-I/II, FactorVAE; --beta weighs the disentangling term of each but capacity
    # (README, "Objectives")
    objective: str = _arg(
        "beta", "the loss: " + " | ".join(hparams.OBJECTIVES) + " (README.md, Objectives)"
    )
    beta: float = _arg(
        1.0,
        "weight (≥ 0) of the --objective's disentangling term: "
        + "; ".join(f"{k}: {v}" for k, v in hparams.BETA_WEIGHS.items()),
    )
    gamma: float = _arg(1000.0, "γ, the weight of |KL − C(t)| (--objective capacity only)")
    capacity_max: float = _arg(25.0, "the final capacity C, nats (--objective capacity only)")
    capacity_steps: int = _arg(
        100000, "steps over which C(t) rises from 0 to --capacity_max (--objective capacity only)"
    )
    # β-TCVAE's estimator of q(z) (hparams.TC_ESTIMATORS): "mws", minibatch weighted sampling as
    # disentanglement_lib trains, or "mss", minibatch stratified sampling (Chen et al. 2018, App.
    # C.1 / C.2). A config.json without the field is "mss": those runs trained with it.
    tc_estimator: str = _arg(
        hparams.TC_ESTIMATOR,
        "β-TCVAE's q(z) estimator: mws (minibatch weighted) | mss (stratified); --objective tcvae only",
    )
    # optimisation
    lr: float = _arg(3e-4, "Adam's learning rate")
    batch_size: int = _arg(16, "images per step, all devices together")
    steps: int = _arg(100000, "training steps (a larger --steps extends a finished run)")
    seed: int = _arg(0, "seed of the weights, the sampling noise and the data stream")
    # "auto" (bf16 where the hardware runs it fast: hardware.resolve_precision) | "float32" |
    # "mixed_bfloat16" | "mixed_float16" (GPU). config.json records the resolved policy.
    precision: str = _arg(
        "auto", "auto (bf16 where it is fast) | float32 | mixed_bfloat16 | mixed_float16 (GPU)"
    )
    # "auto": data-parallel over the GPUs if >1 | "off" | "mirrored": every device
    # (backend.DataParallel: tf.distribute.MirroredStrategy, or keras.distribution on JAX)
    distribute: str = _arg(
        "auto", "data parallelism: auto (over the GPUs if > 1) | off | mirrored (every device)"
    )
    # The Keras backend, set by KERAS_BACKEND before Python starts ("auto": the running one).
    # config.json records the resolved name: each backend draws its own random batches, so a
    # run resumes only under the backend it was started with.
    backend: str = _arg(
        "auto",
        "Keras backend expected: auto (the running one) | tensorflow | jax; KERAS_BACKEND sets it",
    )
    # logging, checkpoints, frames (steps)
    log_every: int = _arg(100, "steps per history.csv row (one Keras epoch)")
    checkpoint_every: int = _arg(1000, "steps between checkpoints (a multiple of --log_every)")
    keep_checkpoints: int = _arg(3, "number of newest checkpoints kept")
    frame_every: int = _arg(
        1000, "steps between frames of training.gif (a multiple of --log_every)"
    )
    frame_images: int = _arg(8, "images per frame of training.gif")
    # Steps at which the weights are kept in snapshots/ (weights only, never pruned) so the scores
    # can be followed over training: `latentSpace.py evaluate RUN --all-snapshots`. Each a multiple
    # of --log_every and at most --steps; () keeps none.
    snapshot_steps: tuple[int, ...] = _arg(
        (), "steps whose weights are kept in snapshots/, each a multiple of --log_every, ≤ --steps"
    )
    preset: str = _arg("paper", "the preset (PRESETS) whose values the run started from")

    @property
    def beta_norm(self) -> float:
        """β · M / N (Higgins et al. 2017): ``hparams.beta_norm`` of this config."""
        return hparams.beta_norm(self.beta, self.latent_dim, self.image_size)

    def model_kwargs(self, num_points: int | None = None) -> dict:
        """The keyword arguments of ``BetaVAE`` for this run: ``BetaVAE(**cfg.model_kwargs(n))``.
        β-TCVAE's N (``tc_dataset_size``) is no field but the training data's number of distinct
        images, ``num_points`` (the sampler's, ``sbd_vae.datasets``); without it, or for another
        objective, it is ``hparams.TC_DATASET_SIZE``."""
        kwargs = {n: getattr(self, n) for n in hparams.MODEL_ARGS if n != "tc_dataset_size"}
        from_data = num_points is not None and self.objective == "tcvae"
        return kwargs | {
            "tc_dataset_size": int(num_points) if from_data else hparams.TC_DATASET_SIZE
        }

    def validate(self, stored: bool = False) -> TrainConfig:
        """Checks every field; ``stored=True`` (a config.json read back) skips the checks that
        only guard the start of a new run, so runs made before a check was added still load."""
        hparams.check_image_size(self.image_size)
        problems = hparams.model_problems(
            self.decoder, self.likelihood, self.objective, self.beta, self.gaussian_sigma,
            self.tc_estimator, self.encoder, self.image_size,
        )  # fmt: skip
        # a registered --dataset, at an image size it renders
        problems += datasets.config_problems(self)
        for name, allowed in [
            ("precision", PRECISIONS),
            ("distribute", DISTRIBUTE),
            ("backend", ("auto", *backend.BACKENDS)),
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
        bad_snaps = [
            s for s in self.snapshot_steps if s <= 0 or s % self.log_every or s > self.steps
        ]
        if bad_snaps and not stored:
            problems.append(
                f"--snapshot_steps {' '.join(map(str, bad_snaps))}: each must be a positive multiple "
                f"of --log_every {self.log_every} and at most --steps {self.steps}"
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
    # Watters et al. 2019 defaults at 128²: 10 latents, 64-channel convs, Adam 3e-4. Precision
    # "auto": bf16 only where it is fast (hardware.resolve_precision; BENCHMARKS.md, "Training").
    # Every preset's capacity ramp (--objective capacity) ends half way through the run.
    "paper": TrainConfig(precision="auto", capacity_steps=50000),
    # make demo: three β at 32² on 2 CPU cores (time per run: README.md, "Two commands");
    # reconstructions follow position and size.
    "demo": TrainConfig(
        image_size=32, channels=32, batch_size=32, steps=2000, log_every=50,
        checkpoint_every=250, frame_every=100, capacity_steps=1000, precision="float32",
        preset="demo",
    ),
    # The narrow 8 k-step β study (results/study/README.md has the evidence for each setting): 32² is
    # what a 2-core CPU affords; objects large enough (scale 0.6-0.9) that shape and pose are
    # worth their nats; 8 000 steps of 32: in 4 000-step runs a latent could still switch on after
    # step 3 000 (β=4).
    "study": TrainConfig(
        image_size=32, channels=32, batch_size=32, steps=8000, lr=5e-4, scale_range=(0.6, 0.9),
        pos_range=(-0.1, 0.1), log_every=50, checkpoint_every=500, frame_every=250,
        capacity_steps=4000, preset="study", precision="float32",
    ),
    # The long, wide study (results/study_wide/README.md): the study model and optimiser, but small
    # objects (scale 0.3-0.45) that move ±0.3 of the width (±10 px at 32²), the design issue 18's
    # probe found to give position and scale their own latents; 32 000 steps (4× the narrow study)
    # with the weights kept at 5 points on a doubling grid, 8 000 among them, for scores over training.
    "wide": TrainConfig(
        image_size=32, channels=32, batch_size=32, steps=32000, lr=5e-4, scale_range=(0.3, 0.45),
        pos_range=(-0.3, 0.3), log_every=50, checkpoint_every=500, frame_every=1000,
        snapshot_steps=(2000, 4000, 8000, 16000, 32000), capacity_steps=16000, preset="wide",
        precision="float32",
    ),
    # dSprites-like (procedural) (sbd_vae/dsprites.py; README, "Datasets") with
    # disentanglement_lib's model and settings (Locatello et al. 2019): its conv_encoder and
    # deconv_decoder (sbd_vae/architectures.py), 10 latents, Bernoulli loss, Adam 1e-4, batch 64.
    # Its budget, DLIB_STEPS = 300 000 steps, is the full one (--steps 300000); the default 16 000
    # is a CPU's, 5.3% of it, so the scores are not a reproduction of published numbers. The SBD
    # trains on it too (--encoder conv --decoder sbd). Weights kept at 4 points on a doubling grid
    # for the scores over training.
    "dsprites": TrainConfig(
        dataset="dsprites", image_size=64, encoder="dlib_conv", decoder="dlib_deconv",
        latent_dim=10, likelihood="bernoulli", batch_size=64, steps=16000, lr=1e-4,
        log_every=50, checkpoint_every=500, frame_every=1000,
        snapshot_steps=(2000, 4000, 8000, 16000), capacity_steps=8000,
        preset="dsprites", precision="float32",
    ),
    # CI: seconds per run.
    "test": TrainConfig(
        image_size=32, latent_dim=6, channels=16, hidden=64, batch_size=16, steps=100, log_every=10,
        checkpoint_every=20, frame_every=20, keep_checkpoints=2, frame_images=4, capacity_steps=50,
        precision="float32", preset="test",
    ),
}  # fmt: skip


def check_objective_flags(given, objectives) -> None:
    """Refuses a flag of ``hparams.OBJECTIVE_ONLY`` that was ``given`` on the command line when
    none of ``objectives`` (the run's, or a sweep's --objectives) reads it: it would be silently
    ignored. Presets set these fields too; only what the user typed is checked."""
    for flag, owner in hparams.OBJECTIVE_ONLY.items():
        if flag in given and owner not in objectives:
            raise ValueError(
                f"--{flag} enters only --objective {owner}'s loss, and this command trains "
                f"{' '.join(objectives)}: drop --{flag}, or pass --objective {owner}"
            )


def preset_config(name: str, **overrides) -> TrainConfig:
    """The preset ``name`` with ``overrides`` applied, validated."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)} (--preset).")
    return replace(PRESETS[name], preset=name, **overrides).validate()


def default_betas(image_size: int) -> list[float]:
    """The paper grid rescaled so β_norm = β·M/N matches the 128² grid at another image size."""
    k = (image_size / 128.0) ** 2
    return sorted({round(max(b * k, 0.25), 3) for b in PAPER_BETAS} | {1.0})


# ----------------------------------------------------------------------------- config.json
def from_dict(raw: dict) -> TrainConfig:
    """A TrainConfig from a config.json-style dict (lists where the dataclass has tuples)."""
    tuples = {f.name for f in fields(TrainConfig) if isinstance(f.default, tuple)}
    raw = {**LEGACY_DEFAULTS, **raw}  # fields added since: what the older runs used
    cfg = TrainConfig(**{k: (tuple(v) if k in tuples else v) for k, v in raw.items()})
    return replace(cfg, snapshot_steps=tuple(int(v) for v in cfg.snapshot_steps))


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
        return from_dict(raw).validate(stored=True)
    except (TypeError, ValueError) as e:  # a hand-edited or damaged value
        raise rundir.RunDirError(f"{path}: run config is invalid ({e}).") from None


def check_or_write_config(cfg: TrainConfig, out: Path, write: bool = True) -> TrainConfig:
    """config.json is written before step 1; a resume with another config is refused.
    ``write=False`` only checks (a sweep adopting a run that is already finished).

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
        here = hardware.resolve_precision("auto")
        stored = old.get("precision") if old is not None else None
        if stored in PRECISIONS and stored != "auto":
            if stored != here:
                print(f"[train] {out}: resuming with the run's --precision {stored} ('auto' "
                      f"would pick {here} on this machine).", file=sys.stderr)  # fmt: skip
            here = stored
        cfg = replace(cfg, precision=here)
    cfg = replace(cfg, backend=_resolve_backend(cfg.backend, old, out))
    new = asdict(cfg)
    if old is not None:
        old = {**LEGACY_DEFAULTS, **old}  # fields added since: what the older runs used
        # Extending a run (a larger --steps) is a resume, not a new experiment; the capacity
        # schedule enters only the capacity objective's loss (so a preset's new ramp does not block its runs).
        ignore = ["steps", "snapshot_steps"]  # snapshots only add files: any list may resume
        if old.get("objective") == new["objective"] != "capacity":
            ignore += ["gamma", "capacity_max", "capacity_steps"]
        if old.get("objective") == new["objective"] != "tcvae":
            ignore += ["tc_estimator"]  # enters only β-TCVAE's loss
        if old.get("dataset") == new["dataset"] in datasets.DATASETS:
            ignore += list(datasets.ignored_fields(new["dataset"]))  # fields its data never reads
        diff = rundir.config_diff(old, new, ignore=tuple(ignore))
        if diff:
            raise rundir.RunDirError(
                f"{out} was started with another config:\n"
                + "\n".join(diff)
                + f"\nRe-run with the original values, use another --out, or pass --fresh to discard {out}."
            )
    if write:
        rundir.write_json(path, new)
    return cfg


def _resolve_backend(requested: str, old: dict | None, out: Path) -> str:
    """The running Keras backend, checked against --backend and against the run's config.json
    (runs written before the field existed were trained on TensorFlow)."""
    here = backend.name()
    if requested not in ("auto", here):
        raise ValueError(
            f"--backend {requested} but Keras runs on {here}: the backend is chosen before "
            f"Python starts, so run `KERAS_BACKEND={requested} python training.py ...`"
        )
    stored = old.get("backend", "tensorflow") if old is not None else here
    if stored != here:
        raise rundir.RunDirError(
            f"{out} was trained on the {stored} backend and this process runs {here}: each "
            "backend draws its own random batches and noise, so the run cannot continue exactly "
            f"here. Resume it with `KERAS_BACKEND={stored}`, or use another --out (or --fresh) "
            f"to start a {here} run."
        )
    return here


def resume_command(cfg: TrainConfig) -> str:
    """The training command that resumes ``cfg``'s run: the preset plus every changed field."""
    base = PRESETS.get(cfg.preset, TrainConfig())
    args = [f"--preset {cfg.preset}"]
    for f in fields(cfg):
        v, b = getattr(cfg, f.name), getattr(base, f.name)
        if f.name == "preset" or (tuple(v) if isinstance(v, list) else v) == b:
            continue
        if hparams.OBJECTIVE_ONLY.get(f.name, cfg.objective) != cfg.objective:
            continue  # another objective's flag: this run never read it, and the CLI refuses it
        args.append(
            f"--{f.name} "
            + (" ".join(f"{x:g}" for x in v) if isinstance(v, tuple | list) else f"{v}")
        )
    return "python training.py train " + " ".join(args)
