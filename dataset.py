"""Shapes dataset: a ground-truth sampler and on-the-fly streams, on TensorFlow and on JAX.

The base renders (blender/render_shapes.py -> data/shapes.npz) carry the "rendered" factors
(shape, azimuth, tilt). Zoom (`scale`) and translation (`pos_x`, `pos_y`) are applied here,
batched, with one affine warp per batch (`ShapesDataset.warp`: keras.ops, bilinear, zero fill),
in the spirit of dSprites (Matthey et al. 2017), where position and scale are generative factors
alongside shape and orientation, and of the spatial-broadcast decoder experiments of Watters et
al. (2019), whose point is that position is easy to disentangle.

Backends (sbd_vae/backend.py): the warp is written once in keras.ops and runs on the Keras
backend in use. On TensorFlow (the default) `keras.ops.image.affine_transform` is the same
ImageProjectiveTransformV3 op as before, so the pixels are bit-identical to the earlier raw-op
implementation. On JAX (`KERAS_BACKEND=jax`) nothing here imports tensorflow, and the same factors
give the same pixels within 1/255 (tests/test_augment_backends.py). Importing this module imports
only numpy and the standard library; Keras is imported when a ShapesDataset is built. The
resampling kernel (the resize pyramid and the warp) is sbd_vae/warp.py and the render file's
checks (``load_renders``, ``DatasetError``, ``render_fix``) sbd_vae/renders.py; their names stay
importable from here.

Streams, each batch a pure function of (seed, k), so `start=s` resumes exactly at batch s:
- `tf_dataset(B, seed, start, discrete)`: tf.data, TensorFlow only; (images, factors) tensors.
  The warp runs in the tf.data map on the CPU (the fastest path on a TF CPU machine: see
  bench/bench_data.py).
- `param_stream(B, seed, start, discrete)`: backend-neutral numpy batches of warp parameters,
  `param_batch(B, seed, k, discrete)` -> dict(base_idx int32 (B,), scale, pos_x, pos_y
  float32 (B,), factors float32 (B, K)). The host sends only these; the train step calls
  `ds.warp(*[p[k] for k in WARP_KEYS])` on the device (jit-compatible on JAX and in a TF
  graph; the resize pyramid is built once and stays a device-resident backend tensor. Under
  jax.jit a closed-over pyramid is compiled into the program as a constant, 36 MiB at 128²:
  about a second more compile time, once).
- `image_stream(B, seed, start, discrete)`: param_stream with the warp applied, numpy
  (images, factors) batches; what write_sheet and export use on JAX.
tf_dataset and param_stream draw from different random generators (TF stateless RNG, numpy
Philox), so their batches differ; both are uniform over the same ranges, and in discrete mode
`images_from_factors(factors.astype(int))` reproduces either stream's pixels.

Factors, in this order (rendered ones first, as stored in the npz):
    shape, azimuth, tilt, scale, pos_x, pos_y
- scale: apparent size relative to the base render; at scale s the object's bounding disc has
  radius 0.4 * s * W (the renderer puts the bounding sphere on a 0.4 W disc).
- pos_x, pos_y: offset of the object's centre from the image centre, in fractions of the image
  width. pos_x grows to the right, pos_y grows DOWNWARD (image rows).
- For training these three are continuous (uniform over their ranges). For evaluation they
  take a grid: `num_scales` values linspace over scale_range, `num_positions` over pos_range
  for each of x and y. Index 0 is always the smallest value. By default the grids are sized
  to the image (`grid_sizes`): neighbouring positions are at least one output pixel apart, and
  neighbouring scales change the object's radius by at least one pixel, so that every grid
  step is visible (a finer grid would carry labels that no model can read).

The sampler follows disentanglement_lib's GroundTruthData contract (Locatello et al. 2019):
`factor_names`, `factor_sizes`, `sample_factors(n, rng) -> int (n, K)`,
`images_from_factors(int (n, K)) -> float32 (n, H, W, 1)`, deterministic.

    python dataset.py sheet --data data/shapes.npz --out img/samples.png
    python dataset.py export --n 10000 --out data/export.npz   # for data.py
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import zipfile

import numpy as np

from sbd_vae import backend, plotting, rundir
from sbd_vae.datasets import check_stream as _check_stream

# The file checks and the warp kernel live in the package (sbd_vae/renders.py, sbd_vae/warp.py);
# their names stay importable from here, the public ones and the private ones tests use.
from sbd_vae.renders import RENDER_FIX, DatasetError, load_renders, render_fix  # noqa: F401
from sbd_vae.renders import max_radius as _max_radius
from sbd_vae.warp import gather_sum as _gather_sum  # noqa: F401
from sbd_vae.warp import resize_pyramid as _pyramid
from sbd_vae.warp import resize_weights as _resize_weights  # noqa: F401
from sbd_vae.warp import to_numpy as _to_numpy
from sbd_vae.warp import warp_batch as _warp


def _ranges(name: str, r, positive: bool) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in r)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (low, high), got {r!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi or (positive and lo <= 0):
        raise ValueError(f"{name}={r!r} must satisfy {'0 < ' if positive else ''}low <= high")
    return lo, hi


MAX_SCALES, MAX_POSITIONS = 8, 16  # the grid sizes of the 128² paper setting
WARP_KEYS = ("base_idx", "scale", "pos_x", "pos_y")  # warp()'s arguments in a param_batch


def grid_sizes(image_size: int, scale_range, pos_range, r_max: float) -> tuple[int, int]:
    """(num_scales, num_positions): the finest evaluation grids whose every step is visible.

    Positions: neighbouring values at least one output pixel apart, so at most
    1 + floor((hi - lo) * S) of them (S = image_size, positions in fractions of the width).
    Scales: neighbouring values change the radius of the object's bounding disc,
    scale * r_max * S pixels, by at least one pixel. Both are capped at the 128² grid (8, 16).
    At 32² with scale 0.6-0.9 and pos ±0.1 this gives 4 scales and 7 positions; at 128² with the
    paper ranges, the full 8 and 16."""
    s_lo, s_hi = scale_range
    p_lo, p_hi = pos_range
    n_pos = 1 + math.floor((p_hi - p_lo) * image_size + 1e-9)
    n_scale = 1 + math.floor((s_hi - s_lo) * r_max * image_size + 1e-9)
    return min(n_scale, MAX_SCALES), min(n_pos, MAX_POSITIONS)


def _count(name: str, v, lo: float, hi: float) -> int:
    if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
        raise ValueError(f"{name} must be a positive int, got {v!r}")
    if v > 1 and lo == hi:
        raise ValueError(f"{name}={v} but the range has equal ends; use {name}=1")
    return int(v)


class ShapesDataset:
    """Ground-truth sampler and on-the-fly stream over the base renders at `path`.

    image_size: output H = W (any int >= 16). The base renders are resized to it once, with
    area averaging (antialiased), and the warp runs at that size.
    scale_range, pos_range: see the module docstring. They are checked against the real extent of
    the objects: max(scale) * r_max + max|pos| <= 0.5 - 1/R, with r_max the largest distance from
    the centre of a nonzero base pixel (plus half a pixel), in fractions of the base width R. The
    margin is one base pixel, at every output size, so a valid config is valid at any image_size:
    no part of the object is ever cut off; at 128 px the outermost pixels stay exactly 0, at
    small sizes (32 px) the antialiased edge of an object at the extreme scale and position may
    grey the outermost pixel.

    It is the "shapes" entry of the dataset registry (sbd_vae/datasets.py, ``--dataset shapes``)
    and has the registry's sampler contract (``sbd_vae.datasets.GroundTruthSampler``), plus the
    device-side stream for JAX (``param_stream`` + ``warp``, ``sbd_vae.datasets.DeviceWarp``).
    """

    name = "shapes"
    display_name = "shapes (Blender renders)"
    categorical_factors = ("shape",)
    warp_keys = WARP_KEYS  # param_batch's keys that warp() takes
    grid_note = (
        "Scale and position grids are sized to the image so that neighbouring values "
        "differ by at least one pixel (dataset.grid_sizes)."
    )  # metrics.json's factor_grid

    @classmethod
    def from_config(cls, cfg) -> ShapesDataset:
        """The registry's factory (``--dataset shapes``): the sampler of a TrainConfig's data
        fields (data_path, image_size, scale_range, pos_range)."""
        return cls(cfg.data_path, image_size=cfg.image_size, scale_range=tuple(cfg.scale_range),
                   pos_range=tuple(cfg.pos_range))  # fmt: skip

    def __init__(
        self,
        path: str = "data/shapes.npz",
        image_size: int = 128,
        scale_range: tuple[float, float] = (0.35, 0.7),
        pos_range: tuple[float, float] = (-0.2, 0.2),
        num_scales: int | None = None,
        num_positions: int | None = None,
    ):
        if isinstance(image_size, bool) or not isinstance(image_size, int | np.integer):
            raise ValueError(f"image_size must be an int >= 16, got {image_size!r}")
        if image_size < 16:
            raise ValueError(f"image_size must be an int >= 16, got {image_size}")
        self.path, self.image_size = str(path), int(image_size)
        self.scale_range = _ranges("scale_range", scale_range, positive=True)
        self.pos_range = _ranges("pos_range", pos_range, positive=False)
        r = load_renders(self.path)
        base = r["images"]  # uint8 (N, R, R, 1)
        self.meta, self.base_resolution = r["meta"], base.shape[1]
        self.r_max = _max_radius(base)
        self._check_frame()
        auto_scales, auto_positions = grid_sizes(
            self.image_size, self.scale_range, self.pos_range, self.r_max
        )
        if num_scales is None:
            num_scales = auto_scales
        if num_positions is None:
            num_positions = auto_positions
        self.num_scales = _count("num_scales", num_scales, *self.scale_range)
        self.num_positions = _count("num_positions", num_positions, *self.pos_range)

        self.rendered_names, self.rendered_sizes = r["names"], r["sizes"]
        self.factor_names = self.rendered_names + ["scale", "pos_x", "pos_y"]
        self.factor_sizes = self.rendered_sizes + [self.num_scales] + [self.num_positions] * 2
        self.num_factors = len(self.factor_names)
        # the renderer turns the object through a full circle: the last azimuth neighbours the first
        self.circular_factors = tuple(n for n in ("azimuth",) if n in self.factor_names)
        # physical values of each factor's grid, float32 so that the stream and
        # images_from_factors feed bit-identical numbers to the warp
        self.scales = np.linspace(*self.scale_range, self.num_scales).astype(np.float32)
        self.positions = np.linspace(*self.pos_range, self.num_positions).astype(np.float32)
        self.values = dict(r["values"], scale=self.scales, pos_x=self.positions)
        self.values["pos_y"] = self.positions
        self._rendered_table = np.indices(self.rendered_sizes).reshape(len(r["sizes"]), -1).T

        pyramid, self._ratios = _pyramid(base, self.image_size, self.scale_range[0])
        self._num_base = len(base)
        from keras import ops  # noqa: PLC0415 (keras, and with it the backend, only when used)

        # backend constants, built once: on a GPU they live in device memory and warp() only
        # gathers from them. pyramid float32 (L*N, S, S, 1), level ratios float32 (L,)
        self._pyramid = ops.convert_to_tensor(pyramid)
        self._ratio_table = ops.convert_to_tensor(np.asarray(self._ratios, np.float32))
        self._jit_warp = None  # backend.jit of _warp, made on first use (_compiled_warp)

    @property
    def num_points(self) -> int:
        """The number of distinct images of the factor grid, prod(factor_sizes): β-TCVAE's N."""
        return int(np.prod(self.factor_sizes, dtype=np.int64))

    # ------------------------------------------------------------------ validation
    def _check_frame(self) -> None:
        smax = self.scale_range[1]
        pmax = max(abs(p) for p in self.pos_range)
        limit = 0.5 - 1.0 / self.base_resolution  # object stays one base pixel inside
        if smax * self.r_max + pmax <= limit + 1e-9:
            return
        max_scale = (limit - pmax) / self.r_max
        max_pos = limit - smax * self.r_max
        raise ValueError(
            f"scale_range={self.scale_range} with pos_range={self.pos_range} pushes the object "
            f"off-frame: max scale x object radius ({smax} x {self.r_max:.4f}) + max |pos| "
            f"({pmax}) = {smax * self.r_max + pmax:.4f} > {limit:.4f} (half the image minus one "
            f"pixel). Largest allowed scale_range high for this pos_range: {max_scale:.4f}; "
            f"largest allowed pos_range |value| for this scale_range: {max(max_pos, 0):.4f}."
        )

    # ------------------------------------------------------------------ the warp
    def warp(self, base_idx, scale, pos_x, pos_y):
        """Render a batch: base_idx int (B,) indexes the base renders (row-major over the rendered
        factors), scale, pos_x, pos_y float (B,) physical values -> backend tensor float32
        (B, S, S, 1) in [0, 1].

        Pure keras.ops on backend tensors (numpy in is converted), so it can be called eagerly,
        inside a jitted JAX function and inside a TF graph (a train step, a tf.data map); the
        resize pyramid is a captured backend constant. Inputs are not range-checked here (that
        cannot be done inside a jitted step): param_batch and images_from_factors give valid
        ones."""
        return _warp(
            self._pyramid, self._ratio_table, self._num_base, self.image_size,
            base_idx, scale, pos_x, pos_y,
        )  # fmt: skip

    def _compiled_warp(self):
        """warp compiled with backend.jit (tf.function / jax.jit), the pyramid passed as an
        argument rather than closed over (a closed-over array would be baked into the compiled
        JAX program as a literal). numpy or backend (B,) in, backend (B, S, S, 1) out."""
        if self._jit_warp is None:
            n, s = self._num_base, self.image_size
            self._jit_warp = backend.jit(
                lambda pyr, ratios, b, sc, x, y: _warp(pyr, ratios, n, s, b, sc, x, y)
            )
        fn = self._jit_warp
        return lambda b, sc, x, y: fn(self._pyramid, self._ratio_table, b, sc, x, y)

    # ------------------------------------------------------------------ sampler API
    def sample_factors(self, n: int, rng: np.random.RandomState) -> np.ndarray:
        """int64 (n, K), uniform over the factor grid (rng: RandomState, or a numpy Generator)."""
        draw = rng.randint if hasattr(rng, "randint") else rng.integers
        return np.stack([draw(0, k, size=n) for k in self.factor_sizes], 1).astype(np.int64)

    def _check_factors(self, factors) -> np.ndarray:
        f = np.asarray(factors)
        if f.ndim != 2 or f.shape[1] != self.num_factors:
            raise ValueError(f"factors must be (n, {self.num_factors}), got {f.shape}")
        if not np.issubdtype(f.dtype, np.integer):
            if not np.all(f == np.round(f)):
                raise ValueError("factors must be integer grid indices")
            f = f.astype(np.int64)
        if np.any(f < 0) or np.any(f >= np.array(self.factor_sizes)):
            raise ValueError(f"factor indices out of range for factor_sizes {self.factor_sizes}")
        return f.astype(np.int64)

    def factor_values(self, factors) -> np.ndarray:
        """float64 (n, K) physical values of grid indices: shape -> its index (names in
        values['shape']), azimuth/tilt -> degrees, scale -> zoom, pos_x/pos_y -> fractions of W."""
        f = self._check_factors(factors)
        out = np.empty(f.shape, np.float64)
        for j, name in enumerate(self.factor_names):
            v = self.values[name]
            out[:, j] = f[:, j] if v.dtype.kind in "US" else v[f[:, j]]
        return out

    def images_from_factors(self, factors, chunk: int = 512) -> np.ndarray:
        """float32 (n, S, S, 1) in [0, 1], deterministic; the same warp as the streams.

        On a backend that compiles once per input shape (JAX), the last chunk is padded to a
        power of two so that any n compiles at most log2(chunk) + 1 programs."""
        if isinstance(chunk, bool) or not isinstance(chunk, int | np.integer) or chunk < 1:
            raise ValueError(f"chunk must be a positive int, got {chunk!r}")
        f = self._check_factors(factors)
        kr = len(self.rendered_sizes)
        base = np.ravel_multi_index(f[:, :kr].T, self.rendered_sizes).astype(np.int32)  # (n,)
        scale = self.scales[f[:, kr]]
        px, py = self.positions[f[:, kr + 1]], self.positions[f[:, kr + 2]]
        out = np.empty((len(f), self.image_size, self.image_size, 1), np.float32)
        warp, pad = self._compiled_warp(), backend.retraces_per_shape()
        for i in range(0, len(f), chunk):
            args = [a[i : i + chunk] for a in (base, scale, px, py)]  # each (m,)
            m = len(args[0])
            if pad and m < chunk:  # repeat the first item up to min(chunk, 2^ceil(log2 m))
                m_pad = min(chunk, 1 << (m - 1).bit_length())
                args = [np.concatenate([a, np.repeat(a[:1], m_pad - m)]) for a in args]
            out[i : i + m] = _to_numpy(warp(*args))[:m]
        return out

    def tf_dataset(self, batch_size: int, seed: int, start: int = 0, discrete: bool = False):
        """Infinite tf.data stream of (images float32 (B, S, S, 1), factors float32 (B, K));
        TensorFlow backend only (on JAX: param_stream / image_stream).

        Batch k is a pure function of (seed, k), so tf_dataset(B, seed, start=s) yields exactly
        batches s, s+1, ... of tf_dataset(B, seed) (resumable training). Rendered factors are
        uniform over their grid and reported as indices. discrete=False: scale, pos_x, pos_y
        are continuous uniform over their ranges and reported as physical values.
        discrete=True: all K factors are grid indices, and images_from_factors(factors.astype(int))
        reproduces the stream's pixels. The warp (self.warp) runs inside the tf.data map.
        Its random draws are TF's stateless RNG, not param_stream's: the batches differ."""
        if backend.is_jax():
            raise RuntimeError(
                "tf_dataset needs the TensorFlow backend (KERAS_BACKEND=jax is set); use "
                "param_stream (warp in the train step) or image_stream instead"
            )
        if isinstance(batch_size, bool) or int(batch_size) < 1 or int(start) < 0:
            raise ValueError(f"batch_size must be >= 1 and start >= 0, got {batch_size}, {start}")
        import tensorflow as tf  # noqa: PLC0415 (TF-only path)

        b, n_base, discrete = int(batch_size), self._num_base, bool(discrete)
        table = tf.constant(self._rendered_table, tf.float32)  # (N, Kr)
        scales, positions = tf.constant(self.scales), tf.constant(self.positions)
        (s_lo, s_hi), (p_lo, p_hi) = self.scale_range, self.pos_range
        seed = int(seed)

        def make_batch(k):
            seeds = tf.random.experimental.stateless_split(
                tf.stack([tf.constant(seed, tf.int64), k]), num=4
            )  # (4, 2): independent streams for base, scale, pos_x, pos_y
            base = tf.random.stateless_uniform(
                [b], seeds[0], minval=0, maxval=n_base, dtype=tf.int32
            )
            if discrete:
                sizes = (self.num_scales, self.num_positions, self.num_positions)
                idx = [
                    tf.random.stateless_uniform(
                        [b], seeds[i + 1], minval=0, maxval=m, dtype=tf.int32
                    )
                    for i, m in enumerate(sizes)
                ]  # scale, pos_x, pos_y grid indices, each (B,)
                scale = tf.gather(scales, idx[0])
                px, py = tf.gather(positions, idx[1]), tf.gather(positions, idx[2])
                extra = tf.cast(tf.stack(idx, 1), tf.float32)  # (B, 3) indices
            else:
                u = [tf.random.stateless_uniform([b], seeds[i]) for i in (1, 2, 3)]
                scale = s_lo + (s_hi - s_lo) * u[0]
                px, py = p_lo + (p_hi - p_lo) * u[1], p_lo + (p_hi - p_lo) * u[2]
                extra = tf.stack([scale, px, py], 1)  # (B, 3) physical values
            images = self.warp(base, scale, px, py)  # (B, S, S, 1)
            factors = tf.concat([tf.gather(table, base), extra], 1)  # (B, K)
            return images, factors

        ds = tf.data.Dataset.range(int(start), 2**62)
        ds = ds.map(make_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return ds.prefetch(tf.data.AUTOTUNE)

    # ------------------------------------------------------------------ backend-neutral streams
    def param_batch(self, batch_size: int, seed: int, k: int, discrete: bool = False) -> dict:
        """Batch k of param_stream(batch_size, seed, discrete=discrete): a pure function of
        (seed, k), drawn with numpy's counter-based Philox generator keyed by (seed, k)
        (Salmon et al. 2011), so any batch can be made without its predecessors.

        Returns dict of numpy arrays: base_idx int32 (B,) into the base renders; scale, pos_x,
        pos_y float32 (B,) physical values (the warp's inputs, WARP_KEYS); factors float32
        (B, K). Rendered factors are uniform over their grid and reported as indices.
        discrete=False: scale, pos_x, pos_y continuous uniform over their ranges, reported as
        physical values; discrete=True: grid indices, and
        images_from_factors(factors.astype(int)) reproduces warp(...) of this batch."""
        b, seed, k = _check_stream(batch_size, seed, k, "k")
        rng = np.random.Generator(np.random.Philox(key=np.array([seed, k], np.uint64)))
        base = rng.integers(0, self._num_base, size=b, dtype=np.int32)  # (B,)
        if discrete:
            sizes = np.array([self.num_scales, self.num_positions, self.num_positions])
            idx = rng.integers(0, sizes, size=(b, 3))  # (B, 3) scale, pos_x, pos_y indices
            scale = self.scales[idx[:, 0]]
            px, py = self.positions[idx[:, 1]], self.positions[idx[:, 2]]
            extra = idx.astype(np.float32)
        else:
            u = rng.random((3, b), dtype=np.float32)  # (3, B) in [0, 1)
            (s_lo, s_hi), (p_lo, p_hi) = self.scale_range, self.pos_range
            scale = np.float32(s_lo) + np.float32(s_hi - s_lo) * u[0]
            px = np.float32(p_lo) + np.float32(p_hi - p_lo) * u[1]
            py = np.float32(p_lo) + np.float32(p_hi - p_lo) * u[2]
            extra = np.stack([scale, px, py], 1)  # (B, 3) physical values
        table = self._rendered_table[base].astype(np.float32)  # (B, Kr) indices
        return dict(
            base_idx=base, scale=scale, pos_x=px, pos_y=py,
            factors=np.concatenate([table, extra], 1),
        )  # fmt: skip

    def param_stream(self, batch_size: int, seed: int, start: int = 0, discrete: bool = False):
        """Infinite iterator of param_batch(batch_size, seed, k, discrete) for k = start,
        start + 1, ...: start=s yields exactly batches s, s+1, ... (resumable training). numpy
        only; the train step renders each batch on the device with warp(*[p[k] for k in
        WARP_KEYS])."""
        b, seed, start = _check_stream(batch_size, seed, start, "start")  # now, not at next()
        discrete = bool(discrete)
        return (self.param_batch(b, seed, k, discrete) for k in itertools.count(start))

    def image_stream(self, batch_size: int, seed: int, start: int = 0, discrete: bool = False):
        """Infinite iterator of numpy (images float32 (B, S, S, 1), factors float32 (B, K)):
        param_stream with the compiled warp applied, on any backend (write_sheet and export use
        it on JAX). One batch is kept in flight, so on JAX the next warp runs while the
        caller consumes this one."""
        params = self.param_stream(batch_size, seed, start, discrete)
        warp = self._compiled_warp()

        def run():
            def launch():
                p = next(params)
                return warp(*[p[key] for key in WARP_KEYS]), p["factors"]

            pending = launch()
            while True:
                (x, f), pending = pending, launch()
                yield _to_numpy(x), f

        return run()

    def config(self) -> dict:
        """The data config, JSON-serialisable: written into runs/<name>/config.json."""
        return dict(
            path=self.path,
            image_size=self.image_size,
            scale_range=list(self.scale_range),
            pos_range=list(self.pos_range),
            num_scales=self.num_scales,
            num_positions=self.num_positions,
            factor_names=list(self.factor_names),
            factor_sizes=[int(v) for v in self.factor_sizes],
            render_config_hash=self.meta.get("config_hash"),
        )

    def __repr__(self) -> str:
        sizes = dict(zip(self.factor_names, self.factor_sizes))
        return f"ShapesDataset({self.path!r}, image_size={self.image_size}, factors={sizes})"


# ---------------------------------------------------------------------------- CLI helpers


def write_sheet(ds: ShapesDataset, out: str, n: int = 64, seed: int = 0) -> str:
    """A contact sheet of n on-the-fly samples (continuous scale/position), with labels; a PNG
    written atomically with matplotlib's object API (sbd_vae/plotting.py: no pyplot)."""
    images, factors = next(_numpy_batches(ds, n, seed))
    images = images[..., 0]  # (n, S, S); factors (n, K)
    cols = int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / cols))
    fig = plotting.figure(1.3 * cols, 1.3 * rows + 0.9)
    axes = fig.subplots(rows, cols, squeeze=False)
    names = [str(v) for v in ds.values["shape"]] if "shape" in ds.values else None
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i >= n:
            continue
        ax.imshow(images[i], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        f = dict(zip(ds.factor_names, factors[i]))
        label = names[int(f["shape"])] if names else ""
        for key in ("azimuth", "tilt"):
            if key in f:
                label += f" {ds.values[key][int(f[key])]:.0f}°"
        ax.set_title(f"{label} s={f['scale']:.2f}", fontsize=6, pad=1)
    fig.suptitle(
        f"{n} on-the-fly samples from {ds.path} at {ds.image_size}px (seed {seed})\n"
        f"scale {ds.scale_range}, pos_x/pos_y {ds.pos_range} (x right, y down), "
        f"factors {dict(zip(ds.factor_names, ds.factor_sizes))}",
        fontsize=7,
        wrap=True,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    plotting.save(fig, out, dpi=110)
    return out


def _numpy_batches(ds: ShapesDataset, batch_size: int, seed: int, discrete: bool = False):
    """Infinite iterator of numpy (images float32 (B, S, S, 1), factors float32 (B, K)) for the
    CLI helpers: ds.tf_dataset on TensorFlow (the stream the committed samples and exports were
    made with, and the faster one on a CPU), ds.image_stream on JAX (no tensorflow there)."""
    if backend.is_jax():
        yield from ds.image_stream(batch_size, seed, discrete=discrete)
        return
    for images, factors in ds.tf_dataset(batch_size, seed, discrete=discrete):
        yield images.numpy(), factors.numpy()


def _npy_member(zf: zipfile.ZipFile, name: str, dtype, shape):
    """Open `name`.npy for streaming inside zf and write its header; the caller writes raw bytes."""
    fp = zf.open(f"{name}.npy", "w", force_zip64=True)
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False}
    np.lib.format.write_array_header_2_0(fp, dict(header, shape=tuple(shape)))
    return fp


def export(
    ds: ShapesDataset,
    out: str,
    n: int,
    seed: int = 0,
    dtype: str = "uint8",
    discrete: bool = False,
    chunk: int = 1024,
    progress: bool = True,
) -> str:
    """Write n pre-transformed samples of ds.tf_dataset(chunk, seed, discrete) (on JAX:
    ds.image_stream) to the npz `out`
    (images uint8 or float16 (n, S, S, 1), factors float32 (n, K), factor_names, factor_sizes,
    meta JSON), streamed chunk by chunk into the zip, atomically. Read it back with data.py."""
    if int(n) < 1 or dtype not in ("uint8", "float16"):
        raise ValueError(f"need n >= 1 and dtype uint8|float16, got n={n}, dtype={dtype!r}")
    n, s, k = int(n), ds.image_size, ds.num_factors
    factors = np.empty((n, k), np.float32)
    stream = _numpy_batches(ds, min(chunk, n), seed, discrete=discrete)
    bar = None
    if progress:
        from tqdm import tqdm  # noqa: PLC0415

        bar = tqdm(total=n, desc="export", unit="img")
    with rundir.atomic_path(out) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:
        with _npy_member(zf, "images", dtype, (n, s, s, 1)) as fp:
            done = 0
            while done < n:
                images, f = next(stream)
                m = min(n - done, len(f))
                x = images[:m]  # (m, S, S, 1) float32 in [0, 1]
                x = np.round(x * 255.0).astype(np.uint8) if dtype == "uint8" else x.astype(dtype)
                fp.write(np.ascontiguousarray(x).tobytes())
                factors[done : done + m] = f[:m]
                done += m
                if bar is not None:
                    bar.update(m)
        meta = dict(ds.config(), n=n, seed=int(seed), discrete=bool(discrete), dtype=dtype)
        arrays = dict(
            factors=factors,
            factor_names=np.array(ds.factor_names),
            factor_sizes=np.array(ds.factor_sizes, np.int64),
            meta=np.array(json.dumps(meta)),
        )
        for name, arr in arrays.items():
            with zf.open(f"{name}.npy", "w", force_zip64=True) as fp:
                np.lib.format.write_array(fp, arr, allow_pickle=False)
    if bar is not None:
        bar.close()
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Shapes dataset tools")
    sub = p.add_subparsers(dest="cmd", required=True, help="sheet | export (each has --help)")
    helps = {
        "sheet": "a PNG contact sheet of labelled samples",
        "export": "n pre-transformed samples with their factors → an npz for data.py",
    }
    for name in ("sheet", "export"):
        is_export = name == "export"
        q = sub.add_parser(name, help=helps[name])
        q.add_argument(
            "--data",
            default="data/shapes.npz",
            help="the rendered shapes (.npz of blender/render_shapes.py) [default data/shapes.npz]",
        )
        q.add_argument(
            "--image_size", type=int, default=128, help="side of the images, pixels [default 128]"
        )
        q.add_argument("--seed", type=int, default=0, help="seed of the samples [default 0]")
        q.add_argument(
            "--out",
            required=is_export,
            default="img/samples.png",
            help="the npz to write [required]"
            if is_export
            else "the PNG [default img/samples.png]",
        )
        q.add_argument(
            "--n",
            type=int,
            default=64,
            required=is_export,
            help="number of images [required]" if is_export else "number of images [default 64]",
        )
        if is_export:
            q.add_argument(
                "--dtype",
                choices=["uint8", "float16"],
                default="uint8",
                help="pixel type of the images [default uint8]",
            )
            q.add_argument(
                "--discrete",
                action="store_true",
                help="factors on the evaluation grid, stored as indices [off: continuous]",
            )
    a = p.parse_args(argv)
    try:
        ds = ShapesDataset(a.data, image_size=a.image_size)
        if a.cmd == "sheet":
            print(f"wrote {write_sheet(ds, a.out, n=a.n, seed=a.seed)}")
        else:
            path = export(ds, a.out, a.n, seed=a.seed, dtype=a.dtype, discrete=a.discrete)
            print(f"wrote {path}: {a.n} images {a.image_size}px ({a.dtype})")
    except (ValueError, OSError, rundir.RunDirError) as e:
        print(f"dataset.py: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
