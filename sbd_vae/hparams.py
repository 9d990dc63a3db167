"""The model's hyperparameters: their names, allowed values and checks, in one place.

``variationAutoEncoder.BetaVAE`` takes exactly ``MODEL_ARGS`` (its ``get_config`` writes them into
every model.keras), ``config.TrainConfig`` has a field of each name but ``tc_dataset_size``
(β-TCVAE's N, a property of the training data: ``dataset.ShapesDataset.num_points``) and hands
them over with ``TrainConfig.model_kwargs(num_points)``, and both validate them with
``model_problems``: a bad β, decoder, likelihood, objective, TC estimator or image size is refused
with the same message wherever it comes from.
Pure Python: no Keras, no TensorFlow.
"""

from __future__ import annotations

import math

# BetaVAE's constructor arguments, in the order of its get_config (and of saved model.keras files).
MODEL_ARGS = (
    "image_size", "latent_dim", "decoder", "channels", "hidden", "beta", "objective", "gamma",
    "capacity_max", "capacity_steps", "likelihood", "gaussian_sigma", "seed", "tc_estimator",
    "tc_dataset_size",
)  # fmt: skip
DECODERS = ("sbd", "deconv")
LIKELIHOODS = ("bernoulli", "gaussian")
# --objective: β-VAE (Higgins et al. 2017), capacity (Burgess et al. 2018), β-TCVAE (Chen et al.
# 2018), DIP-VAE-I and -II (Kumar et al. 2018), FactorVAE (Kim & Mnih 2018). In each, --beta
# weighs its disentangling term (the KL, the TC, λ_od of DIP, or FactorVAE's γ); capacity uses --gamma instead (README.md, "Objectives").
OBJECTIVES = ("beta", "capacity", "tcvae", "dipvae_i", "dipvae_ii", "factorvae")
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
    decoder, likelihood, objective, beta, gaussian_sigma, tc_estimator=TC_ESTIMATOR
) -> list[str]:
    """One message per bad model argument, each naming its flag; [] when all are valid.
    (``check_image_size`` raises on its own: nothing else can be checked without a valid size.)"""
    problems = [why] if (why := beta_problem(beta)) is not None else []
    for name, value, allowed in [
        ("decoder", decoder, DECODERS),
        ("likelihood", likelihood, LIKELIHOODS),
        ("objective", objective, OBJECTIVES),
        ("tc_estimator", tc_estimator, TC_ESTIMATORS),
    ]:
        if value not in allowed:
            problems.append(f"--{name} {value!r}: choose one of {allowed}")
    if likelihood == "gaussian" and not gaussian_sigma > 0:
        problems.append(f"--gaussian_sigma {gaussian_sigma!r}: must be > 0")
    return problems


def beta_norm(beta: float, latent_dim: int, image_size: int) -> float:
    """Normalised β of Higgins et al. 2017: β · M / N, with M latents and N = H·W pixels."""
    return beta * latent_dim / float(image_size * image_size)
