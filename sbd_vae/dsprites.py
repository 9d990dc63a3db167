"""dSprites-like (procedural): dSprites' exact factor grid, rendered here, with no download.

The grid is that of deepmind/dsprites-dataset (Matthey et al. 2017), in its order:

    factor       size  values (``DSpritesDataset.values``)
    shape           3  "square", "ellipse", "heart" (names; index 0, 1, 2)
    scale           6  linspace(0.5, 1, 6): a LINEAR size factor, so areas go as scale²
    orientation    40  linspace(0, 2π, 40) radians: step 2π/39, and index 39 (2π) is the pose of 0
    pos_x          32  linspace(0, 1, 32): left to right, along the image COLUMNS
    pos_y          32  linspace(0, 1, 32): top to bottom, along the image ROWS

737 280 points (``num_points``); images 64 × 64 × 1, float32 in {0, 1}, no anti-aliasing.

The pixels cannot be those of the original file (its generator was never published), so the
name shown with any score is ``DISPLAY_NAME`` = "dSprites-like (procedural)". The sizes below are
the ones measured on the published images to about 1 px (as quoted in the project's issue 19;
this module was written without the file), and every other choice is stated here.

Coordinates. Pixel (row r, column c) has its centre at (r, c) (index coordinates; the image
centre is (31.5, 31.5)). A sprite's centre always lies on a pixel centre:

    centre column = 16 + 31 · pos_x,  centre row = 16 + 31 · pos_y     (pixel index coordinates)

so pos 0 → pixel 16 and pos 1 → pixel 47, one pixel per grid step, symmetric about the image
centre (16 + 47 = 2 · 31.5); in fractions of the width, with pixel edges at integers, the
centres run from 16.5 / 64 = 0.258 W to 47.5 / 64 = 0.742 W. (A span of 32 px, 16 → 48,
would need a step of 32/31 px and sub-pixel centres; the 31 px span keeps every position an
exact pixel offset, see Rendering.)

Shapes, in a sprite frame (u right, v UP, origin at the sprite centre), at scale s:
- square: |u| ≤ 9.5 s and |v| ≤ 9.5 s. At scale 1 and orientation 0: 19 × 19 px.
- ellipse: (u / 13 s)² + (v / 7.5 s)² ≤ 1, long axis along u (horizontal at orientation 0).
  Continuous extent 26 × 15 at scale 1; at orientation 0 its pixel centres span 25 × 15 px (the
  tips (±13, 0) lie exactly on the outline, and outline points are outside, see below).
- heart: the implicit heart curve (x² + y² − 1)³ − x² y³ ≤ 0 (lobes up, point down at
  orientation 0), whose bounding box is x ∈ [−1.13903, 1.13903], y ∈ [−1, 1.23666];
  scaled uniformly by 9.5 s / 1.13903 (19 s wide, 18.65 s tall) and shifted so that its bounding
  box is centred on the sprite centre: at scale 1 it fits a 19 × 19 px box.
- Orientation θ turns the sprite counter-clockwise as displayed (rows grow downward, so
  v = −(row offset)). Scale multiplies every length about the sprite centre.
- The largest rotated sprite (the square at 45°, half-diagonal 9.5 √2 = 13.44 px) stays
  within 14 px of its centre, so every sprite's pixels lie in rows and columns 3 … 60: the
  border (rows and columns 0 and 63, and more) is never touched, at any grid point.

Rendering (exact, deterministic, pure numpy, no random numbers). A pixel is 1 iff its centre,
rotated by −θ about the sprite centre into the sprite frame, passes the shape's inside test
(square: max(|u|, |v|) / h ≤ 1 − 1e-9; ellipse: (u/a)² + (v/b)² ≤ 1 − 1e-9; heart, in its
own units: (x² + y² − 1)³ − x² y³ ≤ −1e-9): a pixel centre exactly on the outline is outside, and the margin makes that decision immune to
the 1e-16 rounding of cos and sin. θ is reduced modulo 2π before cos and sin are taken, so
index 39 renders bit for bit as index 0. Since the sprite centre is always a pixel centre, the
inside test of a pixel depends only on its INTEGER offset from the centre: the 3 × 6 × 40 = 720
(shape, scale, orientation) sprites are rasterised once, each on a 31 × 31 canvas centred on
the sprite centre (offsets −15 … 15; nothing reaches the canvas edge), and
``images_from_factors`` pastes the canvas at the integer offset (16 + pos_x index,
16 + pos_y index). This is identical, pixel for pixel, to rasterising the whole 64 × 64 image
directly (``render_direct``; the tests compare the two).

Symmetries, which stay visible: orientations are θ_k = 2π k / 39, k = 0 … 39.
- Index 39 is θ = 2π ≡ 0: pairs (0, 39) are the same pose, for every shape and scale.
- A square repeats every quarter turn, an ellipse every half turn, but neither is an index
  shift here: θ_j ≡ θ_k modulo π/2 needs 4 (j − k) / 39 to be an integer, and as gcd(4, 39) = 1
  that means 39 | (j − k); modulo π it needs 2 (j − k) / 39 integral, the same condition. So
  within the grid the only exactly equal poses are (0, 39), for all three shapes. The nearest
  misses are the square at j − k = 10 or 29 (a quarter turn ± 2.31°) and 19 or 20 (a half turn
  ± 4.62°, also the ellipse's), and some of them render to the same pixels at small scales,
  where a 2.31° turn moves a corner by less than a pixel. Measured over the whole grid (the
  tests check exactly this, at a fixed position), the orientation indices that render to the
  same pixels, as classes of identical images (every pair within a class is identical):

      ellipse, heart, every scale:  {0, 39} only: 1 pair each.
      square, scale index 0 (0.5):  {0, 10, 29, 39} {3, 32} {5, 34} {7, 36} {8, 18} {21, 31}
                                    11 pairs, 32 distinct images of 40
      square, scale index 1 (0.6):  {0, 10, 29, 39} {3, 32} {4, 14, 24} {6, 16} {7, 36}
                                    {8, 18} {15, 25, 35} {21, 31} {23, 33}: 18 pairs, 27 distinct
      square, scale index 2 (0.7):  {0, 10, 29, 39} {5, 34}: 7 pairs, 36 distinct
      square, scale index 3 (0.8):  {0, 10, 29, 39} {3, 13} {4, 14} {5, 34} {7, 17} {22, 32}
                                    {25, 35} {26, 36}: 13 pairs, 30 distinct
      square, scale index 4 (0.9):  {0, 10, 29, 39}: 6 pairs, 37 distinct
      square, scale index 5 (1.0):  {0, 10, 29, 39} {5, 34}: 7 pairs, 36 distinct

  Every square pair is a near-symmetry: k − j ∈ {10, 19, 20, 29, 39}, i.e. a multiple of a
  quarter turn to within 4.62° (the ellipse's near misses, 19 and 20, never coincide). The class
  {0, 10, 29, 39} holds at every scale: 0 and 39 are the axis-aligned square, 10 and 29 are
  2.31° off a quarter turn, and the axis-aligned edges lie half-way between pixel centres
  (h = 9.5 s), so a 2.31° turn changes no pixel. (No half side removes these coincidences: the
  rasterised square is too small for 2.31° to always show.) No other pair of any (shape,
  scale) is pixel-identical.
- A heart has no rotational symmetry: only (0, 39).
The metrics treat orientation as circular (``circular_factors``) and shape as categorical
(``categorical_factors``).

Sampler contract (``sbd_vae.datasets.GroundTruthSampler``: disentanglement_lib's GroundTruthData
plus what training and evaluation need): ``factor_names``, ``factor_sizes``,
``sample_factors(n, rng) -> int64 (n, 5)``, ``images_from_factors(int (n, 5)) -> float32
(n, 64, 64, 1)`` in {0, 1}, plus ``num_points``, ``num_factors``, ``values``, ``factor_values``,
``config()``, ``image_size``, ``circular_factors``, ``categorical_factors``, ``name``,
``display_name``, and the training streams ``tf_dataset`` / ``image_stream`` (``GridStreams``).
Train on it with ``training.py train --preset dsprites`` (``--dataset dsprites``).
"""

