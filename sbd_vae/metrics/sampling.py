"""Drawing and encoding the factor sets of the metrics (disentanglement_lib's GroundTruthData
contract: ``factor_names``, ``factor_sizes``, ``sample_factors(n, rng) -> int (n, K)``,
``images_from_factors(int (n, K)) -> float32 (n, H, W, 1)``, deterministic).

``encode_fn(images (n, H, W, 1)) -> (n, D)`` mean codes is called with up to ``chunk`` images;
each distinct factor combination is rendered and encoded once (``encode_unique``).
"""

from __future__ import annotations

import warnings

import numpy as np

from .common import as_2d

ENCODE_CHUNK = 256  # images per encode_fn call


def encode_unique(sampler, encode_fn, factors, chunk=ENCODE_CHUNK, progress=False):
    """Encode each distinct factor row once, in chunks of `chunk` images -> (codes, n_unique)."""
    factors = as_2d(factors, "factors").astype(np.int64)
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
    return encode_unique(sampler, encode_fn, factors, chunk)[0]


def active_factors(sampler) -> np.ndarray:
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


def labelled_batches(sampler, rng, batch_size: int, num_points: int, active: np.ndarray):
    """Labels (P,) drawn among ``active`` factors, then one writable factor batch (P, B, K).

    The draw order (labels, then the batch) is part of the reproducible numbers of both scores."""
    labels = active[rng.randint(len(active), size=num_points)]
    return labels, factor_batch(sampler, rng, batch_size, num_points)


def factor_batch(sampler, rng, batch_size: int, num_points: int) -> np.ndarray:
    """(P, B, K) factors from ``sampler.sample_factors``, a writable copy."""
    f = np.array(sampler.sample_factors(num_points * batch_size, rng))
    return f.reshape(num_points, batch_size, len(sampler.factor_sizes))


def split_codes(codes: np.ndarray, blocks: list) -> list:
    """Cut concatenated codes back into the (..., D) shapes of the factor blocks (..., K)."""
    out, start = [], 0
    for blk in blocks:
        n = int(np.prod(blk.shape[:-1]))
        out.append(codes[start : start + n].reshape(*blk.shape[:-1], codes.shape[1]))
        start += n
    return out
