"""The measurement protocols: every sample count of "study" and "quick", in one table.

"study" uses the counts of disentanglement_lib's unsupervised study (Locatello et al. 2019).
"quick" shrinks them for a CPU; its numbers are labelled "quick" (``QUICK_NOTE``) wherever they
are shown and are not comparable to published ones. Which metric reads which count is declared
by its registry entry (``metrics.registry``: ``Metric.counts``); ``eval_samples`` and
``response_bases`` are read by ``evaluation``.
"""

from __future__ import annotations

PROTOCOLS: dict[str, dict] = {
    "study": dict(
        num_train=10000,  # MIG, DCI, SAP, Modularity/Explicitness, IRS, unsupervised train codes
        num_test=5000,  # their test codes
        batch_size=64,  # BetaVAE pairs per point, FactorVAE samples per vote
        beta_vae_train=10000,
        beta_vae_eval=5000,
        factor_vae_train=10000,
        factor_vae_eval=5000,
        num_variance_estimate=10000,
        prune_threshold=0.05,
        num_bins=20,  # histogram bins: MIG, Modularity, IRS's factors, the MI score
        eval_samples=2000,  # held-out images: reconstruction error, KL per latent, active units
        response_bases=32,  # factor-response plot: random bases of the other factors averaged
    ),
    "quick": dict(
        num_train=2000,
        num_test=1000,
        batch_size=64,
        beta_vae_train=500,
        beta_vae_eval=250,
        factor_vae_train=500,
        factor_vae_eval=250,
        num_variance_estimate=2000,
        prune_threshold=0.05,
        num_bins=20,
        eval_samples=500,
        response_bases=8,
    ),
}
QUICK_NOTE = "reduced sample counts for CPU, not comparable to published numbers"


def check_protocol(protocol: str) -> dict:
    """``PROTOCOLS[protocol]``, or a ValueError naming --protocol and the choices."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"--protocol {protocol!r}: choose one of {sorted(PROTOCOLS)}")
    return PROTOCOLS[protocol]