from __future__ import annotations

import math

import numpy as np

from .datasets import GridStreams

NAME = "dsprites"
DISPLAY_NAME = "dSprites-like (procedural)"
GENERATOR_VERSION = "1"  # bump whenever a pixel of any grid point changes

IMAGE_SIZE = 64
FACTOR_NAMES = ["shape", "scale", "orientation", "pos_x", "pos_y"]
FACTOR_SIZES = [3, 6, 40, 32, 32]
SHAPE_NAMES = ("square", "ellipse", "heart")

# geometry, in pixels at scale 1 (see the module docstring)
POS_FIRST_PIXEL = 16  # centre row / column of pos index 0; pos index i -> 16 + i
SQUARE_HALF_SIDE = 9.5
ELLIPSE_SEMI_AXES = (13.0, 7.5)  # (along u, along v) at orientation 0
HEART_HALF_WIDTH = 9.5
# bounding box of (x² + y² − 1)³ − x² y³ ≤ 0 (computed numerically, 1e-6)
HEART_X_MAX = 1.1390282
HEART_Y_RANGE = (-1.0, 1.2366592)
INSIDE_MARGIN = 1e-9  # outline points are outside: f ≤ 1 − margin
CANVAS_HALF = 15  # sprite canvas offsets −15 … 15 (31 × 31)
_CHUNK = 8192


