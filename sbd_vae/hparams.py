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
OBJECTIVES = ("beta", "capacity")


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
