"""Calibration baselines: every score of the suite for a code that ignores the image.

A disentanglement score means little without its chance level. Locatello et al. (2019,
"Challenging Common Assumptions in the Unsupervised Learning of Disentangled Representations",
ICML) define the scores this repository reports (disentanglement_lib) but not what a code with no
information about the factors gets on them, and that level is not 0 for all of them: IRS (Suter
et al. 2019) is 1 minus a ratio of deviation quantiles, so a random code scores by the shape of its
tails, about 0.37 for Gaussian noise (the 0.99 quantile of |z − E z| is about 2.6σ against a
largest deviation of about 3.9σ over 10 000 samples) and about 0.01 for uniform noise (both are
about half the range); the BetaVAE and FactorVAE accuracies have chance levels of 1 / (number of
factors); DCI informativeness and explicitness those of predicting each factor without
information; the Gaussian TC of independent noise is its estimator's positive bias. A study's IRS
of 0.46–0.50 is read against these numbers, not against 0.

``noise_scores`` runs ``metrics.compute_metrics`` with the runs' protocol and metric seed
(``RandomState(seed)``, as ``evaluation.score_model``) on the same factors (the sweep's sampler),
with an encode function that returns random codes of the runs' latent dimension: standard
Gaussian (``kind="gaussian"``) or uniform on [0, 1) (``kind="uniform"``). The noise is drawn from
one ``RandomState([seed, NOISE_STREAM])`` seeded once, so the baseline is reproducible; since the
suite encodes each distinct factor combination once, the code is a fixed random function of the
image, independent of its factors. No image is rendered (the code does not look at them), so the
cost is the metrics alone. ``cache=<sweep>/report/baselines.json`` keeps each result under its
(protocol, seed, data config, latent dimension, kind, metric options, registered metrics): a
re-run of the report reads it back instead of recomputing.

Nothing is computed, and TensorFlow is not imported, when this module is imported.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from . import datasets, rundir
from .evaluation import _split_scores
from .metrics import compute_metrics
from .metrics.registry import REGISTRY
from .protocol import check_protocol
from .rundir import RunDirError

KINDS = ("gaussian", "uniform")
NOISE_STREAM = 9  # RandomState([seed, 9]): apart from the metric RNG and evaluation's [seed, 1..4]
# Part of every cache key: bump when the suite's outputs change (e.g. a new key of a metric),
# so a cached baseline without it is recomputed.
BASELINES_SCHEMA = 1
_MEMO: dict[str, dict] = {}  # cache key -> scores, for the life of the process


class NoiseEncodeFn:
    """``encode_fn(images (N, ...)) -> codes (N, latent_dim)``: noise that ignores the images,
    drawn from one ``RandomState`` seeded once (the same calls give the same codes). ``images``
    counts the images it was given, like ``encoding.EncodeFn``."""

    def __init__(self, latent_dim: int, kind: str = "gaussian", seed=0):
        if kind not in KINDS:
            raise ValueError(f"kind {kind!r}: choose one of {list(KINDS)}")
        if int(latent_dim) < 2:
            raise ValueError(f"latent_dim must be at least 2; got {latent_dim}")
        self.latent_dim, self.kind = int(latent_dim), kind
        self.rng = np.random.RandomState(seed)
        self.images = self.calls = 0

    def __call__(self, images) -> np.ndarray:
        n = len(images)
        self.images += n
        self.calls += 1
        shape = (n, self.latent_dim)
        if self.kind == "gaussian":
            return self.rng.standard_normal(shape).astype(np.float32)
        return self.rng.random_sample(shape).astype(np.float32)


class _FactorsOnly:
    """The sampler's factors with blank (n, 1, 1, 1) images: what a noise code needs (it never
    looks at the image), without rendering a single one."""

    def __init__(self, sampler):
        self.sampler = sampler
        self.factor_names, self.factor_sizes = sampler.factor_names, sampler.factor_sizes

    def sample_factors(self, n, rng):
        return self.sampler.sample_factors(n, rng)

    def images_from_factors(self, factors):
        return np.zeros((len(factors), 1, 1, 1), np.float32)


def data_of(sampler) -> dict:
    """The part of the cache key that names the data: what runs record of it,
    ``datasets.data_config(sampler)`` (its ``config()`` with the factor grid; a dict is taken as
    it is)."""
    return sampler if isinstance(sampler, dict) else datasets.data_config(sampler)


def cache_key(sampler, latent_dim, protocol, seed, kind, metric_options=None) -> str:
    """The JSON text that names one baseline in baselines.json: protocol, metric seed, data,
    latent dimension, kind, metric options, and the registered metrics (a metric registered
    since is computed, as ``report.needs_evaluation`` re-scores runs without it)."""
    key = {"schema": BASELINES_SCHEMA, "protocol": protocol, "seed": int(seed),
           "data_config": data_of(sampler), "latent_dim": int(latent_dim), "kind": kind,
           "metric_options": metric_options or {}, "registry": list(REGISTRY)}  # fmt: skip
    return json.dumps(key, sort_keys=True, default=str)


def _read_cache(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        entries = rundir.read_json(path, "baselines cache").get("entries")
    except (RunDirError, AttributeError):
        return {}  # corrupt: recomputed and rewritten
    return entries if isinstance(entries, dict) else {}


def noise_scores(sampler, latent_dim: int, protocol: str = "study", seed: int = 0,
                 kind: str = "gaussian", *, cache=None, metric_options=None,
                 data_config=None, progress: bool = False) -> dict:  # fmt: skip
    """{score: float}: every score of ``compute_metrics`` (the keys of a run's metrics.json, from
    ``RandomState(seed)`` with ``protocol``'s counts, as the runs are scored) for a code of
    ``latent_dim`` dimensions that ignores the image: ``kind`` "gaussian" (standard normal) or
    "uniform" (on [0, 1)), drawn from ``RandomState([seed, NOISE_STREAM])``.

    ``sampler``: the sweep's data (factor_names, factor_sizes, sample_factors; its images are not
    rendered), or a function of no argument that makes it, called only when the result is not
    cached; then ``data_config`` (the runs' metrics.json "data_config") names the data in the key
    (default: ``data_of(sampler)``). ``cache``: a JSON file (``<sweep>/report/baselines.json``)
    that keeps the result under ``cache_key`` and is read back instead of recomputing; it is
    rewritten atomically (``rundir.write_json``). ``metric_options``: compute_metrics' options,
    as the runs'.
    """
    check_protocol(protocol)
    if data_config is None:
        sampler = sampler() if callable(sampler) else sampler
    key = cache_key(data_config or sampler, latent_dim, protocol, seed, kind, metric_options)
    path = Path(cache) if cache is not None else None
    entries = _read_cache(path) if path is not None else {}
    if key in entries and isinstance(entries[key].get("scores"), dict):
        _MEMO[key] = entries[key]["scores"]
        return dict(_MEMO[key])
    if key not in _MEMO:
        sampler = sampler() if callable(sampler) else sampler
        encode_fn = NoiseEncodeFn(latent_dim, kind, [int(seed), NOISE_STREAM])
        result = compute_metrics(_FactorsOnly(sampler), encode_fn, np.random.RandomState(seed),
                                 protocol=protocol, progress=progress,
                                 **(metric_options or {}))  # fmt: skip
        _MEMO[key] = _split_scores(result, protocol)[0]
    if path is not None:
        entries = _read_cache(path)  # as it is now: keep what another report wrote meanwhile
        entries[key] = {**json.loads(key), "scores": _MEMO[key]}
        rundir.write_json(path, {"note": "scores of random codes (sbd_vae/baselines.py); "
                                 "entries keyed by cache_key", "entries": entries})  # fmt: skip
    return dict(_MEMO[key])


def noise_baselines(sampler, latent_dim: int, protocol: str = "study", seed: int = 0, *,
                    cache=None, metric_options=None, data_config=None,
                    progress: bool = False) -> dict:  # fmt: skip
    """{kind: noise_scores(...)} for both ``KINDS``: the report's calibration table. A sampler
    given as a function is made at most once."""
    if callable(sampler):
        sampler = _once(sampler)
    return {k: noise_scores(sampler, latent_dim, protocol, seed, k, cache=cache,
                            metric_options=metric_options, data_config=data_config,
                            progress=progress)
            for k in KINDS}  # fmt: skip


def _once(make):
    """``make`` called at most once: the same result after the first call."""
    made = []

    def get():
        if not made:
            made.append(make())
        return made[0]

    return get
