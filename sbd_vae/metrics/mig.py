"""MIG, the Mutual Information Gap (Chen et al. 2018, "Isolating Sources of Disentanglement in
Variational Autoencoders"), and its registry entry (scored on the suite's shared train codes)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import mutual_info_score

from .base import Inputs, Metric
from .common import check_pair, discretize, mutual_info_matrix, top_two_gap, varying_columns


def mig(codes, factors, num_bins: int = 20) -> float:
    """Mutual Information Gap (Chen et al. 2018, "Isolating Sources of Disentanglement in VAEs").

    Follows disentanglement_lib's `compute_mig`: each code dim is cut into `num_bins` equal-width
    bins, I(z_j; v_k) is sklearn's `mutual_info_score`, and per factor the gap between the two
    most informative dims is divided by H(v_k); the score is the mean over factors.
    Differences: single-valued factors (H = 0) are skipped with a warning, not divided by zero.
    """
    return float(np.mean(mig_per_factor(codes, factors, num_bins)))


def mig_per_factor(codes, factors, num_bins: int = 20) -> np.ndarray:
    """The normalised gap of every varying factor, (K',): I(z_a; v_k) − I(z_b; v_k) over H(v_k),
    with a and b the two latents most informative about v_k. ``mig`` is its mean (Chen et al.
    2018); per factor it says which factors a code captures, each by one latent."""
    codes, factors = check_pair(codes, factors)
    factors = factors[:, varying_columns(factors)]
    m = mutual_info_matrix(discretize(codes, num_bins), factors)  # (D, K)
    entropy = np.array([mutual_info_score(f, f) for f in factors.T])  # (K,) nats
    return top_two_gap(m) / entropy


def _score(data: Inputs, seed: int) -> dict:
    ctr, ftr, _, _ = data.train_test()
    gaps = mig_per_factor(ctr, ftr, num_bins=data.counts["num_bins"])  # (K',)
    return {"mig": float(np.mean(gaps)), "per_factor": {"mig": data.by_factor(gaps)}}


METRIC = Metric("mig", _score, counts=("num_train", "num_test", "num_bins"))
