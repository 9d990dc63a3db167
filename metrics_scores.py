"""Sampler-level disentanglement scores and the suite driver (re-exported by metrics.py).

BetaVAE (Higgins et al. 2017) and FactorVAE (Kim & Mnih 2018) draw factor batches from a
ground-truth sampler; `compute_metrics` runs the whole suite of metrics.py on one shared,
de-duplicated encoding pass. Sampler contract (disentanglement_lib's GroundTruthData):
`factor_names`, `factor_sizes`, `sample_factors(n, rng) -> int (n, K)`,
`images_from_factors(int (n, K)) -> float32 (n, H, W, 1)` (deterministic).
`encode_fn(images (n, H, W, 1)) -> (n, D)` mean codes, called with up to `chunk` images.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from metrics import _as_2d, _seed, dci, mig_per_factor, modularity_explicitness, sap

# Sample counts of each protocol. "study" = disentanglement_lib's unsupervised study;
# "quick" shrinks every count for CPU and must be labelled as such wherever it is shown.
PROTOCOLS: dict[str, dict] = {
    "study": dict(
        num_train=10000,  # MIG, DCI, SAP, Modularity/Explicitness train codes
        num_test=5000,  # their test codes
        batch_size=64,  # BetaVAE pairs per point, FactorVAE samples per vote
        beta_vae_train=10000,
        beta_vae_eval=5000,
        factor_vae_train=10000,
        factor_vae_eval=5000,
        num_variance_estimate=10000,
        prune_threshold=0.05,
        num_bins=20,
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
    ),
}
METRICS = ("mig", "dci", "sap", "modularity_explicitness", "beta_vae", "factor_vae")
ENCODE_CHUNK = 256  # images per encode_fn call


# ---------------------------------------------------------------------------- encoding
def _encode_unique(sampler, encode_fn, factors, chunk=ENCODE_CHUNK, progress=False):
    """Encode each distinct factor row once, in chunks of `chunk` images -> (codes, n_unique)."""
    factors = _as_2d(factors, "factors").astype(np.int64)
    sizes = np.asarray(sampler.factor_sizes, dtype=np.int64)
    if factors.shape[1] != len(sizes):
        raise ValueError(
            f"factors has {factors.shape[1]} columns but the sampler has {len(sizes)} factors "
            f"{list(sampler.factor_names)}"
        )
    bad = np.nonzero(((factors < 0) | (factors >= sizes)).any(axis=0))[0]
    if len(bad):
        k = int(bad[0])
        raise ValueError(
            f"factor {sampler.factor_names[k]!r} has values outside [0, {sizes[k]}): "
            f"min {factors[:, k].min()}, max {factors[:, k].max()}"
        )
    if not len(factors):
        raise ValueError("encode_factors got no factor rows (factors.shape[0] == 0)")
    # images_from_factors is deterministic, so one image per distinct factor combination.
    keys = np.ravel_multi_index(tuple(factors.T), tuple(sizes))  # (N,)
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    rows = factors[first]  # (U, K)
    codes = None
    starts = range(0, len(rows), chunk)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=f"encode {len(rows)} images", unit="batch", leave=False)
    for s in starts:
        batch = rows[s : s + chunk]
        z = np.asarray(encode_fn(sampler.images_from_factors(batch)))
        if z.ndim != 2 or z.shape[0] != len(batch):
            raise ValueError(
                f"encode_fn must map {len(batch)} images to ({len(batch)}, D) codes; got {z.shape}"
            )
        if not np.all(np.isfinite(z)):
            raise ValueError("encode_fn returned NaN or inf codes (a diverged model?)")
        if codes is None:
            codes = np.empty((len(rows), z.shape[1]), dtype=np.result_type(z.dtype, np.float32))
        codes[s : s + len(batch)] = z
    return codes[inverse.ravel()], len(rows)


def encode_factors(sampler, encode_fn, factors, chunk: int = ENCODE_CHUNK) -> np.ndarray:
    """Codes (N, D) of the images of `factors` (N, K): each distinct row rendered and encoded
    once, `chunk` images per `encode_fn` call (never one image at a time).

    Not a metric: it replaces disentanglement_lib's `generate_batch_factor_code`, which renders
    and encodes every sample, repeats included, 16 at a time. Valid because
    `images_from_factors` is deterministic (no observation noise in this project's data).
    """
    return _encode_unique(sampler, encode_fn, factors, chunk)[0]


def _by_factor(sampler, active, factors, values) -> dict:
    """{factor name: value} for the factors that vary in ``factors`` (N, K_active), in the order
    of ``values`` (the metric cores skip single-valued factors, see metrics._varying)."""
    names = [str(sampler.factor_names[i]) for i in active]
    varying = [n for n, col in zip(names, np.asarray(factors).T) if len(np.unique(col)) > 1]
    return {n: float(v) for n, v in zip(varying, values)}


def _active_factors(sampler) -> np.ndarray:
    """Factors with more than one value in the sampler; warns (by name) about the others."""
    sizes = list(sampler.factor_sizes)
    for k, s in enumerate(sizes):
        if s < 2:
            warnings.warn(
                f"factor {sampler.factor_names[k]!r} has a single value; skipped", stacklevel=3
            )
    active = np.array([k for k, s in enumerate(sizes) if s > 1], dtype=np.int64)
    if not len(active):
        raise ValueError(f"sampler has no factor with more than one value: sizes {sizes}")
    return active


# ---------------------------------------------------------------------------- BetaVAE
def _labelled_batches(sampler, rng, batch_size: int, num_points: int, active: np.ndarray):
    """Labels (P,) drawn among ``active`` factors, then one writable factor batch (P, B, K).

    The draw order (labels, then the batch) is part of the reproducible numbers of both scores."""
    labels = active[rng.randint(len(active), size=num_points)]
    return labels, _factor_batch(sampler, rng, batch_size, num_points)


def _factor_batch(sampler, rng, batch_size: int, num_points: int) -> np.ndarray:
    """(P, B, K) factors from ``sampler.sample_factors``, a writable copy."""
    f = np.array(sampler.sample_factors(num_points * batch_size, rng))
    return f.reshape(num_points, batch_size, len(sampler.factor_sizes))


def _beta_vae_factors(sampler, rng, batch_size: int, num_points: int, active: np.ndarray):
    """Labels (P,) and two factor batches (P, B, K) that agree on the labelled factor."""
    labels, f1 = _labelled_batches(sampler, rng, batch_size, num_points, active)
    f2 = _factor_batch(sampler, rng, batch_size, num_points)
    p, b = np.arange(num_points)[:, None], np.arange(batch_size)[None, :]
    f2[p, b, labels[:, None]] = f1[p, b, labels[:, None]]
    return labels, f1, f2


def _beta_vae_points(z1: np.ndarray, z2: np.ndarray) -> np.ndarray:
    """(P, B, D) pair codes -> (P, D) features: mean over the batch of |z1 - z2|."""
    return np.mean(np.abs(z1.astype(np.float64) - z2), axis=1)


def _beta_vae_classify(x_train, y_train, x_eval, y_eval, seed: int) -> dict:
    model = LogisticRegression(random_state=seed).fit(x_train, y_train)
    return {
        "train_accuracy": float(np.mean(model.predict(x_train) == y_train)),
        "eval_accuracy": float(np.mean(model.predict(x_eval) == y_eval)),
    }


def beta_vae_score(
    sampler, encode_fn, rng, batch_size=64, num_train=10000, num_eval=5000, *, chunk=ENCODE_CHUNK
) -> dict:
    """BetaVAE metric (Higgins et al. 2017, "β-VAE: Learning Basic Visual Concepts with a
    Constrained Variational Framework").

    Follows disentanglement_lib's `compute_beta_vae_sklearn`: a point picks a factor, draws
    `batch_size` pairs that share it, and its feature is the mean |z1 - z2| over the pairs;
    sklearn LogisticRegression (defaults) predicts the factor; train and eval accuracies.
    Differences: all pairs are drawn at once and encoded in chunks with duplicates encoded once,
    the fixed factor is drawn among factors with more than one value, and the classifier is
    seeded from `rng`. At study counts lbfgs can stop at sklearn's max_iter=100 with a
    ConvergenceWarning; it is left visible and the default kept for comparability. Measured on a
    demo-preset run (β=2): eval accuracy 0.7598 with max_iter 100 and with 5000, train 0.7650 vs
    0.7648.
    """
    active = _active_factors(sampler)
    ytr, a_tr, b_tr = _beta_vae_factors(sampler, rng, batch_size, num_train, active)
    yev, a_ev, b_ev = _beta_vae_factors(sampler, rng, batch_size, num_eval, active)
    seed = _seed(rng)
    blocks = [a_tr, b_tr, a_ev, b_ev]
    codes = encode_factors(
        sampler, encode_fn, np.concatenate([x.reshape(-1, x.shape[-1]) for x in blocks]), chunk
    )
    za_tr, zb_tr, za_ev, zb_ev = _split(codes, blocks)
    return _beta_vae_classify(
        _beta_vae_points(za_tr, zb_tr), ytr, _beta_vae_points(za_ev, zb_ev), yev, seed
    )


def _split(codes: np.ndarray, blocks: list) -> list:
    """Cut concatenated codes back into the (..., D) shapes of the factor blocks (..., K)."""
    out, start = [], 0
    for blk in blocks:
        n = int(np.prod(blk.shape[:-1]))
        out.append(codes[start : start + n].reshape(*blk.shape[:-1], codes.shape[1]))
        start += n
    return out


# ---------------------------------------------------------------------------- FactorVAE
def _factor_vae_factors(sampler, rng, batch_size: int, num_points: int, active: np.ndarray):
    """Labels (P,) and factor batches (P, B, K) whose labelled factor is fixed within a batch."""
    labels, f = _labelled_batches(sampler, rng, batch_size, num_points, active)
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
    active = _active_factors(sampler)
    k = len(sampler.factor_sizes)
    f_var = np.asarray(sampler.sample_factors(num_variance_estimate, rng))[None]
    ytr, ftr = _factor_vae_factors(sampler, rng, batch_size, num_train, active)
    yev, fev = _factor_vae_factors(sampler, rng, batch_size, num_eval, active)
    blocks = [f_var, ftr, fev]
    codes = encode_factors(
        sampler, encode_fn, np.concatenate([x.reshape(-1, k) for x in blocks]), chunk
    )
    z_var, ztr, zev = _split(codes, blocks)
    return _factor_vae_from_codes(z_var[0], ytr, ztr, yev, zev, k, prune_threshold)


# ---------------------------------------------------------------------------- the driver
def compute_metrics(
    sampler,
    encode_fn,
    rng,
    protocol: str = "study",
    metrics=None,
    progress: bool = True,
    *,
    chunk: int = ENCODE_CHUNK,
    dci_backend: str = "fast",
) -> dict:
    """The whole suite on one sampler: BetaVAE (Higgins et al. 2017), FactorVAE (Kim & Mnih
    2018), MIG (Chen et al. 2018), DCI (Eastwood & Williams 2018), SAP discrete and continuous
    (Kumar et al. 2018), Modularity and Explicitness (Ridgeway & Mozer 2018).

    Protocol counts are `PROTOCOLS[protocol]` ("study" = disentanglement_lib's unsupervised
    study; "quick" is smaller, for CPU). Unlike the library, which samples a fresh set per
    metric, MIG/DCI/SAP/Modularity share one train and one test set, and every factor set of
    every metric is encoded in one pass in which each distinct factor combination is encoded once.
    `rng` (a RandomState) is split once into one stream per metric, so a metric's number does not
    depend on which other metrics run, and the same seed gives the same numbers.
    Returns a flat dict: the scores, `protocol`, the protocol's counts, `num_images_requested`,
    `num_images_encoded`, and timings in seconds (`time_encode_s`, `time_<metric>_s`, `time_total_s`).
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {sorted(PROTOCOLS)}; got {protocol!r}")
    metrics = list(METRICS if metrics is None else metrics)
    unknown = sorted(set(metrics) - set(METRICS))
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; choose from {list(METRICS)}")
    cfg = PROTOCOLS[protocol]
    t_start = time.perf_counter()
    active = _active_factors(sampler)
    k = len(sampler.factor_sizes)
    # One stream per consumer, drawn in a fixed order whatever `metrics` holds.
    streams = dict(
        zip(("data", "beta_vae_data", "factor_vae_data") + METRICS, rng.randint(2**31 - 1, size=9))
    )

    blocks: dict[str, np.ndarray] = {}  # name -> factors (..., K)
    labels: dict[str, np.ndarray] = {}
    if set(metrics) & {"mig", "dci", "sap", "modularity_explicitness"}:
        r = np.random.RandomState(streams["data"])
        blocks["train"] = np.asarray(sampler.sample_factors(cfg["num_train"], r))
        blocks["test"] = np.asarray(sampler.sample_factors(cfg["num_test"], r))
    if "beta_vae" in metrics:
        r = np.random.RandomState(streams["beta_vae_data"])
        for split in ("train", "eval"):
            y, f1, f2 = _beta_vae_factors(
                sampler, r, cfg["batch_size"], cfg[f"beta_vae_{split}"], active
            )
            labels[f"bv_{split}"], blocks[f"bv_{split}_a"], blocks[f"bv_{split}_b"] = y, f1, f2
    if "factor_vae" in metrics:
        r = np.random.RandomState(streams["factor_vae_data"])
        blocks["fv_var"] = np.asarray(sampler.sample_factors(cfg["num_variance_estimate"], r))[None]
        for split in ("train", "eval"):
            y, f = _factor_vae_factors(
                sampler, r, cfg["batch_size"], cfg[f"factor_vae_{split}"], active
            )
            labels[f"fv_{split}"], blocks[f"fv_{split}"] = y, f

    t0 = time.perf_counter()
    flat = np.concatenate([b.reshape(-1, k) for b in blocks.values()])
    codes, n_unique = _encode_unique(sampler, encode_fn, flat, chunk, progress)
    z = dict(zip(blocks, _split(codes, list(blocks.values()))))
    out: dict = {"protocol": protocol, **cfg, "dci_backend": dci_backend, "per_factor": {}}
    out.update(num_images_requested=len(flat), num_images_encoded=n_unique)
    out["time_encode_s"] = time.perf_counter() - t0

    if "train" in blocks:
        tt = (z["train"], blocks["train"][:, active], z["test"], blocks["test"][:, active])
    todo = metrics
    if progress:
        from tqdm.auto import tqdm

        todo = tqdm(metrics, desc=f"metrics ({protocol})", unit="metric")
    # The fits are small: multi-threaded BLAS/OpenMP teams only contend on shared cores.
    with threadpool_limits(limits=1):
        for name in todo:
            t0, seed = time.perf_counter(), int(streams[name])
            if name == "mig":
                gaps = mig_per_factor(tt[0], tt[1], num_bins=cfg["num_bins"])  # (K',)
                out["mig"] = float(np.mean(gaps))
                out["per_factor"]["mig"] = _by_factor(sampler, active, tt[1], gaps)
            elif name == "dci":
                res = dci(*tt, backend=dci_backend, random_state=seed, return_per_factor=True)
                acc = res.pop("informativeness_test_per_factor")  # (K',)
                out.update({f"dci_{key}": val for key, val in res.items()})
                out["per_factor"]["informativeness"] = _by_factor(sampler, active, tt[1], acc)
            elif name == "sap":
                out["sap_discrete"] = sap(*tt, continuous=False, random_state=seed)
                out["sap_continuous"] = sap(*tt, continuous=True)
            elif name == "modularity_explicitness":
                out.update(
                    modularity_explicitness(*tt, num_bins=cfg["num_bins"], random_state=seed)
                )
            elif name == "beta_vae":
                res = _beta_vae_classify(
                    _beta_vae_points(z["bv_train_a"], z["bv_train_b"]),
                    labels["bv_train"],
                    _beta_vae_points(z["bv_eval_a"], z["bv_eval_b"]),
                    labels["bv_eval"],
                    seed,
                )
                out.update({f"beta_vae_{key}": val for key, val in res.items()})
            elif name == "factor_vae":
                res = _factor_vae_from_codes(
                    z["fv_var"][0],
                    labels["fv_train"],
                    z["fv_train"],
                    labels["fv_eval"],
                    z["fv_eval"],
                    k,
                    cfg["prune_threshold"],
                )
                out.update({f"factor_vae_{key}": val for key, val in res.items()})
            out[f"time_{name}_s"] = time.perf_counter() - t0
    out["time_total_s"] = time.perf_counter() - t_start
    return out
