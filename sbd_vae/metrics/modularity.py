"""Modularity and Explicitness (Ridgeway & Mozer 2018, "Learning Deep Disentangled Embeddings
With the F-Statistic Loss"), and its registry entry."""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from .base import Inputs, Metric
from .common import check_train_test, discretize, mutual_info_matrix, seed_of, varying_columns


def _modularity(mi: np.ndarray) -> float:
    """Ridgeway & Mozer modularity from a (D, K) MI matrix; an uninformative code scores 0."""
    sq = mi**2
    top = sq.max(axis=1)
    if mi.shape[1] < 2:  # one factor: every informative code is trivially modular
        return float(np.mean(top > 0))
    dev = np.divide(
        sq.sum(axis=1) - top, top * (mi.shape[1] - 1), out=np.ones_like(top), where=top > 0
    )
    return float(np.mean(np.where(top > 0, 1.0 - dev, 0.0)))


def _ovr_auc(y: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> float:
    """Macro one-vs-rest ROC-AUC over the classes that have positives and negatives in y."""
    aucs = []
    for c_idx, c in enumerate(classes):
        pos = y == c
        if 0 < pos.sum() < len(y):
            aucs.append(roc_auc_score(pos, proba[:, c_idx]))
    return float(np.mean(aucs)) if aucs else 0.5


def modularity_explicitness(
    codes_train, factors_train, codes_test, factors_test, *, num_bins: int = 20, random_state=0
) -> dict:
    """Modularity and Explicitness (Ridgeway & Mozer 2018, "Learning Deep Disentangled
    Embeddings With the F-Statistic Loss").

    Follows disentanglement_lib's `compute_modularity_explicitness`: modularity from the 20-bin
    discretised mutual information of the train codes (1 - the normalised squared-MI spread
    beyond each code's best factor, averaged over codes, 0 for an uninformative code);
    explicitness = ROC-AUC of a default LogisticRegression per factor on train-standardised
    codes, one-vs-rest averaged over classes, then over factors (train and test).
    Differences: zero-variance codes are standardised with std 1 (no NaN), a class absent from a
    split is left out of that split's AUC (the library's binariser misaligns columns), the
    classifier is seeded, single-valued factors are skipped with a warning, and with one factor
    an informative code counts as modular (the library divides by K-1 = 0).
    """
    ctr, ftr, cte, fte = check_train_test(codes_train, factors_train, codes_test, factors_test)
    keep = varying_columns(ftr)
    ftr, fte = ftr[:, keep], fte[:, keep]
    mi = mutual_info_matrix(discretize(ctr, num_bins), ftr)
    mean, std = ctr.mean(axis=0), ctr.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    ztr, zte = (ctr - mean) / std, (cte - mean) / std
    seed = seed_of(random_state)
    exp_train, exp_test = [], []
    for k in range(ftr.shape[1]):
        clf = LogisticRegression(random_state=seed).fit(ztr, ftr[:, k])
        exp_train.append(_ovr_auc(ftr[:, k], clf.predict_proba(ztr), clf.classes_))
        exp_test.append(_ovr_auc(fte[:, k], clf.predict_proba(zte), clf.classes_))
    return {
        "modularity": _modularity(mi),
        "explicitness_train": float(np.mean(exp_train)),
        "explicitness_test": float(np.mean(exp_test)),
    }


def _score(data: Inputs, seed: int) -> dict:
    return modularity_explicitness(*data.train_test(), num_bins=data.counts["num_bins"],
                                   random_state=seed)  # fmt: skip


METRIC = Metric("modularity_explicitness", _score, counts=("num_train", "num_test", "num_bins"))
