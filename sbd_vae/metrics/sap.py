"""SAP, Separated Attribute Predictability (Kumar et al. 2018, "Variational Inference of
Disentangled Latent Concepts from Unlabeled Observations"), and its registry entry: the discrete
SAP of disentanglement_lib's study (``sap_discrete``) and the continuous variant."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.svm import LinearSVC

from .base import Inputs, Metric
from .common import check_train_test, seed_of, top_two_gap, varying_columns


def sap(
    codes_train,
    factors_train,
    codes_test,
    factors_test,
    continuous: bool = False,
    *,
    random_state=0,
) -> float:
    """Separated Attribute Predictability (Kumar et al. 2018, "Variational Inference of
    Disentangled Latent Concepts from Unlabeled Observations", Sec. 3).

    Follows disentanglement_lib's `compute_sap`: the (D, K) score matrix is, for discrete factors,
    the test accuracy of LinearSVC(C=0.01, class_weight="balanced") on the single code dim, and
    for `continuous=True` the squared Pearson correlation on the train set; SAP is the mean over
    factors of the gap between the two best dims.
    Differences: a zero-variance code scores 0 (no NaN), single-valued factors are skipped with
    a warning, the SVC is seeded, and liblinear's ConvergenceWarning is silenced (C=0.01 on
    unscaled 1-D codes hits max_iter harmlessly; the library shows it D×K times).
    """
    ctr, ftr, cte, fte = check_train_test(codes_train, factors_train, codes_test, factors_test)
    keep = varying_columns(ftr)
    ftr, fte = ftr[:, keep], fte[:, keep]
    if continuous:
        # An exactly constant dim (np.ptp == 0; its mean-centred values may be rounding noise,
        # not 0) correlates with nothing: score 0. The library tests var > 1e-12 instead.
        zc = np.where(np.ptp(ctr, axis=0) > 0, ctr - ctr.mean(axis=0), 0.0)
        fc = ftr - ftr.mean(axis=0)
        cov = zc.T @ fc  # (D, K)
        denom = np.outer(np.sum(zc**2, axis=0), np.sum(fc**2, axis=0))
        score = np.divide(cov**2, denom, out=np.zeros_like(cov), where=denom > 0)
    else:
        seed = seed_of(random_state)
        score = np.zeros((ctr.shape[1], ftr.shape[1]))
        for j in range(ctr.shape[1]):
            for k in range(ftr.shape[1]):
                svc = LinearSVC(C=0.01, class_weight="balanced", random_state=seed)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    svc.fit(ctr[:, j : j + 1], ftr[:, k])
                score[j, k] = np.mean(svc.predict(cte[:, j : j + 1]) == fte[:, k])
    return float(np.mean(top_two_gap(score)))


def _score(data: Inputs, seed: int) -> dict:
    tt = data.train_test()
    return {
        "sap_discrete": sap(*tt, continuous=False, random_state=seed),
        "sap_continuous": sap(*tt, continuous=True),
    }


METRIC = Metric("sap", _score, counts=("num_train", "num_test"))
