"""Scores that need no ground truth: the Gaussian total correlation, the Gaussian Wasserstein
correlation (and its normalised form) and the mean pairwise mutual information of the code, as
disentanglement_lib reports them (Locatello et al. 2019, "Challenging Common Assumptions in the
Unsupervised Learning of Disentangled Representations", ICML, Sec. 5 and App.; the library's
`evaluation/metrics/unsupervised_metrics.py`), and their registry entry (scored on the suite's
shared train codes, the posterior means, as the library's study scores ``num_train`` mean codes).

Lower is more factorised for all of them: 0 means the code's dimensions are uncorrelated (Gaussian
TC and WC) or independent at the histogram's resolution (MI score, up to its positive bias of
about (num_bins − 1)² / (2N) nats).

Beside the library's scores, ``gaussian_total_correlation_active`` is the Gaussian TC of the
active latents alone (Burda et al. 2016's activity, ``encoding.ACTIVE_VAR``): a β-VAE's collapsed
latents have posterior means that barely move but may be strongly correlated with each other, and
the TC, being scale-free, counts that correlation as fully as one between the latents that carry
the factors (results/study/beta1_seed0: 0.44 nats over all 10 latents, 0.04 over its 5 active
ones; at β=16, seed 0: 4.7 against 0.002).
"""

from __future__ import annotations

import numpy as np

from ..encoding import ACTIVE_VAR, unit_activity
from .base import Inputs, Metric
from .common import as_2d, discretize, mutual_info_matrix


def gaussian_total_correlation(cov) -> float:
    """Total correlation of N(0, cov): KL(N(0, Σ) ‖ N(0, diag Σ)) = ½ (Σ_j log Σ_jj − log det Σ),
    in nats (Watanabe 1960; disentanglement_lib's `gaussian_total_correlation`). cov (D, D);
    +inf when Σ is singular with a non-zero diagonal (a latent that is a linear function of others).
    """
    cov = np.asarray(cov, np.float64)
    sign, logdet = np.linalg.slogdet(cov)
    if sign <= 0:
        return float("inf")
    return float(0.5 * (np.sum(np.log(np.diag(cov))) - logdet))


def gaussian_wasserstein_correlation(cov) -> float:
    """Squared 2-Wasserstein distance between N(0, Σ) and the product of its marginals
    N(0, diag Σ): 2 tr Σ − 2 tr (diag Σ · Σ)^½ (Locatello et al. 2019; the library's
    `gaussian_wasserstein_correlation`). cov (D, D).

    The library takes `scipy.linalg.sqrtm` of the non-symmetric diag Σ · Σ; its trace is the sum
    of the square roots of the eigenvalues of the similar, symmetric S Σ S with S = (diag Σ)^½,
    which is what is computed here (``eigvalsh``: real, no complex round-off from ``sqrtm``).
    """
    cov = np.asarray(cov, np.float64)
    s = np.sqrt(np.diag(cov))  # (D,)
    eig = np.linalg.eigvalsh(s[:, None] * cov * s[None, :])  # (D,)
    return float(2.0 * np.trace(cov) - 2.0 * np.sum(np.sqrt(np.clip(eig, 0.0, None))))


def gaussian_total_correlation_active(codes, threshold: float = ACTIVE_VAR) -> float:
    """Gaussian total correlation (nats) of the active latents of ``codes`` (N, D) only: TC of
    the Gaussian fitted (np.cov, ddof 1) to the columns whose variance over the sample
    (``encoding.unit_activity``) exceeds ``threshold`` (Burda et al. 2016: 0.01 on posterior
    means, ``encoding.ACTIVE_VAR``). Here the activity is measured on the codes scored (the
    suite's train codes), not on metrics.json's held-out ``recon_samples``, so the two counts can
    differ by a latent near the threshold.

    With fewer than 2 active latents it is 0: the total correlation of one variable (or none) is
    KL(p ‖ p) = 0, as ``unsupervised_scores`` gives 0 when no latent varies (never NaN, so a
    fully collapsed run still has a number and the β trend keeps its runs)."""
    codes = as_2d(codes, "codes").astype(np.float64)
    active = unit_activity(codes) > threshold  # (D,)
    if active.sum() < 2:
        return 0.0
    cov = np.cov(codes[:, active], rowvar=False)  # (D_active, D_active)
    return gaussian_total_correlation(cov)


def unsupervised_scores(codes, num_bins: int = 20) -> dict:
    """disentanglement_lib's `unsupervised_metrics` on codes (N, D) float (posterior means, as its
    study's `mean_representation`), with Σ = np.cov of the codes (D, D; ddof 1):

      ``gaussian_total_correlation``             ``gaussian_total_correlation(Σ)``, nats;
      ``gaussian_total_correlation_active``      the same over the active latents only
                                                 (``gaussian_total_correlation_active``; not
                                                 in the library);
      ``gaussian_wasserstein_correlation``       ``gaussian_wasserstein_correlation(Σ)``;
      ``gaussian_wasserstein_correlation_norm``  the above divided by tr Σ (scale-free, in [0, 2]);
      ``mutual_info_score``                      the mean over the D(D−1) ordered pairs j ≠ l of
                                                 I(z_j; z_l) in nats, each latent cut into
                                                 ``num_bins`` equal-width bins (the library's
                                                 histogram discretizer, 20 bins in its study).

    Lower is more factorised for all five. Differences from the library: an exactly constant
    latent (independent of every other) is left out of Σ, where its zero variance would make the
    total correlation NaN (it adds nothing to either Gaussian score); with no varying latent the
    three Gaussian scores are 0. The MI score keeps every latent (a constant one has 0 MI), as
    the library does.
    """
    codes = as_2d(codes, "codes").astype(np.float64)
    n, d = codes.shape
    if n < 2:
        raise ValueError(f"codes needs at least 2 rows (samples); got shape {codes.shape}")
    if d < 2:
        raise ValueError(f"codes needs at least 2 columns (latents) to score their dependence; "
                         f"got shape {codes.shape}")  # fmt: skip
    if not np.all(np.isfinite(codes)):
        raise ValueError("codes contains NaN or inf (did the encoder diverge?)")
    varying = np.ptp(codes, axis=0) > 0  # (D,)
    cov = np.cov(codes[:, varying], rowvar=False).reshape(varying.sum(), varying.sum())  # (D', D')
    if varying.any():
        tc = gaussian_total_correlation(cov)
        wc = gaussian_wasserstein_correlation(cov)
        trace = float(np.trace(cov))
        wc_norm = wc / trace if trace > 0 else 0.0
    else:
        tc = wc = wc_norm = 0.0
    binned = discretize(codes, num_bins)  # (N, D)
    mi = mutual_info_matrix(binned, binned)  # (D, D), symmetric, entropies on the diagonal
    np.fill_diagonal(mi, 0.0)
    return {
        "gaussian_total_correlation": tc,
        "gaussian_total_correlation_active": gaussian_total_correlation_active(codes),
        "gaussian_wasserstein_correlation": wc,
        "gaussian_wasserstein_correlation_norm": wc_norm,
        "mutual_info_score": float(mi.sum() / (d * d - d)),
    }


def _score(data: Inputs, seed: int) -> dict:
    codes = data.codes["train"]  # (num_train, D) posterior means
    return unsupervised_scores(codes, num_bins=data.counts["num_bins"])


METRIC = Metric("unsupervised", _score, counts=("num_train", "num_bins"))
