"""What every metric shares: input checks and the discrete information maths.

The array-level metric cores take codes (N, D) float and factors (N, K) int; these helpers check
that pair, drop single-valued factors (with a warning), derive a seed from a RandomState, and
compute the binned mutual information and the top-two gap of MIG, SAP and Modularity.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.metrics import mutual_info_score


# ----------------------------------------------------------------------------- input checks
def as_2d(x, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D (N, D); got shape {x.shape}")
    return x


def check_pair(codes, factors, cname="codes", fname="factors"):
    """Validate one (codes (N, D) float, factors (N, K) int) pair; returns float64, int64."""
    codes, factors = as_2d(codes, cname), as_2d(factors, fname)
    if codes.shape[0] != factors.shape[0]:
        raise ValueError(
            f"{cname} and {fname} have different N: {cname}.shape={codes.shape}, "
            f"{fname}.shape={factors.shape}"
        )
    if codes.shape[0] < 2:
        raise ValueError(f"{cname} needs at least 2 rows; got shape {codes.shape}")
    codes = codes.astype(np.float64)
    if not np.all(np.isfinite(codes)):
        raise ValueError(f"{cname} contains NaN or inf (did the encoder diverge?)")
    if not np.issubdtype(factors.dtype, np.integer):
        if not np.array_equal(factors, np.round(factors)):
            raise ValueError(f"{fname} must hold integer factor indices; got {factors.dtype}")
    return codes, factors.astype(np.int64)


def check_train_test(ctr, ftr, cte, fte):
    ctr, ftr = check_pair(ctr, ftr, "codes_train", "factors_train")
    cte, fte = check_pair(cte, fte, "codes_test", "factors_test")
    if ctr.shape[1] != cte.shape[1] or ftr.shape[1] != fte.shape[1]:
        raise ValueError(
            f"train and test widths differ: codes {ctr.shape} vs {cte.shape}, "
            f"factors {ftr.shape} vs {fte.shape}"
        )
    return ctr, ftr, cte, fte


def varying_columns(factors: np.ndarray) -> np.ndarray:
    """Indices of the factor columns with more than one value; warns about the others."""
    keep = [k for k in range(factors.shape[1]) if np.unique(factors[:, k]).size > 1]
    for k in sorted(set(range(factors.shape[1])) - set(keep)):
        warnings.warn(
            f"factor column {k} has a single value; skipped (its entropy is 0)", stacklevel=3
        )
    if not keep:
        raise ValueError(f"no factor has more than one value (factors shape {factors.shape})")
    return np.asarray(keep)


def seed_of(random_state) -> int:
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(2**31 - 1))
    return int(random_state)


# ------------------------------------------------------------------ shared information maths
def discretize(codes: np.ndarray, num_bins: int) -> np.ndarray:
    """Equal-width histogram bins per code dim, as disentanglement_lib's `_histogram_discretize`.

    np.histogram of a constant column spans [v-0.5, v+0.5], so constant dims map to one bin.
    """
    out = np.empty(codes.shape, dtype=np.int64)  # (N, D)
    for j in range(codes.shape[1]):
        edges = np.histogram(codes[:, j], bins=num_bins)[1]
        out[:, j] = np.digitize(codes[:, j], edges[:-1])
    return out


def mutual_info_matrix(binned: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """(D, K) discrete mutual information in nats (sklearn `mutual_info_score`)."""
    m = np.zeros((binned.shape[1], factors.shape[1]))
    for j in range(binned.shape[1]):
        for k in range(factors.shape[1]):
            m[j, k] = mutual_info_score(factors[:, k], binned[:, j])
    return m


def top_two_gap(score: np.ndarray) -> np.ndarray:
    """Per column (factor): best minus second-best row; a single row counts the second as 0."""
    s = np.sort(score, axis=0)[::-1]  # (D, K) descending
    second = s[1] if s.shape[0] > 1 else np.zeros(s.shape[1])
    return s[0] - second
