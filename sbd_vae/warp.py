"""The resampling kernel of ``dataset.ShapesDataset``: the resize pyramid of the base renders and
the batched affine warp (zoom and translation) that makes its images, on any Keras backend.

Moved here from dataset.py, unchanged (dataset.py keeps the old private names as aliases), so
that the user's sampler module holds the sampler and this package holds the machinery.

- ``resize_pyramid``: the base renders resized once to the output size (numpy, area averaging),
  plus coarser levels for small scales; bit-identical to the tf.image.resize it replaced
  (``resize_weights`` reproduces TF's kernels' float32 weights and summation order,
  ``gather_sum`` their order of addition).
- ``warp_batch``: the batched affine warp in keras.ops (TF's ImageProjectiveTransformV3, JAX's
  map_coordinates), jit-compatible, its constants passed as arguments.
- ``to_numpy``: a backend tensor as a numpy array.

Importing this module imports numpy and the standard library only; Keras when a function runs.
"""

from __future__ import annotations

import math

import numpy as np


def warp_batch(pyramid, ratios, num_base: int, size: int, base_idx, scale, pos_x, pos_y):
    """ShapesDataset.warp with its constants as arguments (so that a jitted caller can pass the
    pyramid instead of closing over it). pyramid float32 (L*N, S, S, 1), ratios float32 (L,).

    Coordinates. The affine transform (keras.ops.image.affine_transform: TF's
    ImageProjectiveTransformV3, JAX's map_coordinates) puts pixel centres at integer coordinates:
    output pixel p (column x, row y) samples the source at the point T p. The resize pyramid uses
    half-pixel centres (source pixel i covers [i, i+1) of the level-0 grid scaled by k), hence
    the +0.5 / -0.5 below. Output pixel p, with image centre c = (S-1)/2 and shift t = pos * S,
    shows the level-0 point q = (p - c - t) / scale + c; the source is pyramid level
    l = floor(log2(1/scale)) (so bilinear never decimates by more than 2x), whose pixel
    coordinate is (q + 0.5) * k - 0.5 with k = S_l / S. Levels sit top-left in an S x S canvas
    of zeros, so the constant-0 fill and the canvas agree outside the level."""
    from keras import ops  # noqa: PLC0415

    args = {"base_idx": base_idx, "scale": scale, "pos_x": pos_x, "pos_y": pos_y}
    for name, v in args.items():
        v = ops.convert_to_tensor(v)
        if len(v.shape) != 1:
            raise ValueError(f"{name} must be a 1-D batch (B,), got shape {tuple(v.shape)}")
        args[name] = ops.cast(v, "int32" if name == "base_idx" else "float32")
    lengths = {n: v.shape[0] for n, v in args.items() if v.shape[0] is not None}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"base_idx, scale, pos_x, pos_y must have one length, got {lengths}")
    base_idx, scale, pos_x, pos_y = args.values()
    s = size
    c = (s - 1) / 2.0
    n_levels = int(ratios.shape[0])
    # written as the earlier tf.raw_ops implementation, operation for operation, so that on TF
    # every float32 value (and so every pixel) is bit-identical to it
    level = ops.floor(-ops.log(scale) / math.log(2.0))  # (B,)
    level = ops.cast(ops.clip(level, 0.0, n_levels - 1.0), "int32")
    k = ops.take(ratios, level, axis=0)  # (B,)
    src = ops.take(pyramid, level * num_base + base_idx, axis=0)  # (B, S, S, 1)
    a = k / scale
    bx = ((-c - pos_x * s) / scale + c + 0.5) * k - 0.5
    by = ((-c - pos_y * s) / scale + c + 0.5) * k - 0.5
    zero = ops.zeros_like(a)
    transforms = ops.stack([a, zero, bx, zero, a, by, zero, zero], axis=1)  # (B, 8)
    return ops.image.affine_transform(
        src,
        transforms,
        interpolation="bilinear",
        fill_mode="constant",
        fill_value=0,
        data_format="channels_last",
    )


def to_numpy(x) -> np.ndarray:
    from keras import ops  # noqa: PLC0415

    return np.asarray(ops.convert_to_numpy(x))


