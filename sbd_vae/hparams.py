"""The model's hyperparameters: their names, allowed values and checks, in one place.

``variationAutoEncoder.BetaVAE`` takes exactly ``MODEL_ARGS`` (its ``get_config`` writes them into
every model.keras), ``config.TrainConfig`` has a field of each name but ``tc_dataset_size``
(β-TCVAE's N, a property of the training data: ``dataset.ShapesDataset.num_points``) and hands
them over with ``TrainConfig.model_kwargs(num_points)``, and both validate them with
``model_problems``: a bad β, encoder, decoder, likelihood, objective, TC estimator or image size is
refused with the same message wherever it comes from.

The encoders and decoders are a registry (``ENCODERS``, ``DECODERS``: one ``Network`` line each,
naming its Keras class by import path), so adding an architecture is one class and one line.
Pure Python: no Keras, no TensorFlow.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass, field

# BetaVAE's constructor arguments, in the order of its get_config (and of saved model.keras files);
# "encoder" came last, so positional calls and files saved before it are unaffected.
MODEL_ARGS = (
    "image_size", "latent_dim", "decoder", "channels", "hidden", "beta", "objective", "gamma",
    "capacity_max", "capacity_steps", "likelihood", "gaussian_sigma", "seed", "tc_estimator",
    "tc_dataset_size", "encoder",
)  # fmt: skip


@dataclass(frozen=True)
class Network:
    """One encoder or decoder of the registry (``ENCODERS``, ``DECODERS``).

    path: "module:Class" of its Keras class, resolved (``resolve``) only when a model is built,
        so this module imports no Keras and the package no root module; or the class itself.
    args: the ``BetaVAE`` arguments its constructor takes, by keyword (``BetaVAE`` passes its
        own values of them, plus ``name``).
    image_sizes: the only --image_size values it takes; None: any ``check_image_size`` allows.
    about: the one-line description shown in --encoder / --decoder's help.
    """

    path: str | type
    args: tuple[str, ...]
    image_sizes: tuple[int, ...] | None = None
    about: str = ""

    def resolve(self):
        """The class ``path`` names."""
        return self.path if isinstance(self.path, type) else import_path(self.path)


def import_path(path: str):
    """The object "module:attribute.attribute" names, imported now."""
    module, _, attr = path.partition(":")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


# --encoder and --decoder: one line each. "conv", "sbd" and "deconv" are the project's own
# (variationAutoEncoder: Watters et al. 2019); "dlib_conv" and "dlib_deconv" are
# disentanglement_lib's conv_encoder and deconv_decoder (methods/shared/architectures.py, after
# Higgins et al. 2017, Table 1; the architecture of Locatello et al. 2019), fixed widths, 64² out.
ENCODERS = {
    "conv": Network("variationAutoEncoder:Encoder", ("latent_dim", "channels", "hidden"),
                    about="4 × Conv(--channels, 4×4, stride 2) → Dense(--hidden)"),
    "dlib_conv": Network("sbd_vae.architectures:DlibConvEncoder", ("latent_dim",),
                         about="disentanglement_lib's conv_encoder: Conv 32, 32 (4×4), 64, 64 "
                         "(2×2), stride 2 → Dense 256"),
}  # fmt: skip
DECODERS = {
    "sbd": Network("variationAutoEncoder:SpatialBroadcastDecoder",
                   ("image_size", "latent_dim", "channels"),
                   about="spatial broadcast: 4 × Conv(--channels, 3×3) on tiled z + coordinates"),
    "deconv": Network("variationAutoEncoder:DeconvDecoder",
                      ("image_size", "latent_dim", "channels", "hidden"),
                      about="transposed convolutions, the mirror of --encoder conv"),
    "dlib_deconv": Network("sbd_vae.architectures:DlibDeconvDecoder", ("image_size", "latent_dim"),
                           image_sizes=(64,),
                           about="disentanglement_lib's deconv_decoder: Dense 256, 1024 → 4×4×64, "
                           "ConvTranspose 64, 32, 32, 1 (4×4, stride 2); 64² only"),
}  # fmt: skip
ENCODER, DECODER = "conv", "sbd"  # BetaVAE's defaults: every model saved before --encoder
# The encoder's log-variance is clipped to [LOGVAR_MIN, LOGVAR_MAX] before any exp, in every
# encoder: exp(20) = 4.9e8 never overflows float32 or bfloat16; the gradient is exact inside.
LOGVAR_MIN, LOGVAR_MAX = -30.0, 20.0
LIKELIHOODS = ("bernoulli", "gaussian")
# --objective: β-VAE (Higgins et al. 2017), capacity (Burgess et al. 2018), β-TCVAE (Chen et al.
# 2018), DIP-VAE-I and -II (Kumar et al. 2018), FactorVAE (Kim & Mnih 2018). In each, --beta
# weighs its disentangling term (the KL, the TC, λ_od of DIP, or FactorVAE's γ); capacity uses --gamma instead (README.md, "Objectives").
OBJECTIVES = ("beta", "capacity", "tcvae", "dipvae_i", "dipvae_ii", "factorvae")
# The terms (history.csv columns) an objective reports besides those of every objective
# (BetaVAE.term_names; variationAutoEncoder.OBJECTIVE_LOSSES has their formulas).
OBJECTIVE_TERMS = {
    "tcvae": ("mi", "tc", "dimwise_kl"),
    "dipvae_i": ("dip_offdiag", "dip_diag"),
    "dipvae_ii": ("dip_offdiag", "dip_diag"),
    "factorvae": ("tc", "discriminator_loss", "discriminator_accuracy"),
}
# DIP-VAE: λ_d = factor · λ_od (λ_od = --beta), the factors of disentanglement_lib's
# unsupervised_study_v1 sweep (Locatello et al. 2019): 10 for DIP-VAE-I, 1 for DIP-VAE-II.
DIP_LAMBDA_D_FACTOR = {"dipvae_i": 10.0, "dipvae_ii": 1.0}
# What --beta weighs under each objective (README.md's "Objectives" table has the losses); the
# --beta help of training.py is built from it (config.TrainConfig), and a test checks every
# objective is in it.
BETA_WEIGHS = {
    "beta": "the KL",
    "capacity": "nothing (--gamma weighs |KL − C(t)|)",
    "tcvae": "the TC term (MI and dim-wise KL keep weight 1)",
    **{
        name: f"λ_od, {cov}'s off-diagonal penalty (λ_d = {DIP_LAMBDA_D_FACTOR[name]:g}·β)"
        for name, cov in (("dipvae_i", "Cov[μ]"), ("dipvae_ii", "Cov_q[z]"))
    },
    "factorvae": "γ, the weight of the discriminator's TC estimate",
}
# The flags that enter one objective's loss only (their --help says so): given on the command
# line for a run of another objective they would be ignored silently, so the CLI refuses them
# (config.check_objective_flags).
OBJECTIVE_ONLY = {
    "gamma": "capacity",
    "capacity_max": "capacity",
    "capacity_steps": "capacity",
    "tc_estimator": "tcvae",
}
# β-TCVAE's estimators of log q(z) and log q(z_l) on a batch of M (Chen et al. 2018, App. C):
# "mws", minibatch weighted sampling (App. C.1; what disentanglement_lib trains with, the
# default), or "mss", minibatch stratified sampling (App. C.2; every run before --tc_estimator
# existed, results/objectives among them). variationAutoEncoder.tc_decomposition has the formulas.
TC_ESTIMATORS = ("mws", "mss")
TC_ESTIMATOR = "mws"
# Both need the dataset size N, the number of distinct training images: training.build_model
# passes the data's ShapesDataset.num_points into BetaVAE's tc_dataset_size, and model.keras
# records it. Training draws scale and position continuously, so N is a modelling choice: the
# images of the data's factor grid, whose neighbouring points differ by at least a pixel (the
# visibly distinct images). N is not a detail: MSS weighs a sample's own posterior by 1/N and
# MWS subtracts log(N·M) from every density. In scripts/tc_batch_bias.py's simulation (10
# independent latents, posterior std 0.5, true TC 0, batch 32) MSS estimates −2.9 nats at
# N = 589 824 and −1.4 at N = 56 448; MWS's estimate, (D − 1)·log N above the plain batch
# average's, is +124 and +103 nats. MWS's N only shifts the values, not the gradients; MSS's
# changes the gradients too.
# TC_DATASET_SIZE is the N of the runs made before N came from the data (the paper preset's grid
# at 128², 6 shapes · 16 azimuths · 3 tilts · 8 scales · 16 · 16 positions; dSprites, Chen et
# al.'s data, has 737 280): BetaVAE's default, so a model.keras saved without the field loads
# with the N it was trained with.
TC_DATASET_SIZE = 589_824
# FactorVAE (Kim & Mnih 2018): the discriminator and its own optimiser as the paper and
# disentanglement_lib's unsupervised study set them (fc_discriminator: 6 × Dense(1000), LeakyReLU
# 0.2, 2 logits; make_discriminator_optimizer: Adam lr 1e-4, β1 0.5, β2 0.9).
FACTORVAE_DISCRIMINATOR = {"units": 1000, "depth": 6, "leak": 0.2}
FACTORVAE_ADAM = {"learning_rate": 1e-4, "beta_1": 0.5, "beta_2": 0.9, "epsilon": 1e-8}


@dataclass(frozen=True)
class Auxiliary:
    """A network an objective trains beside the VAE, on its own loss with its own optimiser
    (``AUXILIARY_NETS``; the training steps, ``sbd_vae.steps``, know it in general).

    name: the BetaVAE attribute that holds the network; its optimiser's state is the attribute
        ``name + "_state"`` (an ``OptimizerState`` layer named ``name + "_optimizer"``). Saved
        models and checkpoints name both, so a name never changes.
    network: its Keras class (a ``Network``: import path and the BetaVAE arguments it takes);
        ``kwargs``, its other constructor arguments. It reads the codes z (B, D): BetaVAE
        builds it on a (1, latent_dim) batch.
    loss: the term of ``BetaVAE.compute_terms`` that is its loss; it must reach only this
        network's weights, and the VAE's loss must not reach them.
    adam: its Adam's settings.
    seeds: the SeedGenerators (BetaVAE attributes) its objective's loss draws from, created
        after the network and its optimiser (the order of the model's variables).
    """

    name: str
    network: Network
    loss: str
    adam: dict
    kwargs: dict = field(default_factory=dict)
    seeds: tuple[str, ...] = ()

    @property
    def state(self) -> str:
        """The BetaVAE attribute of its optimiser's state."""
        return self.name + "_state"


# The auxiliary networks of each objective (none for the others): one line each.
AUXILIARY_NETS = {
    "factorvae": (Auxiliary("discriminator", Network("variationAutoEncoder:Discriminator",
                                                     ("latent_dim",)),
                            loss="discriminator_loss", adam=FACTORVAE_ADAM,
                            kwargs=FACTORVAE_DISCRIMINATOR, seeds=("permute_seed",)),),
}  # fmt: skip


def check_image_size(image_size: int) -> None:
    """The encoder halves the size 4 times and the deconv decoder doubles it back: 32, 48, 64, … 128."""
    if not isinstance(image_size, int) or image_size < 32 or image_size % 16:
        raise ValueError(
            f"image_size={image_size!r} is not supported: the 4 stride-2 convolutions need a multiple "
            "of 16 that is at least 32 (for example --image_size 32, 64 or 128)."
        )


def beta_problem(beta) -> str | None:
    """Why ``beta`` is not a usable KL weight (a message naming --beta), or None if it is."""
    try:
        ok = beta >= 0 and math.isfinite(beta)
    except TypeError:
        ok = False
    return None if ok else f"--beta {beta}: β must be a finite number ≥ 0 (for example --beta 4)"


def model_problems(
    decoder, likelihood, objective, beta, gaussian_sigma, tc_estimator=TC_ESTIMATOR,
    encoder=ENCODER, image_size=None,
) -> list[str]:  # fmt: skip
    """One message per bad model argument, each naming its flag; [] when all are valid.
    (``check_image_size`` raises on its own: nothing else can be checked without a valid size;
    given ``image_size``, an encoder or decoder that does not take it is refused here.)"""
    problems = [why] if (why := beta_problem(beta)) is not None else []
    for name, value, allowed in [
        ("encoder", encoder, ENCODERS),
        ("decoder", decoder, DECODERS),
        ("likelihood", likelihood, LIKELIHOODS),
        ("objective", objective, OBJECTIVES),
        ("tc_estimator", tc_estimator, TC_ESTIMATORS),
    ]:
        if value not in allowed:
            problems.append(f"--{name} {value!r}: choose one of {tuple(allowed)}")
    for flag, registry, name in (("encoder", ENCODERS, encoder), ("decoder", DECODERS, decoder)):
        if image_size is not None and name in registry:
            problems += network_size_problems(flag, registry, name, image_size)
    if likelihood == "gaussian" and not gaussian_sigma > 0:
        problems.append(f"--gaussian_sigma {gaussian_sigma!r}: must be > 0")
    return problems


def network_size_problems(flag: str, registry: dict, name: str, image_size) -> list[str]:
    """[a message naming --image_size and --{flag}] if ``registry[name]`` does not take
    ``image_size`` (e.g. dlib_deconv's 4×4×64 → 64² upsampling), else []."""
    sizes = registry[name].image_sizes
    if sizes is None or image_size in sizes:
        return []
    fit = [k for k, v in registry.items() if v.image_sizes is None or image_size in v.image_sizes]
    return [
        f"--{flag} {name} takes {' or '.join(f'{s}×{s}' for s in sizes)} images only, not "
        f"--image_size {image_size}: pass {' or '.join(f'--image_size {s}' for s in sizes)}, or "
        f"another --{flag} ({' | '.join(fit)})"
    ]


def beta_norm(beta: float, latent_dim: int, image_size: int) -> float:
    """Normalised β of Higgins et al. 2017: β · M / N, with M latents and N = H·W pixels."""
    return beta * latent_dim / float(image_size * image_size)
