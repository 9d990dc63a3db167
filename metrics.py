"""Disentanglement metrics for the β-VAE study: the array-level cores (this file) and, re-exported
from metrics_scores.py, the sampler-level scores and the driver.

- array-level cores `mig`, `dci`, `sap`, `modularity_explicitness` take codes (N, D) float and
  factors (N, K) int and return a float or a dict of floats;
- `beta_vae_score`, `factor_vae_score` draw their own factor batches from a sampler;
- `compute_metrics(sampler, encode_fn, rng, protocol)` draws every factor set it needs first,
  encodes each distinct factor combination exactly once (`encode_factors`), then runs the suite.
Import everything from here: `from metrics import mig, dci, compute_metrics, PROTOCOLS`.

Deliberate differences from disentanglement_lib (google-research, evaluation/metrics/*.py):
- an exactly constant code dimension never produces NaN (entropy, correlation, standardisation,
  modularity's max-MI denominator are guarded);
- a factor with a single value is skipped with a warning instead of dividing by its zero entropy;
- FactorVAE maps the argmin over *active* dims back to the true dim index (the library indexes
  the vote matrix with the position inside the active subset) and reports the true active count;
- DCI defaults to a numpy re-implementation of `GradientBoostingClassifier()`'s boosting and
  importances on binned codes (`_boost`), several times faster; `backend="reference"` runs the
  library's configuration itself (bench/bench_metrics.py reports speed-up and agreement).
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import mutual_info_score, roc_auc_score
from sklearn.svm import LinearSVC

DCI_FAST_BINS = 255  # candidate thresholds per code dim in dci(backend="fast")


# ----------------------------------------------------------------------------- input checks
def _as_2d(x, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D (N, D); got shape {x.shape}")
    return x


def _check_pair(codes, factors, cname="codes", fname="factors"):
    """Validate one (codes (N, D) float, factors (N, K) int) pair; returns float64, int64."""
    codes, factors = _as_2d(codes, cname), _as_2d(factors, fname)
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


def _check_train_test(ctr, ftr, cte, fte):
    ctr, ftr = _check_pair(ctr, ftr, "codes_train", "factors_train")
    cte, fte = _check_pair(cte, fte, "codes_test", "factors_test")
    if ctr.shape[1] != cte.shape[1] or ftr.shape[1] != fte.shape[1]:
        raise ValueError(
            f"train and test widths differ: codes {ctr.shape} vs {cte.shape}, "
            f"factors {ftr.shape} vs {fte.shape}"
        )
    return ctr, ftr, cte, fte


def _varying(factors: np.ndarray) -> np.ndarray:
    """Indices of the factor columns with more than one value; warns about the others."""
    keep = [k for k in range(factors.shape[1]) if np.unique(factors[:, k]).size > 1]
    for k in sorted(set(range(factors.shape[1])) - set(keep)):
        warnings.warn(
            f"factor column {k} has a single value; skipped (its entropy is 0)", stacklevel=3
        )
    if not keep:
        raise ValueError(f"no factor has more than one value (factors shape {factors.shape})")
    return np.asarray(keep)


def _seed(random_state) -> int:
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(2**31 - 1))
    return int(random_state)


# ------------------------------------------------------------------ shared information maths
def _discretize(codes: np.ndarray, num_bins: int) -> np.ndarray:
    """Equal-width histogram bins per code dim, as disentanglement_lib's `_histogram_discretize`.

    np.histogram of a constant column spans [v-0.5, v+0.5], so constant dims map to one bin.
    """
    out = np.empty(codes.shape, dtype=np.int64)  # (N, D)
    for j in range(codes.shape[1]):
        edges = np.histogram(codes[:, j], bins=num_bins)[1]
        out[:, j] = np.digitize(codes[:, j], edges[:-1])
    return out


def _mutual_info_matrix(binned: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """(D, K) discrete mutual information in nats (sklearn `mutual_info_score`)."""
    m = np.zeros((binned.shape[1], factors.shape[1]))
    for j in range(binned.shape[1]):
        for k in range(factors.shape[1]):
            m[j, k] = mutual_info_score(factors[:, k], binned[:, j])
    return m


def _top_two_gap(score: np.ndarray) -> np.ndarray:
    """Per column (factor): best minus second-best row; a single row counts the second as 0."""
    s = np.sort(score, axis=0)[::-1]  # (D, K) descending
    second = s[1] if s.shape[0] > 1 else np.zeros(s.shape[1])
    return s[0] - second


# ------------------------------------------------------------------------------------- MIG
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
    codes, factors = _check_pair(codes, factors)
    factors = factors[:, _varying(factors)]
    m = _mutual_info_matrix(_discretize(codes, num_bins), factors)  # (D, K)
    entropy = np.array([mutual_info_score(f, f) for f in factors.T])  # (K,) nats
    return _top_two_gap(m) / entropy


# ------------------------------------------------------------------------------------- DCI
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
    `_boost`. Measured against the reference (bench/bench_metrics.py, 10 dims, 5 factors):
    ~6× faster with D and C within 0.005 at 10000 codes, ~4× and within 0.025 at 2000.
    Differences: single-valued factors are skipped with a warning; one factor (or one code dim)
    gives D (or C) = 1 instead of an entropy in base 1. `return_importance` adds "importance".
    `return_per_factor` adds "informativeness_test_per_factor", the test accuracy of each
    varying factor (K',).
    """
    if backend not in ("fast", "reference"):
        raise ValueError(f"dci backend must be 'fast' or 'reference'; got {backend!r}")
    ctr, ftr, cte, fte = _check_train_test(codes_train, factors_train, codes_test, factors_test)
    keep = _varying(ftr)
    seed = _seed(random_state)
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


# ------------------------------------------------------------------------------------- SAP
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
    ctr, ftr, cte, fte = _check_train_test(codes_train, factors_train, codes_test, factors_test)
    keep = _varying(ftr)
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
        seed = _seed(random_state)
        score = np.zeros((ctr.shape[1], ftr.shape[1]))
        for j in range(ctr.shape[1]):
            for k in range(ftr.shape[1]):
                svc = LinearSVC(C=0.01, class_weight="balanced", random_state=seed)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    svc.fit(ctr[:, j : j + 1], ftr[:, k])
                score[j, k] = np.mean(svc.predict(cte[:, j : j + 1]) == fte[:, k])
    return float(np.mean(_top_two_gap(score)))


# ---------------------------------------------------------------- Modularity / Explicitness
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
    ctr, ftr, cte, fte = _check_train_test(codes_train, factors_train, codes_test, factors_test)
    keep = _varying(ftr)
    ftr, fte = ftr[:, keep], fte[:, keep]
    mi = _mutual_info_matrix(_discretize(ctr, num_bins), ftr)
    mean, std = ctr.mean(axis=0), ctr.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    ztr, zte = (ctr - mean) / std, (cte - mean) / std
    seed = _seed(random_state)
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


# The sampler-level API lives in metrics_scores.py, which imports this module; resolving it lazily
# (PEP 562) keeps `from metrics import compute_metrics` working whichever module is imported first.
_SCORES_API = (
    "PROTOCOLS",
    "METRICS",
    "ENCODE_CHUNK",
    "encode_factors",
    "beta_vae_score",
    "factor_vae_score",
    "compute_metrics",
)
__all__ = ["mig", "dci", "sap", "modularity_explicitness", *_SCORES_API]


def __getattr__(name: str):
    if name in _SCORES_API:
        import metrics_scores

        return getattr(metrics_scores, name)
    raise AttributeError(f"module 'metrics' has no attribute {name!r}")
