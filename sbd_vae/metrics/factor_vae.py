"""The FactorVAE score (Kim & Mnih 2018, "Disentangling by Factorising"), and its registry entry
(it draws its own variance-estimate set and fixed-factor batches)."""

from __future__ import annotations

import warnings

import numpy as np

from .base import Inputs, Metric
from .sampling import ENCODE_CHUNK, active_factors, encode_factors, labelled_batches, split_codes


def _factor_vae_factors(sampler, rng, batch_size: int, num_points: int, active: np.ndarray):
    """Labels (P,) and factor batches (P, B, K) whose labelled factor is fixed within a batch."""
    labels, f = labelled_batches(sampler, rng, batch_size, num_points, active)
    p = np.arange(num_points)
    f[p[:, None], np.arange(batch_size)[None, :], labels[:, None]] = f[p, 0, labels][:, None]
    return labels, f


def _active_dims(variances: np.ndarray, threshold: float) -> np.ndarray:
    """Indices of dims with std ≥ `threshold` (disentanglement_lib's `prune_dims`, whose study
    config sets 0.05: a posterior mean that barely moves has collapsed to the prior), never a
    dim of std 0."""
    std = np.sqrt(variances)
    return np.nonzero((std >= threshold) & (std > 0))[0]


def _factor_vae_votes(z, labels, global_var, active_dims, num_factors) -> np.ndarray:
    """(P, B, D) codes -> (K, D) votes: factor label against the argmin normalised variance."""
    local = np.var(z, axis=1, ddof=1, dtype=np.float64)  # (P, D)
    ratio = local[:, active_dims] / global_var[active_dims]
    dims = active_dims[np.argmin(ratio, axis=1)]  # back to true dim indices
    votes = np.zeros((num_factors, len(global_var)), dtype=np.int64)
    np.add.at(votes, (labels, dims), 1)
    return votes


def _factor_vae_from_codes(z_var, ytr, ztr, yev, zev, num_factors, prune_threshold) -> dict:
    global_var = np.var(z_var, axis=0, ddof=1, dtype=np.float64)  # (D,)
    active_dims = _active_dims(global_var, prune_threshold)
    if not len(active_dims):
        warnings.warn("FactorVAE: every code dim is collapsed; accuracies set to 0", stacklevel=3)
        return {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0.0}
    votes_tr = _factor_vae_votes(ztr, ytr, global_var, active_dims, num_factors)
    votes_ev = _factor_vae_votes(zev, yev, global_var, active_dims, num_factors)
    vote = np.argmax(votes_tr, axis=0)  # (D,) majority-vote classifier: dim -> factor
    cols = np.arange(votes_tr.shape[1])
    return {
        "train_accuracy": float(votes_tr[vote, cols].sum() / votes_tr.sum()),
        "eval_accuracy": float(votes_ev[vote, cols].sum() / votes_ev.sum()),
        "num_active_dims": float(len(active_dims)),
    }


def factor_vae_score(
    sampler,
    encode_fn,
    rng,
    batch_size=64,
    num_train=10000,
    num_eval=5000,
    num_variance_estimate=10000,
    prune_threshold=0.05,
    *,
    chunk=ENCODE_CHUNK,
) -> dict:
    """FactorVAE metric (Kim & Mnih 2018, "Disentangling by Factorising").

    Follows disentanglement_lib's `compute_factor_vae`: global variances from
    `num_variance_estimate` codes; each point fixes one factor across `batch_size` samples and
    votes (factor, argmin over active dims of local variance / global variance); the classifier
    is the majority vote per dim; train and eval accuracies.
    Pruning is the library's: a dim is active when its std ≥ `prune_threshold` (0.05 in the
    unsupervised study). Differences: exactly constant dims and an all-collapsed code are handled
    (no active dim → accuracies 0 with a warning); the argmin
    is mapped back to the true dim index and `num_active_dims` is the true count (the library
    reports D); batches are drawn at once and duplicates encoded once.
    """
    if batch_size < 2:
        raise ValueError(f"factor_vae_score needs batch_size >= 2 for a variance; got {batch_size}")
    active = active_factors(sampler)
    k = len(sampler.factor_sizes)
    f_var = np.asarray(sampler.sample_factors(num_variance_estimate, rng))[None]
    ytr, ftr = _factor_vae_factors(sampler, rng, batch_size, num_train, active)
    yev, fev = _factor_vae_factors(sampler, rng, batch_size, num_eval, active)
    blocks = [f_var, ftr, fev]
    codes = encode_factors(
        sampler, encode_fn, np.concatenate([x.reshape(-1, k) for x in blocks]), chunk
    )
    z_var, ztr, zev = split_codes(codes, blocks)
    return _factor_vae_from_codes(z_var[0], ytr, ztr, yev, zev, k, prune_threshold)


def _sample(sampler, rng, counts: dict, active: np.ndarray):
    """The variance-estimate set (1, N, K), then the train and eval batches, drawn in that order."""
    blocks = {"var": np.asarray(sampler.sample_factors(counts["num_variance_estimate"], rng))[None]}
    labels = {}
    for split in ("train", "eval"):
        labels[split], blocks[split] = _factor_vae_factors(
            sampler, rng, counts["batch_size"], counts[f"factor_vae_{split}"], active
        )
    return blocks, labels


def _score(data: Inputs, seed: int) -> dict:
    z, y = data.codes, data.labels
    res = _factor_vae_from_codes(z["var"][0], y["train"], z["train"], y["eval"], z["eval"],
                                 len(data.sampler.factor_sizes), data.counts["prune_threshold"])  # fmt: skip
    return {f"factor_vae_{key}": val for key, val in res.items()}


METRIC = Metric(
    "factor_vae",
    _score,
    counts=(
        "batch_size",
        "factor_vae_train",
        "factor_vae_eval",
        "num_variance_estimate",
        "prune_threshold",
    ),  # fmt: skip
    sample=_sample,
)