def _inside(shape: int, scale: float, theta: float, drow, dcol) -> np.ndarray:
    """bool mask, same shape as drow / dcol: pixel centres at integer offsets (drow down, dcol
    right) from the sprite centre that lie inside the sprite (shape index, scale value, theta
    in radians). The one rasteriser: the sprite cache and render_direct both call it."""
    t = math.fmod(float(theta), 2 * math.pi)  # 2π -> 0.0 exactly
    c, s = math.cos(t), math.sin(t)
    x = np.asarray(dcol, np.float64)
    y = -np.asarray(drow, np.float64)  # v up
    u = c * x + s * y  # rotate by −θ into the sprite frame
    v = -s * x + c * y
    lim = 1.0 - INSIDE_MARGIN
    if shape == 0:
        h = SQUARE_HALF_SIDE * scale
        return np.maximum(np.abs(u), np.abs(v)) / h <= lim
    if shape == 1:
        a, b = (ax * scale for ax in ELLIPSE_SEMI_AXES)
        return (u / a) ** 2 + (v / b) ** 2 <= lim
    if shape == 2:
        k = HEART_HALF_WIDTH * scale / HEART_X_MAX  # pixels per heart unit
        yc = 0.5 * (HEART_Y_RANGE[0] + HEART_Y_RANGE[1])  # bounding-box centre
        hx, hy = u / k, v / k + yc
        r = hx * hx + hy * hy - 1.0
        return r * r * r - hx * hx * hy * hy * hy <= -INSIDE_MARGIN
    raise ValueError(f"shape index must be 0, 1 or 2, got {shape}")


def _check_sprite_fits(mask: np.ndarray, what: str) -> None:
    edge = np.concatenate([mask[0], mask[-1], mask[:, 0], mask[:, -1]])
    if edge.any():
        raise AssertionError(f"{what} reaches the edge of its {mask.shape} canvas")


_SPRITES: np.ndarray | None = None


