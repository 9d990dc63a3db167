"""A plain batch loader over a pre-exported file of already transformed images.

No real-time transforms here: the file is written once by

    python dataset.py export --n 10000 --out data/export.npz [--image_size 64] [--seed 0]

and holds images uint8 (or float16) (N, H, W, 1), factors float32 (N, K), factor_names,
factor_sizes and a JSON meta with the sampler config (see dataset.export). The rest of the project
streams from dataset.ShapesDataset instead; this is for users who want a fixed, finite set.

    from data import load_dataset
    ds = load_dataset("data/export.npz", batch_size=64)   # one epoch; add .repeat() for more
    for images, factors in ds: ...                         # (B, H, W, 1) float32 in [0, 1], (B, K)

On TensorFlow (the default backend) load_dataset returns a tf.data.Dataset of tensors. On JAX
(KERAS_BACKEND=jax) tensorflow is never imported: it returns a NumpyBatches, an iterable whose
every iteration is one epoch of numpy batches. Without shuffling its batches equal the tf.data
ones; with shuffling each epoch is a permutation drawn from numpy (seed, epoch), not tf.data's
shuffle buffer, so the order differs from TensorFlow's (every image keeps its label).
Importing this module imports numpy only.
"""

from __future__ import annotations

import json
import os

import numpy as np

from sbd_vae import backend, rundir

EXPORT_FIX = "re-create it with `.venv/bin/python dataset.py export --n N --out {path}`"
KEYS = ("images", "factors", "factor_names", "meta")


def load_arrays(path: str) -> dict:
    """Read and check an exported npz. Returns dict(images (N, H, W, 1) uint8|float16,
    factors float32 (N, K), factor_names [str], factor_sizes [int] or None, meta dict)."""
    fix = EXPORT_FIX.format(path=path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"exported dataset {path!r} does not exist: {fix}")
    try:
        rundir.check_zip_crc(path)  # every member, not only those np.load reads to the end
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in KEYS if k not in z.files]
            if missing:
                raise KeyError(f"missing arrays {missing} (has {z.files})")
            out = {k: z[k] for k in KEYS}  # reading each member checks its CRC
            sizes = z["factor_sizes"] if "factor_sizes" in z.files else None
        out["meta"] = json.loads(str(out["meta"]))
    except Exception as e:  # zipfile, zlib, npy header, JSON, CRC: all mean "corrupt"
        raise ValueError(
            f"exported dataset {path!r} is truncated, corrupt or not an export "
            f"({type(e).__name__}: {e}); {fix}"
        ) from e
    images, factors = out["images"], out["factors"]
    names = [str(s) for s in out["factor_names"]]
    if images.ndim != 4 or images.shape[3] != 1 or images.dtype not in (np.uint8, np.float16):
        raise ValueError(
            f"{path!r}: images are {images.dtype} {images.shape}, expected uint8 or float16 "
            f"(N, H, W, 1); {fix}"
        )
    if factors.shape != (len(images), len(names)):
        raise ValueError(
            f"{path!r}: factors {factors.shape} do not match {len(images)} images and factor "
            f"names {names}; {fix}"
        )
    out.update(
        factors=factors.astype(np.float32),
        factor_names=names,
        factor_sizes=None if sizes is None else [int(v) for v in sizes],
    )
    return out


class NumpyBatches:
    """One epoch per iteration of numpy (images float32 [0, 1] (B, H, W, 1), factors float32
    (B, K)); the loader on JAX (see the module docstring). Epoch e (counted per object, from 0)
    is shuffled with numpy's default_rng([seed, e]) when `shuffle`."""

    def __init__(self, images, factors, batch_size: int, shuffle: bool, seed: int, scale: float):
        self.images, self.factors = images, factors  # stored dtype, (N, H, W, 1); (N, K)
        self.batch_size, self.shuffle, self.seed = int(batch_size), bool(shuffle), int(seed)
        self.scale, self.epoch = np.float32(scale), 0

    def __len__(self) -> int:
        return -(-len(self.images) // self.batch_size)

    def __iter__(self):
        n = len(self.images)
        order = np.arange(n)
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(n)
        self.epoch += 1
        for i in range(0, n, self.batch_size):
            j = order[i : i + self.batch_size]
            # float32 * float32, as tf.cast(x, tf.float32) * scale: the same pixel values
            yield self.images[j].astype(np.float32) * self.scale, self.factors[j]


def load_dataset(
    path: str, batch_size: int, shuffle: bool = True, seed: int = 0, cache: bool = True
):
    """One epoch of (images float32 [0, 1] (B, H, W, 1), factors float32 (B, K)) from an export:
    a tf.data.Dataset on TensorFlow, a NumpyBatches on JAX (`cache` does not apply there: the
    arrays are in memory).

    Shuffling reshuffles every epoch (deterministically from `seed`); the last batch may be
    smaller. The images stay in their stored dtype (uint8: 4x smaller) until after batching."""
    if isinstance(batch_size, bool) or int(batch_size) < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    a = load_arrays(path)
    images, factors = a["images"], a["factors"]
    scale = 1.0 / 255.0 if images.dtype == np.uint8 else 1.0
    if backend.is_jax():
        return NumpyBatches(images, factors, batch_size, shuffle, seed, scale)
    import tensorflow as tf  # noqa: PLC0415 (TensorFlow backend only)

    ds = tf.data.Dataset.from_tensor_slices((images, factors))
    if cache:
        ds = ds.cache()
    if shuffle:
        ds = ds.shuffle(min(len(images), 50_000), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(int(batch_size))
    ds = ds.map(
        lambda x, f: (tf.cast(x, tf.float32) * scale, f),  # (B, H, W, 1) float32 in [0, 1]
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    return ds.prefetch(tf.data.AUTOTUNE)
