"""DCI: Disentanglement, Completeness, Informativeness (Eastwood & Williams 2018, "A Framework for
the Quantitative Evaluation of Disentangled Representations"), and its registry entry.

``dci(backend="fast")`` (the default) runs ``GradientBoostingClassifier()``'s boosting and
importances in numpy on binned codes (``_boost``); ``backend="reference"`` runs sklearn's
classifier itself, as disentanglement_lib does. Speed-up and agreement: BENCHMARKS.md, "Metrics"
(bench/bench_metrics.py).
"""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import GradientBoostingClassifier

from .base import Inputs, Metric
from .common import check_train_test, seed_of, varying_columns

DCI_FAST_BINS = 255  # candidate thresholds per code dim in dci(backend="fast")


def _entropy_score(p: np.ndarray, base: int) -> np.ndarray:
    """1 - H_base(row of p) per row, with disentanglement_lib's 1e-11 smoothing."""
    if base < 2:  # one outcome: trivially fully concentrated (the library divides by log 1)
        return np.ones(p.shape[0])
    p = p + 1e-11
    p = p / p.sum(axis=1, keepdims=True)
    return 1.0 + np.sum(p * np.log(p), axis=1) / np.log(base)


def _weighted_concentration(importance: np.ndarray) -> float:
    """Sum over rows of (1 - entropy of the row) weighted by the row's share of importance."""
    per_row = _entropy_score(importance, importance.shape[1])
    total = importance.sum()
    weight = (
        importance.sum(axis=1) / total if total > 0 else np.full(len(per_row), 1 / len(per_row))
    )
    return float(np.sum(per_row * weight))


def _bin_codes(x: np.ndarray, x_test: np.ndarray, max_bins: int):
    """Bin each column at split thresholds: the midpoints between its distinct values (exactly
    sklearn's tree thresholds) when it has at most `max_bins` of them, else `max_bins` quantiles.

    Returns train bins (D, N), test bins (D, M), number of bins B; a value goes left of
    threshold t when its bin is <= t."""
    edges = []
    for col in x.T:
        u = np.unique(col)
        if len(u) > max_bins:
            u = np.unique(np.quantile(col, np.linspace(0, 1, max_bins + 1)))
        edges.append((u[:-1] + u[1:]) / 2)
    bins = np.stack([np.searchsorted(e, c) for e, c in zip(edges, x.T)])
    bins_test = np.stack([np.searchsorted(e, c) for e, c in zip(edges, x_test.T)])
    return bins, bins_test, max(len(e) for e in edges) + 1