def sprite_cache() -> np.ndarray:
    """float32 (3, 6, 40, 31, 31): every (shape, scale, orientation) sprite on its canvas,
    centred at [15, 15]; computed once per process (about 0.03 s), read-only."""
    global _SPRITES
    if _SPRITES is None:
        off = np.arange(-CANVAS_HALF, CANVAS_HALF + 1)
        drow, dcol = np.meshgrid(off, off, indexing="ij")  # (31, 31)
        scales, thetas = _scale_values(), _orientation_values()
        out = np.zeros((*FACTOR_SIZES[:3], 2 * CANVAS_HALF + 1, 2 * CANVAS_HALF + 1), np.float32)
        for i in range(FACTOR_SIZES[0]):
            for j, sc in enumerate(scales):
                for k, th in enumerate(thetas):
                    m = _inside(i, float(sc), float(th), drow, dcol)
                    _check_sprite_fits(m, f"sprite {(i, j, k)}")
                    out[i, j, k] = m
        out.flags.writeable = False
        _SPRITES = out
    return _SPRITES


def _scale_values() -> np.ndarray:
    return np.linspace(0.5, 1.0, FACTOR_SIZES[1])


def _orientation_values() -> np.ndarray:
    return np.linspace(0.0, 2 * np.pi, FACTOR_SIZES[2])


def _position_values() -> np.ndarray:
    return np.linspace(0.0, 1.0, FACTOR_SIZES[3])


def render_direct(factors) -> np.ndarray:
    """float32 (n, 64, 64, 1): the reference rasteriser, evaluating the inside test at all 64 × 64
    pixel centres of each image (no cache, slow: for tests). Same pixels as
    DSpritesDataset.images_from_factors."""
    f = _check_factors(factors)
    scales, thetas = _scale_values(), _orientation_values()
    rows, cols = np.meshgrid(np.arange(IMAGE_SIZE), np.arange(IMAGE_SIZE), indexing="ij")
    out = np.zeros((len(f), IMAGE_SIZE, IMAGE_SIZE, 1), np.float32)
    for n, (sh, sc, th, px, py) in enumerate(f):
        cy, cx = POS_FIRST_PIXEL + py, POS_FIRST_PIXEL + px
        out[n, ..., 0] = _inside(
            int(sh), float(scales[sc]), float(thetas[th]), rows - cy, cols - cx
        )
    return out


def _check_factors(factors) -> np.ndarray:
    f = np.asarray(factors)
    k = len(FACTOR_SIZES)
    if f.ndim != 2 or f.shape[1] != k:
        raise ValueError(f"factors must be (n, {k}), got {f.shape}")
    if not np.issubdtype(f.dtype, np.integer):
        if f.size and not (np.issubdtype(f.dtype, np.number) and np.all(f == np.round(f))):
            raise ValueError("factors must be integer grid indices")
        f = f.astype(np.int64)
    f = f.astype(np.int64)
    if np.any(f < 0) or np.any(f >= np.array(FACTOR_SIZES)):
        raise ValueError(f"factor indices out of range for factor_sizes {FACTOR_SIZES}")
    return f