def resize_pyramid(base: np.ndarray, size: int, min_scale: float):
    """Resize the base renders to `size` once (area averaging = antialiased), plus coarser levels
    of size/2, size/4, ... (each padded top-left into a size x size canvas) for small scales.
    Returns (float32 numpy (L*N, S, S, 1), level size ratios [S_l / S]).

    numpy, so that it is the same on every backend, and bit-identical to what
    tf.image.resize(method="area") (downsampling) and tf.image.resize(method="bilinear",
    antialias=True) (upsampling, image_size > R) gave when this ran in TensorFlow:
    resize_weights reproduces their kernels' float32 weights and summation order."""
    n_levels = 1 + max(0, int(math.floor(-math.log2(min_scale)))) if min_scale < 1 else 1
    x = base.astype(np.float32) / np.float32(255.0)  # (N, R, R, 1)
    levels, ratios = [], []
    for lvl in range(n_levels):
        s_l = max(1, int(round(size / 2**lvl)))
        img = x
        if s_l != base.shape[1]:
            starts, weights, post = resize_weights(base.shape[1], s_l)
            # the axis order TF's kernels sum in: ResizeArea (down) within each row first,
            # ScaleAndTranslate (up) along the columns first; float32 sums are order-dependent
            first, second = (2, 1) if s_l < base.shape[1] else (1, 2)
            img = gather_sum(x, starts, weights, axis=first)
            img = gather_sum(img, starts, weights, axis=second)
            img = img * post if post != 1 else img  # (N, s_l, s_l, 1)
        levels.append(np.pad(img, [(0, 0), (0, size - s_l), (0, size - s_l), (0, 0)]))
        ratios.append(s_l / size)
    return np.concatenate(levels, 0), ratios


def resize_weights(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.float32]:
    """One axis of a TF resize, in its float32 arithmetic: (starts int (n_out,), weights float32
    (n_out, span), post float32): output o = post * sum_j weights[o, j] * input[starts[o] + j],
    summed in order j = 0, 1, ... (zero weights past a pixel's span).

    Downsampling: TF's ResizeArea kernel (align_corners=False): output o averages the input
    interval [o * r, (o + 1) * r), r = n_in / n_out, partial pixels weighted by their overlap,
    post = 1 / r². Upsampling: TF's ScaleAndTranslate with the triangle kernel (what
    bilinear + antialias runs; at upsampling the kernel keeps width 1): half-pixel centres,
    sample point (o + 0.5) / scale, weights normalised over the pixels inside the image."""
    f32 = np.float32
    rows = []
    if n_out <= n_in:
        r = f32(n_in / n_out)
        for o in range(n_out):
            x0, x1 = f32(o * r), f32((o + 1) * r)
            w = []
            for v in range(math.floor(x0), math.ceil(x1)):
                if v < x0:
                    w.append(min(f32(v + 1 - x0), f32(x1 - x0)))
                elif v + 1 > x1:
                    w.append(f32(x1 - v))
                else:
                    w.append(f32(1.0))
            rows.append((math.floor(x0), w))
        post = f32(1.0 / float(r * r))  # C++: 1.0 / (float * float), in double, to float
    else:
        inv = f32(1.0 / float(f32(n_out) / f32(n_in)))  # kernel scale max(inv, 1) = 1
        for o in range(n_out):
            sample = f32(o + 0.5) * inv
            if sample < 0 or sample > n_in:
                rows.append((0, []))
                continue
            lo = min(max(math.ceil(sample - f32(1.5)), 0), n_in - 1)
            hi = min(max(math.floor(sample + f32(0.5)), 0), n_in - 1) + 1
            w = [max(f32(0.0), f32(1.0) - abs(f32(v) + f32(0.5) - sample)) for v in range(lo, hi)]
            total = f32(0.0)
            for v in w:
                total = f32(total + v)
            if abs(total) >= 1000.0 * np.finfo(np.float32).tiny:
                w = [f32(v / total) for v in w]
            rows.append((lo, w))
        post = f32(1.0)
    span = max(1, max(len(w) for _, w in rows))
    weights = np.zeros((n_out, span), np.float32)
    for o, (_, w) in enumerate(rows):
        weights[o, : len(w)] = w
    return np.array([s for s, _ in rows]), weights, post


def gather_sum(x: np.ndarray, starts, weights, axis: int) -> np.ndarray:
    """sum_j weights[:, j] * x[starts + j] along `axis`, accumulated in order j = 0, 1, ...
    in float32 (the order TF's kernels add in); indices past the edge carry weight 0."""
    n = x.shape[axis]
    shape = [1] * x.ndim
    shape[axis] = len(starts)
    out = None
    for j in range(weights.shape[1]):
        idx = np.minimum(starts + j, n - 1)
        term = np.take(x, idx, axis=axis) * weights[:, j].reshape(shape)
        out = term if out is None else out + term
    return out
