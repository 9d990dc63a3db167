"""IRS, the Interventional Robustness Score (Suter et al. 2019, "Robustly Disentangled Causal
Mechanisms: Validating Deep Representations for Interventional Robustness", ICML), and its
registry entry (scored on the suite's shared train codes, as disentanglement_lib's study scores it
on ``num_train`` codes)."""

from __future__ import annotations

import numpy as np

from .base import Inputs, Metric
from .common import check_pair, discretize, varying_columns

# The quantile of the within-group deviations that counts as "the" deviation (disentanglement_lib's
# `compute_irs(diff_quantile=0.99)`, which its study keeps; 1.0 is the paper's maximum).
DIFF_QUANTILE = 0.99


def irs(codes, factors, diff_quantile: float = DIFF_QUANTILE, num_bins: int = 20) -> dict:
    """Interventional Robustness Score (Suter et al. 2019, "Robustly Disentangled Causal
    Mechanisms", Sec. 4; disentanglement_lib's `compute_irs` and `scalable_disentanglement_score`).

    codes (N, D) float, factors (N, K) int. For latent j and factor k, the deviation is the
    ``diff_quantile`` quantile of |z_j − E[z_j | v_k = c]| within each value c of v_k, averaged
    over the values c; it is divided by the latent's largest deviation from its mean,
    max |z_j − E[z_j]|, and IRS_matrix[j, k] = 1 − that ratio (1: fixing v_k pins z_j down).
    Each latent's score is its best factor; IRS is their mean weighted by the max deviations.

    Returns a dict:
      ``IRS``                    float, the score (0 when no latent varies);
      ``avg_score``              float, the weighted mean (the library's name; equal to IRS);
      ``disentanglement_scores`` (D,) max_k IRS_matrix[j, k] per latent;
      ``parents``                (D,) int, argmax_k: the factor column (of ``factors``) each
                                 latent is most robust to fixing;
      ``max_deviations``         (D,) max |z_j − mean z_j|, the normaliser and weight;
      ``IRS_matrix``             (D, K') over the varying factor columns ``factor_columns``;
      ``factor_columns``         (K',) int, the columns of ``factors`` scored;
      ``num_active_dims``        int, latents with non-zero variance.

    As the library: factors are first cut into ``num_bins`` equal-width bins (a relabelling for a
    factor with at most ``num_bins`` values), latents with zero variance are dropped, and
    ``np.quantile`` interpolates linearly. Differences: a dropped (constant) latent is reported,
    not removed: score 0, parent −1, max deviation 0 (its weight is 0, so IRS is unchanged);
    ``num_active_dims`` is the number of varying latents (the library returns the sum of their
    code values, a bug); single-valued factors are skipped with a warning.
    """
    codes, factors = check_pair(codes, factors)
    if not 0.0 <= diff_quantile <= 1.0:
        raise ValueError(f"diff_quantile must lie in [0, 1]; got {diff_quantile}")
    cols = varying_columns(factors)
    binned = discretize(factors[:, cols], num_bins)  # (N, K') bin indices
    d, k = codes.shape[1], len(cols)
    active = codes.var(axis=0) > 0  # (D,)
    z = codes[:, active]  # (N, D')
    max_dev = np.max(np.abs(z - z.mean(axis=0)), axis=0)  # (D',)
    deviation = np.zeros((z.shape[1], k))  # (D', K'): mean over values of the quantile deviation
    for i in range(k):
        values = np.unique(binned[:, i])
        for v in values:
            group = z[binned[:, i] == v]  # (n_v, D')
            deviation[:, i] += np.quantile(
                np.abs(group - group.mean(axis=0)), diff_quantile, axis=0
            )
        deviation[:, i] /= len(values)
    matrix = 1.0 - deviation / max_dev[:, None]  # (D', K')
    scores = matrix.max(axis=1)  # (D',)
    if not active.any():
        avg = 0.0  # the library's score when every latent is constant
    elif max_dev.sum() > 0:
        avg = float(np.average(scores, weights=max_dev))
    else:
        avg = float(np.mean(scores))

    full_matrix = np.zeros((d, k))
    full_matrix[active] = matrix
    full_scores, full_dev = np.zeros(d), np.zeros(d)
    full_scores[active], full_dev[active] = scores, max_dev
    parents = np.full(d, -1, dtype=np.int64)
    parents[active] = cols[matrix.argmax(axis=1)]
    return {
        "IRS": avg,
        "avg_score": avg,
        "disentanglement_scores": full_scores,
        "parents": parents,
        "max_deviations": full_dev,
        "IRS_matrix": full_matrix,
        "factor_columns": cols,
        "num_active_dims": int(active.sum()),
    }


def _score(data: Inputs, seed: int) -> dict:
    ctr, ftr, _, _ = data.train_test()  # (num_train, D), (num_train, K')
    return {"irs": irs(ctr, ftr, num_bins=data.counts["num_bins"])["IRS"]}


METRIC = Metric("irs", _score, counts=("num_train", "num_bins"))
