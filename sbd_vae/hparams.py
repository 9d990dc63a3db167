"""The model's hyperparameters: their names, allowed values and checks, in one place.

``variationAutoEncoder.BetaVAE`` takes exactly ``MODEL_ARGS`` (its ``get_config`` writes them into
every model.keras), ``config.TrainConfig`` has a field of each name and hands them over with
``TrainConfig.model_kwargs()``, and both validate them with ``model_problems``: a bad β, decoder,
likelihood, objective or image size is refused with the same message wherever it comes from.
Pure Python: no Keras, no TensorFlow.
"""

from __future__ import annotations

import math

# BetaVAE's constructor arguments, in the order of its get_config (and of saved model.keras files).
MODEL_ARGS = (
    "image_size", "latent_dim", "decoder", "channels", "hidden", "beta", "objective", "gamma",
    "capacity_max", "capacity_steps", "likelihood", "gaussian_sigma", "seed",
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
# β-TCVAE's minibatch-stratified-sampling estimator (Chen et al. 2018, App. C.2) needs the
# dataset size N. Training images have continuous scale and position, so every image is new and
# N is a modelling choice: the number of images of the paper preset's evaluation grid,
# 6 shapes · 16 azimuths · 3 tilts · 8 scales · 16 · 16 positions = 589 824 (dSprites, Chen et
# al.'s data, has 737 280). It caps the MI estimate at log N ≈ 13.3 nats and weighs a sample's own
# posterior by 1/N; the TC estimate barely depends on it once N ≫ the batch. Not a config field:
# changing it changes every tcvae run's loss.
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


def model_problems(decoder, likelihood, objective, beta, gaussian_sigma) -> list[str]:
    """One message per bad model argument, each naming its flag; [] when all are valid.
    (``check_image_size`` raises on its own: nothing else can be checked without a valid size.)"""
    problems = [why] if (why := beta_problem(beta)) is not None else []
    for name, value, allowed in [
        ("decoder", decoder, DECODERS),
        ("likelihood", likelihood, LIKELIHOODS),
        ("objective", objective, OBJECTIVES),
    ]:
        if value not in allowed:
            problems.append(f"--{name} {value!r}: choose one of {allowed}")
    if likelihood == "gaussian" and not gaussian_sigma > 0:
        problems.append(f"--gaussian_sigma {gaussian_sigma!r}: must be > 0")
    return problems


def beta_norm(beta: float, latent_dim: int, image_size: int) -> float:
    """Normalised β of Higgins et al. 2017: β · M / N, with M latents and N = H·W pixels."""
    return beta * latent_dim / float(image_size * image_size)
