"""``compute_metrics``: every registered metric on one sampler, from one shared encoding pass."""

from __future__ import annotations

import time

import numpy as np
from threadpoolctl import threadpool_limits

from ..protocol import check_protocol
from .base import Inputs
from .registry import REGISTRY, metric_counts, streams
from .sampling import ENCODE_CHUNK, active_factors, encode_unique, split_codes


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
    """The whole suite on one sampler: every metric of ``registry.REGISTRY`` (BetaVAE, Higgins et
    al. 2017; FactorVAE, Kim & Mnih 2018; MIG, Chen et al. 2018; DCI, Eastwood & Williams 2018;
    SAP discrete and continuous, Kumar et al. 2018; Modularity and Explicitness, Ridgeway & Mozer
    2018), or the names in ``metrics``.

    Protocol counts are ``protocol.PROTOCOLS[protocol]`` ("study" = disentanglement_lib's
    unsupervised study; "quick" is smaller, for CPU). Unlike the library, which samples a fresh
    set per metric, the metrics without a sampler of their own share one train and one test set,
    and every factor set of every metric is encoded in one pass in which each distinct factor
    combination is encoded once. ``rng`` (a RandomState) is split once into one stream per
    consumer (``registry.streams``), so a metric's number depends neither on which other metrics
    run nor on metrics registered after it, and the same seed gives the same numbers.
    ``dci_backend`` is DCI's ``backend``. Returns a flat dict: the scores, ``per_factor``,
    ``protocol``, the protocol's metric counts, ``dci_backend``, ``num_images_requested``,
    ``num_images_encoded``, and timings in seconds (``time_encode_s``, ``time_<metric>_s``,
    ``time_total_s``).
    """
    table = check_protocol(protocol)
    names = list(REGISTRY if metrics is None else metrics)
    unknown = sorted(set(names) - set(REGISTRY))
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; choose from {list(REGISTRY)}")
    missing = sorted({c for n in names for c in REGISTRY[n].counts} - set(table))
    if missing:
        raise ValueError(f"protocol {protocol!r} has no count {missing}: add it to "
                         "sbd_vae/protocol.py (PROTOCOLS)")  # fmt: skip
    t_start = time.perf_counter()
    active = active_factors(sampler)
    k = len(sampler.factor_sizes)
    # One stream per consumer, drawn in a fixed order whatever `metrics` holds.
    order = streams()
    seeds = dict(zip(order, rng.randint(2**31 - 1, size=len(order))))

    shared: dict[str, np.ndarray] = {}  # the shared train/test factor sets (N, K)
    own: dict[str, tuple[dict, dict]] = {}  # metric -> (its factor blocks, its labels)
    if any(REGISTRY[n].sample is None for n in names):
        r = np.random.RandomState(seeds["data"])
        shared["train"] = np.asarray(sampler.sample_factors(table["num_train"], r))
        shared["test"] = np.asarray(sampler.sample_factors(table["num_test"], r))
    for m in REGISTRY.values():  # registry order: the encoding pass does not depend on `metrics`
        if m.name in names and m.sample is not None:
            r = np.random.RandomState(seeds[f"{m.name}_data"])
            own[m.name] = m.sample(sampler, r, table, active)

    t0 = time.perf_counter()
    blocks = [*shared.values(), *(b for blk, _ in own.values() for b in blk.values())]
    flat = np.concatenate([b.reshape(-1, k) for b in blocks])
    codes, n_unique = encode_unique(sampler, encode_fn, flat, chunk, progress)
    codes = iter(split_codes(codes, blocks))
    shared_codes = {name: next(codes) for name in shared}
    own_codes = {m: {name: next(codes) for name in blk} for m, (blk, _) in own.items()}
    out: dict = {"protocol": protocol, **metric_counts(protocol), "dci_backend": dci_backend,
                 "per_factor": {}}  # fmt: skip
    out.update(num_images_requested=len(flat), num_images_encoded=n_unique)
    out["time_encode_s"] = time.perf_counter() - t0

    todo = names
    if progress:
        from tqdm.auto import tqdm

        todo = tqdm(names, desc=f"metrics ({protocol})", unit="metric")
    options = {"dci_backend": dci_backend}
    # The fits are small: multi-threaded BLAS/OpenMP teams only contend on shared cores.
    with threadpool_limits(limits=1):
        for name in todo:
            t0, seed = time.perf_counter(), int(seeds[name])
            if name in own:
                data = Inputs(sampler, active, table, options, own_codes[name], own[name][0],
                              own[name][1])  # fmt: skip
            else:
                data = Inputs(sampler, active, table, options, shared_codes, shared)
            res = dict(REGISTRY[name].score(data, seed))
            out["per_factor"].update(res.pop("per_factor", {}))
            out.update(res)
            out[f"time_{name}_s"] = time.perf_counter() - t0
    out["time_total_s"] = time.perf_counter() - t_start
    return out