def _boost(x, y, x_test, rng, max_bins=DCI_FAST_BINS, n_stages=100, learning_rate=0.1, depth=3):
    """GradientBoostingClassifier's algorithm on binned codes -> (importance (D,), pred, pred_test).

    Same as sklearn's defaults: prior init, per stage one depth-3 least-squares regression tree
    per class (one for two classes) on the residual y - p, min 1 sample per leaf, Newton leaf
    values (times (K-1)/K for K > 2 classes), learning rate 0.1, and importance = total
    squared-error reduction of each feature's splits. Only the candidate thresholds differ (bin
    edges instead of every midpoint), which turns sorting per node into one histogram per level
    for all classes at once.
    """
    classes, yi = np.unique(y, return_inverse=True)
    (d, n), m = x.T.shape, len(x_test)
    bins, bins_test, nb = _bin_codes(x, x_test, max_bins)  # (D, N), (D, M)
    onehot = (yi[None, :] == np.arange(len(classes))[:, None]).astype(np.float64)  # (C, N)
    prior = np.clip(onehot.mean(axis=1), 1e-15, 1.0)
    if len(classes) == 2:  # binomial loss: one tree per stage, for the second class
        target, raw = onehot[1:], np.full((1, n), np.log(prior[1] / prior[0]))
    else:
        target, raw = onehot, np.tile(np.log(prior)[:, None], (1, n))
    k = len(target)  # trees per stage
    if nb == 1:  # every code dim is constant: no split exists, predict the majority class
        majority = classes[np.argmax(prior)]
        return np.zeros(d), np.full(n, majority), np.full(m, majority)
    raw_test = np.repeat(raw[:, :1], m, axis=1)
    rows, flat_n, flat_m = np.arange(k)[:, None], np.arange(n), np.arange(m)
    bins_k = np.tile(bins, (1, k))  # (D, k*N): the bins repeated for each tree of a stage
    importance = np.zeros(d)
    for _ in range(n_stages):
        p = 1.0 / (1.0 + np.exp(-raw)) if k == 1 else np.exp(raw - raw.max(axis=0))
        if k > 1:
            p /= p.sum(axis=0)
        g = (target - p).ravel()  # (k*N,) residual = negative gradient
        node, node_test = np.zeros((k, n), np.intp), np.zeros((k, m), np.intp)
        alive = np.ones((k, 1), bool)
        for level in range(depth):
            nn = 2**level
            key = ((rows * nn + node) * nb).ravel()  # (k*N,) histogram row of each residual
            size = k * nn * nb
            idx = [key + b for b in bins_k]
            hist_g = np.stack([np.bincount(i, g, size) for i in idx])
            hist_n = np.stack([np.bincount(i, None, size) for i in idx])
            hist_g = hist_g.reshape(d, k, nn, nb)  # (D, k, nodes, B)
            hist_n = hist_n.reshape(d, k, nn, nb).astype(np.float64)
            gl, nl = np.cumsum(hist_g, -1)[..., :-1], np.cumsum(hist_n, -1)[..., :-1]
            gt, nt = hist_g[0].sum(-1, keepdims=True), hist_n[0].sum(-1, keepdims=True)
            nr = nt - nl
            with np.errstate(divide="ignore", invalid="ignore"):  # empty sides are masked below
                gain = gl**2 / nl + (gt - gl) ** 2 / nr - gt**2 / nt  # squared-error reduction
            gain[(nl == 0) | (nr == 0)] = -np.inf
            order = np.argsort(rng.random_sample((k, d)), axis=1)  # feature visit order per tree
            gain = np.moveaxis(np.moveaxis(gain, 0, 1)[rows, order], 2, 1)  # (k, nodes, D, B-1)
            best = np.argmax(gain.reshape(k, nn, -1), axis=-1)  # first maximum in visit order
            best_gain = np.take_along_axis(gain.reshape(k, nn, -1), best[..., None], -1)[..., 0]
            feat, thr = order[rows, best // (nb - 1)], best % (nb - 1)  # (k, nodes)
            split = alive & np.isfinite(best_gain)  # a node with no valid split stays a leaf
            np.add.at(importance, feat[split], best_gain[split])
            goes = split[rows, node] & (bins[feat[rows, node], flat_n] > thr[rows, node])
            goes_test = split[rows, node_test] & (
                bins_test[feat[rows, node_test], flat_m] > thr[rows, node_test]
            )
            node, node_test = 2 * node + goes, 2 * node_test + goes_test
            alive = np.repeat(split, 2, axis=1)
        leaf = (rows * 2**depth + node).ravel()
        num = np.bincount(leaf, g, k * 2**depth)
        den = np.bincount(leaf, (p * (1 - p)).ravel(), k * 2**depth)
        value = np.divide(num, den, out=np.zeros_like(num), where=np.abs(den) > 1e-150)
        value = value.reshape(k, 2**depth) * ((k - 1) / k if k > 1 else 1.0)
        raw += learning_rate * value[rows, node]
        raw_test += learning_rate * value[rows, node_test]
    if k == 1:
        pred, pred_test = (raw[0] > 0).astype(int), (raw_test[0] > 0).astype(int)
    else:
        pred, pred_test = raw.argmax(axis=0), raw_test.argmax(axis=0)
    total = importance.sum()
    return (importance / total if total > 0 else importance), classes[pred], classes[pred_test]


def dci(
    codes_train,
    factors_train,
    codes_test,
    factors_test,
    *,
    backend: str = "fast",
    random_state=0,
    return_importance: bool = False,
    return_per_factor: bool = False,
) -> dict:
    """Disentanglement, Completeness, Informativeness (Eastwood & Williams 2018, "A Framework for
    the Quantitative Evaluation of Disentangled Representations").

    Follows disentanglement_lib's `compute_dci`: one gradient-boosted classifier per factor, the
    (D, K) importance matrix R from its feature importances; D = Σ_j ρ_j (1 - H_K(R_j·)),
    C = Σ_k ρ_k (1 - H_D(R_·k)); informativeness = mean classification accuracy (train, test).
    backend="reference" is the library's `GradientBoostingClassifier()` (100 trees);
    backend="fast" (default) runs the same boosting and importances on codes binned at
    `DCI_FAST_BINS` quantile thresholds per dim (exact below that many distinct values), see
    `_boost`. Its speed-up over the reference and the difference in D and C are measured by
    bench/bench_metrics.py and stated once, in BENCHMARKS.md ("Metrics").
    Differences: single-valued factors are skipped with a warning; one factor (or one code dim)
    gives D (or C) = 1 instead of an entropy in base 1. `return_importance` adds "importance".
    `return_per_factor` adds "informativeness_test_per_factor", the test accuracy of each
    varying factor (K',).
    """
    if backend not in ("fast", "reference"):
        raise ValueError(f"dci backend must be 'fast' or 'reference'; got {backend!r}")
    ctr, ftr, cte, fte = check_train_test(codes_train, factors_train, codes_test, factors_test)
    keep = varying_columns(ftr)
    seed = seed_of(random_state)
    importance = np.zeros((ctr.shape[1], len(keep)))  # (D, K)
    acc_train, acc_test = [], []
    for i, k in enumerate(keep):
        if backend == "reference":  # disentanglement_lib: GradientBoostingClassifier() defaults
            model = GradientBoostingClassifier(random_state=seed).fit(ctr, ftr[:, k])
            importance[:, i] = model.feature_importances_
            pred, pred_test = model.predict(ctr), model.predict(cte)
        else:
            importance[:, i], pred, pred_test = _boost(
                ctr, ftr[:, k], cte, np.random.RandomState(seed)
            )
        acc_train.append(np.mean(pred == ftr[:, k]))
        acc_test.append(np.mean(pred_test == fte[:, k]))
    out = {
        "disentanglement": _weighted_concentration(importance),
        "completeness": _weighted_concentration(importance.T),
        "informativeness_train": float(np.mean(acc_train)),
        "informativeness_test": float(np.mean(acc_test)),
    }
    if return_per_factor:  # per varying factor: how well the whole code predicts it, (K',)
        out["informativeness_test_per_factor"] = np.asarray(acc_test, float)
    if return_importance:
        out["importance"] = importance
    return out


def _score(data: Inputs, seed: int) -> dict:
    res = dci(*data.train_test(), backend=data.options.get("dci_backend", "fast"),
              random_state=seed, return_per_factor=True)  # fmt: skip
    acc = res.pop("informativeness_test_per_factor")  # (K',)
    out = {f"dci_{key}": val for key, val in res.items()}
    out["per_factor"] = {"informativeness": data.by_factor(acc)}
    return out


METRIC = Metric("dci", _score, counts=("num_train", "num_test"))
