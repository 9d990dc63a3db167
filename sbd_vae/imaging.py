"""Image grids, labelled frames and GIFs (imageio), all written atomically.

Shared by the training callbacks (the training GIF) and the latent-space figures (traversals,
reconstructions).
"""

from __future__ import annotations

from pathlib import Path

import imageio.v2 as imageio
import numpy as np
from PIL import Image, ImageDraw

from .rundir import atomic_path


def to_uint8(images) -> np.ndarray:
    """float [0, 1] (..., H, W[, 1]) → uint8 (..., H, W)."""
    a = np.asarray(images, dtype=np.float32)
    if a.ndim >= 3 and a.shape[-1] == 1:
        a = a[..., 0]
    return (np.clip(a, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def grid(images, pad: int = 2, min_tile: int = 64, value: int = 255) -> np.ndarray:
    """(R, C, H, W[, 1]) floats in [0, 1] → one uint8 (R·H', C·W') image with ``pad`` pixel gutters.

    Tiles smaller than ``min_tile`` are enlarged by an integer nearest-neighbour factor, so a
    32×32 reconstruction is still readable; the pixels themselves are not interpolated.
    """
    tiles = to_uint8(images)  # (R, C, H, W)
    rows, cols, h, w = tiles.shape
    k = max(1, -(-min_tile // max(h, w)))
    tiles = tiles.repeat(k, axis=2).repeat(k, axis=3)
    h, w = h * k, w * k
    out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad), value, np.uint8)
    for r in range(rows):
        for c in range(cols):
            y, x = pad + r * (h + pad), pad + c * (w + pad)
            out[y : y + h, x : x + w] = tiles[r, c]
    return out


def caption(image: np.ndarray, text: str, height: int = 16) -> np.ndarray:
    """Adds a white band with ``text`` above a uint8 greyscale image."""
    band = Image.new("L", (image.shape[1], height), 255)
    ImageDraw.Draw(band).text((4, 2), text, fill=0)
    return np.concatenate([np.asarray(band), image], axis=0)


def save_png(path, image: np.ndarray) -> Path:
    with atomic_path(path, suffix=".png") as tmp:
        imageio.imwrite(tmp, image)
    return Path(path)


def save_gif(path, frames: list[np.ndarray], fps: float = 4.0) -> Path:
    """Looping GIF from equally sized uint8 frames (greyscale frames are stored as RGB: Pillow
    gives each greyscale frame its own palette, which imageio cannot read back as one stack)."""
    frames = [np.repeat(f[..., None], 3, axis=-1) if f.ndim == 2 else f for f in frames]
    with atomic_path(path, suffix=".gif") as tmp:
        imageio.mimsave(tmp, frames, duration=1.0 / fps, loop=0)
    return Path(path)
