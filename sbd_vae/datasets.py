"""The training datasets: one sampler contract (``GroundTruthSampler``) and the registry (``DATASETS``).

``--dataset NAME`` (``TrainConfig.dataset``) names an entry of ``DATASETS``; ``make_dataset(cfg)``
builds its sampler, and training, ``latentSpace.load_run``, the metrics, the figures and the report
use the sampler only through the contract below. Adding a dataset is one class with the contract
(``GridStreams`` gives it both training streams from its four disentanglement_lib members) and
one line in ``DATASETS``.

    shapes     dataset.ShapesDataset: the Blender renders of data/shapes.npz, zoomed and moved on
               the fly (the project's own data; every run made before --dataset is one of these)
    dsprites   sbd_vae.dsprites.DSpritesDataset: "dSprites-like (procedural)", dSprites' exact
               factor grid rendered here in seconds, no download (sbd_vae/dsprites.py)

A registry entry names its factory ``(cfg) -> sampler`` by import path ("module:attribute"), so that
this package never imports a root module (tests/test_import_graph.py): ``ShapesDataset`` lives in
the root module dataset.py, and only ``make_dataset`` resolves the path, when a run needs it.
Importing this module imports numpy, the standard library and sbd_vae.hparams only.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .hparams import import_path


@runtime_checkable
class GroundTruthSampler(Protocol):
    """What a training dataset provides: disentanglement_lib's GroundTruthData (Locatello et al.
    2019) plus what training, evaluation and the plots need. Every member is required; the two
    streams come for free from ``GridStreams``.

    Ground truth (disentanglement_lib's four members):
    - ``factor_names`` [str] (K,) and ``factor_sizes`` [int] (K,): the factors of variation and
      the size of each one's grid.
    - ``sample_factors(n, rng) -> int64 (n, K)``: grid indices, uniform over the grid; ``rng``
      a numpy RandomState or Generator, the only source of randomness.
    - ``images_from_factors(factors int (n, K)) -> float32 (n, S, S, 1)`` in [0, 1]:
      deterministic, the same factors always give the same pixels, whatever the batch.

    Description:
    - ``config() -> dict``: JSON-serialisable, everything that decides the pixels and the grid.
      It is written into summary.json and metrics.json ("data_config") and
      ``latentSpace.check_sampler`` compares it, key by key, with the run's record; a key named
      like a ``TrainConfig`` field the dataset reads (``DatasetEntry.reads``) must also equal
      the run's config.json.
    - ``num_points`` int: the number of points of the factor grid, prod(factor_sizes):
      β-TCVAE's N (Chen et al. 2018), stored in the model's config (``tc_dataset_size``).
    - ``circular_factors``, ``categorical_factors`` (tuples of factor names): factors whose grid
      wraps around (its last value neighbours its first, e.g. an angle) and factors whose values
      are unordered categories (e.g. shape). The metrics treat every factor as categorical over
      its grid, as disentanglement_lib does; the plots and metrics.json's "factor_grid" say which
      are circular, and categorical axes are labelled with ``values``.
    - ``values`` {name: array (n_k,)}: each factor's grid values (strings for categories).
    - ``name`` (the registry key), ``display_name`` (shown wherever its scores are shown) and
      ``image_size`` (S).

    Training streams, one per backend; in each, batch k is a pure function of (seed, k), so
    ``start=s`` yields exactly batches s, s + 1, ... and a resumed run sees the batches an
    uninterrupted one does (bit-exact resume):
    - ``tf_dataset(batch_size, seed, start=0)``: TensorFlow backend, a tf.data.Dataset of
      (images float32 (B, S, S, 1), factors float32 (B, K)).
    - ``image_stream(batch_size, seed, start=0)``: any backend (JAX trains on it), an iterator of
      numpy (images float32 (B, S, S, 1), factors float32 (B, K)).
    A dataset whose images are a cheap function of a few parameters can instead let the JAX
    step render them on the device (``DeviceWarp``: ``dataset.ShapesDataset`` does); training
    asks the dataset which it offers (``training_stream``).
    """

    name: str
    display_name: str
    image_size: int
    factor_names: Sequence[str]
    factor_sizes: Sequence[int]
    circular_factors: tuple[str, ...]
    categorical_factors: tuple[str, ...]
    values: Mapping[str, np.ndarray]

    @property
    def num_points(self) -> int: ...

    def sample_factors(self, n: int, rng) -> np.ndarray: ...

    def images_from_factors(self, factors) -> np.ndarray: ...

    def config(self) -> dict: ...

    def tf_dataset(self, batch_size: int, seed: int, start: int = 0): ...

    def image_stream(self, batch_size: int, seed: int, start: int = 0) -> Iterator: ...


class DeviceWarp(Protocol):
    """The optional device-side stream (JAX): the host sends parameters, the jitted train step
    renders the images (``BetaVAE.images_of`` calls ``warp(**params)``).
    - ``param_stream(batch_size, seed, start=0)``: an iterator of dicts of numpy arrays, batch k
      a pure function of (seed, k); its keys include ``warp_keys``.
    - ``warp(**{key: (B,) array for key in warp_keys}) -> (B, S, S, 1)`` backend tensor,
      jit-compatible (keras.ops)."""

    warp_keys: tuple[str, ...]

    def param_stream(self, batch_size: int, seed: int, start: int = 0) -> Iterator[dict]: ...

    def warp(self, **params): ...


def has_device_warp(data) -> bool:
    """``data`` offers the device-side stream (``DeviceWarp``). Asked of the object, with
    ``hasattr``, so wrappers that forward attributes (``__getattr__``) keep their stream."""
    return all(hasattr(data, m) for m in ("param_stream", "warp", "warp_keys"))


# ----------------------------------------------------------------------------- streams
def grid_batch(sampler, batch_size: int, seed: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Batch k of ``GridStreams``' streams: (images float32 (B, S, S, 1), factors float32 (B, K)),
    factors drawn by ``sampler.sample_factors`` with numpy's counter-based Philox generator keyed by
    (seed, k) (Salmon et al. 2011, as ``ShapesDataset.param_batch``), so any batch can be made
    without its predecessors, on any backend: both backends train on the same batches."""
    b, seed, k = check_stream(batch_size, seed, k, "k")
    rng = np.random.Generator(np.random.Philox(key=np.array([seed, k], np.uint64)))
    factors = np.asarray(sampler.sample_factors(b, rng))  # (B, K) int
    images = np.asarray(sampler.images_from_factors(factors), np.float32)  # (B, S, S, 1)
    return images, factors.astype(np.float32)


def grid_image_stream(sampler, batch_size: int, seed: int, start: int = 0):
    """``grid_batch(sampler, batch_size, seed, k)`` for k = start, start + 1, ... (numpy)."""
    b, seed, start = check_stream(batch_size, seed, start, "start")  # now, not at next()
    return (grid_batch(sampler, b, seed, k) for k in itertools.count(start))


def grid_tf_dataset(sampler, batch_size: int, seed: int, start: int = 0):
    """The same batches as ``grid_image_stream`` as a tf.data.Dataset (TensorFlow only): batch k
    is made by ``grid_batch`` in the tf.data threads (``tf.numpy_function``), in order, a few
    batches ahead of the step."""
    b, seed, start = check_stream(batch_size, seed, start, "start")
    import tensorflow as tf  # noqa: PLC0415 (TF-only path)

    s, n_factors = int(sampler.image_size), len(sampler.factor_sizes)

    def make(k):
        return grid_batch(sampler, b, seed, int(k))

    def batch(k):
        images, factors = tf.numpy_function(make, [k], (tf.float32, tf.float32), stateful=False)
        images.set_shape((b, s, s, 1))
        factors.set_shape((b, n_factors))
        return images, factors

    ds = tf.data.Dataset.range(start, 2**62)
    ds = ds.map(batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)


class GridStreams:
    """Both training streams of the contract, made from the four disentanglement_lib members
    (``grid_batch``): a dataset class that inherits this needs no stream code of its own."""

    def tf_dataset(self, batch_size: int, seed: int, start: int = 0):
        """tf.data of (images, factors) batches; batch k a pure function of (seed, k)."""
        return grid_tf_dataset(self, batch_size, seed, start)

    def image_stream(self, batch_size: int, seed: int, start: int = 0):
        """numpy (images, factors) batches, the same as ``tf_dataset``'s, on any backend."""
        return grid_image_stream(self, batch_size, seed, start)


def training_stream(data, batch_size: int, seed: int, start: int, jax: bool):
    """(stream, warp) of what ``fit`` trains on from step ``start``, asked of ``data``:

    - TensorFlow (``jax=False``): ``data.tf_dataset(...)``, images made in the tf.data threads;
      warp None.
    - JAX, a dataset with a device warp (``has_device_warp``): batches of its parameters only,
      ``({key: (B,) array for key in data.warp_keys},)``, and ``data.warp`` (the model renders
      them in the jitted step: set ``model.data_warp``).
    - JAX otherwise: ``(images,)`` numpy batches of ``data.image_stream(...)``; warp None.
    """
    if not jax:
        return data.tf_dataset(batch_size, seed=seed, start=start), None
    if has_device_warp(data):
        keys = tuple(data.warp_keys)
        params = data.param_stream(batch_size, seed, start)
        return (({k: p[k] for k in keys},) for p in params), data.warp
    return ((images,) for images, _ in data.image_stream(batch_size, seed, start)), None


def check_stream(batch_size, seed, k, k_name: str) -> tuple[int, int, int]:
    """(batch_size, seed, k) as ints, or ValueError naming the bad argument."""
    for name, v, lo in (("batch_size", batch_size, 1), ("seed", seed, 0), (k_name, k, 0)):
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or not lo <= v < 2**63:
            raise ValueError(f"{name} must be an int >= {lo}, got {v!r}")
    return int(batch_size), int(seed), int(k)


# ----------------------------------------------------------------------------- the registry
@dataclass(frozen=True)
class DatasetEntry:
    """One dataset of the registry.

    factory: "module:attribute" (resolved when a run needs it) or a callable; ``factory(cfg)``
        returns the sampler of a ``TrainConfig``.
    reads: the ``TrainConfig`` fields the factory reads. The others of the data section
        (``DATA_FIELDS``) are ignored for this dataset: a resume may change them, and their help
        says which dataset reads them.
    image_sizes: the only --image_size values the dataset renders (None: any the model takes).
    """

    factory: str | Callable[[Any], GroundTruthSampler]
    reads: tuple[str, ...] = ("image_size",)
    image_sizes: tuple[int, ...] | None = None

    def resolve(self) -> Callable[[Any], GroundTruthSampler]:
        return self.factory if callable(self.factory) else import_path(self.factory)


# One line per dataset. A plain factory (a callable or a "module:attribute" string) is also
# accepted as an entry: it reads --image_size only and renders any size.
DATASETS: dict[str, DatasetEntry | str | Callable] = {
    "shapes": DatasetEntry("dataset:ShapesDataset.from_config",
                           reads=("data_path", "image_size", "scale_range", "pos_range")),
    "dsprites": DatasetEntry("sbd_vae.dsprites:DSpritesDataset.from_config", image_sizes=(64,)),
}  # fmt: skip
DEFAULT = "shapes"  # what a config.json written before --dataset trained on
# The TrainConfig fields that describe the data; each dataset reads some of them (``reads``).
DATA_FIELDS = ("data_path", "image_size", "scale_range", "pos_range")


def entry(name: str) -> DatasetEntry:
    """The registry entry of ``name``; ValueError naming --dataset and the choices."""
    if name not in DATASETS:
        raise ValueError(f"--dataset {name!r}: choose one of {', '.join(DATASETS)}")
    e = DATASETS[name]
    return e if isinstance(e, DatasetEntry) else DatasetEntry(e)


def config_problems(cfg) -> list[str]:
    """What is wrong with ``cfg``'s data fields for its --dataset (messages naming the flags)."""
    try:
        e = entry(cfg.dataset)
    except ValueError as err:
        return [str(err)]
    if e.image_sizes is not None and cfg.image_size not in e.image_sizes:
        sizes = " or ".join(f"--image_size {s}" for s in e.image_sizes)
        return [
            f"--dataset {cfg.dataset} renders {'/'.join(f'{s}×{s}' for s in e.image_sizes)} images "
            f"only, not --image_size {cfg.image_size}: pass {sizes}"
        ]
    return []


def ignored_fields(name: str) -> tuple[str, ...]:
    """The data fields of TrainConfig that dataset ``name`` does not read."""
    reads = entry(name).reads
    return tuple(f for f in DATA_FIELDS if f not in reads)


def make_dataset(cfg) -> GroundTruthSampler:
    """The sampler of ``cfg``'s data: ``DATASETS[cfg.dataset]``'s factory called with ``cfg``."""
    return entry(cfg.dataset).resolve()(cfg)


# ----------------------------------------------------------------------------- reading the contract
def circular_factors(sampler) -> tuple[str, ...]:
    """The sampler's circular factors; a sampler that does not say has none but azimuth (the
    shapes renders' rotation, the one circular factor before the contract named them)."""
    names = list(sampler.factor_names)
    declared = getattr(sampler, "circular_factors", None)
    return tuple(declared) if declared is not None else tuple(n for n in ("azimuth",) if n in names)


def data_config(sampler) -> dict:
    """What a run records of its data (summary.json's and metrics.json's "data_config", the
    report's noise-baseline cache key): ``sampler.config()``, plus the factor grid
    (``factor_names``, ``factor_sizes``) where ``config()`` leaves it out, so that any dataset's
    record says which grid the scores are on and ``latentSpace.check_sampler`` can compare it,
    whatever its ``config()`` returns. (shapes and dsprites already record both: unchanged.)"""
    out = dict(sampler.config()) if hasattr(sampler, "config") else {}
    out.setdefault("factor_names", [str(n) for n in sampler.factor_names])
    out.setdefault("factor_sizes", [int(s) for s in sampler.factor_sizes])
    return out


def display_name(sampler_or_config) -> str | None:
    """The dataset's name as scores show it: ``display_name`` of a sampler or of a data config
    (metrics.json's "data_config"); None where none is recorded (shapes runs)."""
    if isinstance(sampler_or_config, Mapping):
        return sampler_or_config.get("display_name")
    return getattr(sampler_or_config, "display_name", None)
