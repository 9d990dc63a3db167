"""Cost of one training step of each objective relative to β-VAE's (README.md, "Objectives").

Every objective shares the encoder and decoder; β-TCVAE adds the (B, B, D) minibatch estimate of
log q(z) (Chen et al. 2018), DIP-VAE a D × D covariance (Kumar et al. 2018). Raw compiled
``train_step`` on one constant batch (bench_train's stepper), float32, each objective timed in
alternation with the others, in an order that rotates each round, so that a change of load hits
every one alike.

    python bench/bench_objectives.py            # prints a markdown section
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace

from bench_train import _raw_stepper
from common import ensure_data, machine


def _rotated_rates(variants: dict, steps: int, batch: int, rounds: int) -> dict:
    """img/s of each variant, best of ``rounds`` rounds; each round times every variant once, and
    the order rotates from round to round, so no variant always runs first (or after the same one)."""
    names = list(variants)
    best = dict.fromkeys(names, float("inf"))
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            t0 = time.perf_counter()
            variants[name](steps)
            best[name] = min(best[name], time.perf_counter() - t0)
    return {name: steps * batch / t for name, t in best.items()}


def _term_cost_us(cfg, objective: str, calls: int = 200) -> float:
    """µs per call of the objective's own statistics alone (compiled), on a (B, D) batch: what the
    objective adds to a step, free of the convolutions' noise on a shared machine."""
    import numpy as np
    import tensorflow as tf

    import variationAutoEncoder as V

    rng = np.random.RandomState(0)
    z, mean, logvar = (tf.constant(rng.randn(cfg.batch_size, cfg.latent_dim), tf.float32)
                       for _ in range(3))  # fmt: skip
    if objective == "tcvae":
        fn = tf.function(lambda: V.tc_decomposition(z, mean, logvar)["tc"])
    elif objective.startswith("dipvae_"):
        fn = tf.function(lambda: V.dip_penalties(V.dip_covariance(mean, logvar, objective[7:]))[0])
    else:
        fn = tf.function(lambda: V.kl_per_dim(mean, logvar))  # shared by every objective
    fn()
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, time.perf_counter() - t0)
    return 1e6 * best / calls


def run(quick: bool = False) -> str:
    import training
    from sbd_vae.hparams import OBJECTIVES

    cfg = training.preset_config("paper", data_path=str(ensure_data()), precision="float32")
    n = 3 if quick else 5
    t0 = time.time()
    variants = {o: _raw_stepper(replace(cfg, objective=o, beta=4.0)) for o in OBJECTIVES}
    rounds = 5 if quick else 10
    rates = _rotated_rates(variants, n, cfg.batch_size, rounds)
    terms = {o: _term_cost_us(cfg, o) for o in OBJECTIVES}
    base = rates["beta"]
    rows = [
        f"| `{o}` | {rates[o]:.1f} img/s | {1000 * cfg.batch_size / rates[o]:.0f} ms "
        f"| {base / rates[o]:.3f}× | {terms[o]:.0f} µs |"
        for o in OBJECTIVES
    ]
    return "\n".join([
        "## Objectives: one training step of each, relative to β-VAE (128², paper preset, batch "
        f"{cfg.batch_size}, float32)",
        "",
        f"Machine: {machine()}. Command: `python bench/bench_objectives.py` (or `make bench`). "
        f"Raw `train_step` on one constant batch, {n} steps per objective per round, best of "
        f"{rounds} rounds (the order rotates each round), all in this one run ({time.time() - t0:.0f} s). Last column: the "
        "objective's own statistics alone, compiled, on a (B, D) batch (β and capacity: the KL "
        "every objective computes); step-time ratios within ± 15 % of 1 are the shared machine's "
        "noise, not the objective.",
        "",
        "| objective | rate | time per step | step time ÷ β-VAE's | its own terms alone (forward) |",
        "|---|---|---|---|---|",
        *rows,
        "",
    ])  # fmt: skip


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
