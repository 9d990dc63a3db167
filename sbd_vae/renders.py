"""The render file's checks for ``dataset.ShapesDataset``: reading data/shapes.npz (the base
renders of blender/render_shapes.py) with every way it can be unusable named, and the fix to print.

Moved here from dataset.py, unchanged; dataset.py re-exports ``RENDER_FIX``, ``render_fix``,
``DatasetError`` and ``load_renders`` under their old names. Importing this module imports numpy and
the standard library only (``render_fix`` imports blender/render_shapes.py, numpy only, when it runs).
"""

from __future__ import annotations

import json
import os

import numpy as np

from . import rundir

RENDER_FIX = "run `.venv/bin/python blender/render_shapes.py --out {path}` (or `make demo`)"


def render_fix(path: str) -> str:
    """The fix to print for an unusable dataset file `path`. RENDER_FIX re-renders `path` in
    place, which is right when it is absent or a render of blender/render_shapes.py (the renderer
    overwrites only those). Any other file (a README passed by mistake, someone's npz) must not
    be rendered over: the fix then renders a new file and points --data_path at it."""
    from blender.render_shapes import fresh_render_path, overwrite_refusal  # numpy only

    if overwrite_refusal(path) is None:
        return RENDER_FIX.format(path=path)
    new = fresh_render_path(path)
    return (
        f"{path} is not a render of blender/render_shapes.py, so do not render over it: run "
        f"`.venv/bin/python blender/render_shapes.py --out {new}`, then pass `--data_path {new}` "
        f"(`--data {new}` for dataset.py)"
    )


class DatasetError(ValueError):
    """A dataset file that exists but cannot be used (truncated, corrupt, wrong arrays)."""


def load_renders(path: str) -> dict:
    """Load and check a render npz. Returns dict(images uint8 (N, R, R, 1) in row-major factor
    order, names [str], sizes [int], values {name: array}, meta dict)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"dataset file {path!r} does not exist: {render_fix(path)}")
    try:
        rundir.check_zip_crc(path)  # every member, not only those np.load reads to the end
        with np.load(path, allow_pickle=False) as z:
            names = [str(s) for s in z["factor_names"]]
            values = {n: z[f"values_{n}"] for n in names}
            images, factors = z["images"], z["factors"]  # reading checks each member's CRC
            meta = json.loads(str(z["meta"]))
    except Exception as e:  # zipfile, zlib, npy header, JSON, CRC: all mean "corrupt"
        raise DatasetError(
            f"dataset file {path!r} is truncated or corrupt, or not a dataset at all "
            f"({type(e).__name__}: {e}); " + render_fix(path)
        ) from e
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 1:
        raise DatasetError(
            f"{path!r}: images have shape {images.shape} and dtype {images.dtype}, expected "
            f"uint8 (N, R, R, 1); {render_fix(path)}"
        )
    if images.shape[1] != images.shape[2]:
        raise DatasetError(f"{path!r}: images are not square ({images.shape}); {render_fix(path)}")
    sizes = [len(values[n]) for n in names]
    n = int(np.prod(sizes))
    ok = factors.ndim == 2 and factors.shape == (len(images), len(names))
    ok = ok and np.issubdtype(factors.dtype, np.integer) and len(images) == n
    ok = ok and bool(np.all((factors >= 0) & (factors < np.array(sizes))))
    if not ok:
        raise DatasetError(
            f"{path!r}: factors {factors.shape} do not index a full grid {sizes} of "
            f"{len(images)} images; {render_fix(path)}"
        )
    flat = np.ravel_multi_index(factors.T, sizes)  # (N,)
    if len(np.unique(flat)) != n:
        raise DatasetError(f"{path!r}: some factor combinations are repeated; {render_fix(path)}")
    ordered = np.empty_like(images)
    ordered[flat] = images  # row-major over the rendered factors, first factor slowest
    return dict(images=ordered, names=names, sizes=sizes, values=values, meta=meta)


def max_radius(images: np.ndarray) -> float:
    """Largest distance from the image centre of a nonzero pixel, plus half a pixel, in
    fractions of the width; images uint8 (N, R, R, 1)."""
    r = images.shape[1]
    ys, xs = np.nonzero(images.max(axis=(0, 3)))  # union of all objects' footprints
    if len(xs) == 0:
        raise DatasetError("all base images are empty")
    c = (r - 1) / 2.0
    return float((np.sqrt((xs - c) ** 2 + (ys - c) ** 2).max() + 0.5) / r)