class DSpritesDataset(GridStreams):
    """dSprites-like (procedural) ground-truth sampler; see the module docstring. The "dsprites"
    entry of the dataset registry (sbd_vae/datasets.py, ``--dataset dsprites``); its training
    streams are ``GridStreams``': batch k is ``images_from_factors`` of factors drawn with a
    Philox generator keyed by (seed, k), made on the host with numpy (about 0.1 s per 10 000
    images), the same batches on TensorFlow and on JAX."""

    name = NAME
    display_name = DISPLAY_NAME
    version = GENERATOR_VERSION
    image_size = IMAGE_SIZE
    circular_factors = ("orientation",)
    categorical_factors = ("shape",)
    grid_note = (
        "dSprites' grid (sbd_vae/dsprites.py): orientation indices 0 and 39 are one pose "
        "(0 and 2π), so those two classes hold identical images."
    )  # metrics.json

    def __init__(self):
        self.factor_names = list(FACTOR_NAMES)
        self.factor_sizes = list(FACTOR_SIZES)
        self.num_factors = len(self.factor_names)
        self.values = {
            "shape": np.array(SHAPE_NAMES),
            "scale": _scale_values(),
            "orientation": _orientation_values(),
            "pos_x": _position_values(),
            "pos_y": _position_values(),
        }
        self._sprites = sprite_cache().reshape(-1, 2 * CANVAS_HALF + 1, 2 * CANVAS_HALF + 1)

    @classmethod
    def from_config(cls, cfg) -> DSpritesDataset:
        """The registry's factory: the procedural dSprites reads no field of ``cfg`` (its grid
        and its 64 × 64 images are fixed), but refuses any other --image_size."""
        if cfg.image_size != IMAGE_SIZE:
            raise ValueError(
                f"--dataset dsprites renders {IMAGE_SIZE}×{IMAGE_SIZE} images only, not "
                f"--image_size {cfg.image_size}: pass --image_size {IMAGE_SIZE}"
            )
        return cls()

    @property
    def num_points(self) -> int:
        """The number of grid points, prod(factor_sizes) = 737 280: β-TCVAE's N. (Pairs of
        orientation indices 0 and 39 give the same image, so distinct images are fewer.)"""
        return int(np.prod(self.factor_sizes, dtype=np.int64))

    def sample_factors(self, n: int, rng: np.random.RandomState) -> np.ndarray:
        """int64 (n, 5), uniform over the factor grid (rng: RandomState, or a numpy Generator)."""
        draw = rng.randint if hasattr(rng, "randint") else rng.integers
        return np.stack([draw(0, k, size=n) for k in self.factor_sizes], 1).astype(np.int64)

    def factor_values(self, factors) -> np.ndarray:
        """float64 (n, 5) physical values of grid indices: shape -> its index (names in
        values['shape']), scale -> size factor, orientation -> radians, pos -> [0, 1]."""
        f = _check_factors(factors)
        out = np.empty(f.shape, np.float64)
        for j, name in enumerate(self.factor_names):
            v = self.values[name]
            out[:, j] = f[:, j] if v.dtype.kind in "US" else v[f[:, j]]
        return out

    def images_from_factors(self, factors) -> np.ndarray:
        """float32 (n, 64, 64, 1) in {0, 1}: exact and deterministic for any grid index (the
        cached sprite pasted at its integer position; see the module docstring)."""
        f = _check_factors(factors)
        n, w, s = len(f), 2 * CANVAS_HALF + 1, IMAGE_SIZE
        out = np.zeros((n, s, s, 1), np.float32)
        # every (w, w) window of every image, as a writable view: windows[i, r0, c0] is the
        # canvas of image i whose top-left pixel is (r0, c0)
        windows = np.lib.stride_tricks.sliding_window_view(
            out[..., 0], (w, w), axis=(1, 2), writeable=True
        )
        sprite = np.ravel_multi_index(f[:, :3].T, self.factor_sizes[:3])  # (n,)
        top = f[:, 4] + (POS_FIRST_PIXEL - CANVAS_HALF)  # pos_y -> rows
        left = f[:, 3] + (POS_FIRST_PIXEL - CANVAS_HALF)  # pos_x -> columns
        for i in range(0, n, _CHUNK):
            sl = slice(i, i + _CHUNK)
            idx = np.arange(i, min(i + _CHUNK, n))
            windows[idx, top[sl], left[sl]] = self._sprites[sprite[sl]]
        return out

    def config(self) -> dict:
        """The data config, JSON-serialisable: written into runs/<name>/config.json."""
        return dict(
            name=self.name,
            display_name=self.display_name,
            generator_version=self.version,
            image_size=self.image_size,
            factor_names=list(self.factor_names),
            factor_sizes=[int(v) for v in self.factor_sizes],
            num_points=self.num_points,
        )

    def __repr__(self) -> str:
        sizes = dict(zip(self.factor_names, self.factor_sizes))
        return f"DSpritesDataset({self.display_name!r}, factors={sizes})"
