"""Figures of a trained β-VAE's latent space (the batched encode/decode they use is encoding.py).

latentSpace.py re-exports the plot_* functions and traversal_gif; this module holds the
array-in, PNG-out parts.

- ``plot_traversals`` / ``traversal_gif``: one row per latent, sorted by KL, each row decoding
  z with one coordinate swept (Higgins et al. 2017, Fig. 1; Burgess et al. 2018, Fig. 3).
- ``plot_reconstructions``: inputs above their reconstructions from the posterior mean.
- ``plot_factor_response``: each latent's mean encoding against each ground-truth factor, with
  the other factors held at random bases (which latent carries which factor).
- ``plot_latent_geometry``: a pos_x × pos_y grid mapped into the two latents that carry
  position (Watters et al. 2019, "Spatial Broadcast Decoder", arXiv:1901.07017, Fig. 3).
- ``plot_kl_per_latent``: KL(q(z_d|x) ‖ N(0, 1)) per latent and the number of active units.
- ``plot_vs_beta``: a sweep's scores against β (mean ± sample std over seeds), β_norm on top.

Plots follow plotting.py: ``matplotlib.figure.Figure`` with the Agg canvas, never pyplot, every
file written to a temporary name and renamed.
"""

from __future__ import annotations

from pathlib import Path
from statistics import NormalDist

import numpy as np

from . import datasets, imaging, plotting
from .encoding import ACTIVE_VAR, as_images, decode, encode, kl_per_latent, unit_activity
from .significance import by_objective, values_by_beta

# Active units follow encoding.ACTIVE_VAR (Burda et al. 2016): Var_x(E_q(z|x)[z_d]) > 0.01.
# Factors whose grid wraps around are the sampler's ``circular_factors`` (the shapes' azimuth:
# 0° and 360° − step are neighbours; dSprites' orientation). The metrics treat every factor as
# categorical (disentanglement_lib), so wrapping changes no score; plots say it. CIRCULAR_FACTORS
# is what a sampler that does not declare them is taken to have (datasets.circular_factors).
CIRCULAR_FACTORS = ("azimuth",)
_COLORS = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
]  # fmt: skip


def latent_color(d: int) -> str:
    """A fixed colour per latent index (tab10, then cycling), so plots of one run agree."""
    return _COLORS[d % len(_COLORS)]


# ----------------------------------------------------------------------------- figure plumbing
_figure = plotting.figure


def _save(fig, out) -> Path:
    """``plotting.save`` at 100 dpi, then the figure is cleared (its artists freed)."""
    out = plotting.save(fig, out, dpi=100)
    fig.clear()
    return out


def _kl_text(v: float) -> str:
    return f"{v:.2f}" if v >= 0.1 else f"{v:.3f}"


def _active_mask(activity, threshold: float, d: int) -> np.ndarray:
    """(D,) bool: latents whose ``activity`` (``encoding.unit_activity``: the variance over images
    of the posterior mean) exceeds ``threshold``; all True when ``activity`` is None (unknown)."""
    if activity is None:
        return np.ones(d, bool)
    return np.asarray(activity, np.float64).reshape(d) > threshold


# ----------------------------------------------------------------------------- traversals
def traversal_images(
    model, image, k=2.5, n_steps=9, kl=None, prior_quantiles=False, sigma=1.0, quantile=0.05,
    activity=None,
) -> dict:  # fmt: skip
    """Decoded latent traversals of one image; the data behind ``plot_traversals``/``traversal_gif``.

    Every latent d is swept while the others stay at the image's posterior mean μ:
    - default: z_d ∈ μ_d + linspace(−k, k, n_steps) · σ_d, with σ the prior's standard deviation
      (``sigma=1.0``) or any per-latent scale (for example the data's spread of μ_d);
    - ``prior_quantiles=True``: z_d ∈ Φ⁻¹(linspace(quantile, 1 − quantile, n_steps)), the prior's
      quantiles, independent of the image (Burgess et al. 2018).
    Rows are sorted by ``kl`` (D,), descending; without it, by the image's own KL per latent.
    ``activity`` (D,): ``encoding.unit_activity`` over evaluation images; inactive latents
    (activity ≤ ACTIVE_VAR, Burda et al. 2016) get grey labels. None: no latent is greyed.

    Returns dict(images (D, n_steps, S, S, 1), order (D,) latent index per row, kl (D,),
    values (D, n_steps) the z_d of each tile, columns [str], kl_source str, mean (D,)).
    """
    x = as_images(image, model.image_size)[:1]  # (1, S, S, 1)
    mean, logvar = encode(model, x)
    mean, logvar = mean[0], logvar[0]  # (D,)
    d = model.latent_dim
    if kl is None:
        kl, kl_source = kl_per_latent(mean, logvar), "KL of this image"
    else:
        kl, kl_source = np.asarray(kl, np.float64).reshape(d), "mean KL"
    order = np.argsort(-kl, kind="stable")  # most informative latent first
    if prior_quantiles:
        qs = np.linspace(quantile, 1.0 - quantile, n_steps)
        grid_vals = np.array([NormalDist().inv_cdf(q) for q in qs])  # (n,)
        values = np.tile(grid_vals, (d, 1))  # (D, n)
        columns = [f"{v:+.2f}" for v in grid_vals]
    else:
        offsets = np.linspace(-k, k, n_steps)  # (n,)
        sig = np.broadcast_to(np.asarray(sigma, np.float64), (d,))
        values = mean[:, None] + sig[:, None] * offsets[None, :]  # (D, n)
        columns = ["μ" if abs(o) < 1e-9 else f"μ{o:+.2g}σ" for o in offsets]
    z = np.tile(mean, (d, n_steps, 1))  # (D rows, n, D)
    for r, lat in enumerate(order):
        z[r, :, lat] = values[lat]
    decoded = decode(model, z.reshape(-1, d)).reshape(d, n_steps, *x.shape[1:])
    return dict(
        images=decoded, order=order, kl=kl, values=values[order], columns=columns,
        kl_source=kl_source, mean=mean, input=x[0],
        activity=None if activity is None else np.asarray(activity, np.float64).reshape(d),
    )  # fmt: skip


def _grey_note(activity, threshold) -> str:
    if activity is None:
        return "active units not computed (pass activity=unit_activity(means))"
    return f"grey: inactive (Var_x μ_d ≤ {threshold:g}, Burda et al. 2016)"


def _traversal_png(tr: dict, out, title=None, threshold=ACTIVE_VAR) -> Path:
    tiles = tr["images"]  # (D, n, S, S, 1)
    d, n = tiles.shape[:2]
    # column 0: the input image (top row only), then the traversal
    first = np.ones((d, 1, *tiles.shape[2:]), np.float32)
    first[0] = tr["input"]
    grid_img = imaging.grid(np.concatenate([first, tiles], axis=1), pad=2, min_tile=64)
    h, w = grid_img.shape
    fw, fh = w / 100 + 1.9, h / 100 + 0.65  # inches: labels left, 2 title lines on top
    fig = _figure(fw, fh)
    ax = fig.add_axes([1.7 / fw, 0.2 / fh, w / 100 / fw, h / 100 / fh])
    ax.imshow(grid_img, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    tile_h, tile_w = (h - 2) / d, (w - 2) / (n + 1)
    ax.set_yticks([2 + tile_h * (r + 0.5) for r in range(d)])
    active = _active_mask(tr.get("activity"), threshold, d)
    ax.set_yticklabels([f"z{lat}  KL {_kl_text(tr['kl'][lat])}" for lat in tr["order"]], fontsize=8)
    for label, lat in zip(ax.get_yticklabels(), tr["order"]):
        label.set_color("black" if active[lat] else "0.6")
    ax.set_xticks([2 + tile_w * (c + 0.5) for c in range(n + 1)])
    ax.set_xticklabels(["input"] + tr["columns"], fontsize=7)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    sub = f"rows sorted by {tr['kl_source']} (nats); {_grey_note(tr.get('activity'), threshold)}"
    fig.suptitle(f"{title}\n{sub}" if title else sub, fontsize=9, y=0.995, va="top")
    return _save(fig, out)


def plot_traversals(
    model, image, out, k=2.5, n_steps=9, kl=None, prior_quantiles=False, sigma=1.0,
    threshold=ACTIVE_VAR, title=None, traversal=None, activity=None,
) -> Path:  # fmt: skip
    """Latent-traversal grid (the seed's visbeta*.png; Higgins et al. 2017, Burgess et al. 2018).

    One row per latent, sorted by KL (descending) and labelled with it in nats; columns sweep that
    latent over μ ± kσ around ``image``'s encoding (or the prior's quantiles, see
    ``traversal_images``); the first column shows the input. Inactive latents (``activity`` ≤
    ``threshold``, Burda et al. 2016) have grey labels: their rows should not change. Writes a PNG atomically and returns its path.
    ``traversal``: a ``traversal_images`` result to draw instead of decoding again.
    """
    tr = traversal or traversal_images(
        model, image, k, n_steps, kl, prior_quantiles, sigma, activity=activity
    )
    return _traversal_png(tr, out, title, threshold)


def _font(size: int):
    """DejaVu Sans (shipped with matplotlib: has μ, σ, β) for text drawn into GIF frames."""
    from matplotlib import font_manager
    from PIL import ImageFont

    try:
        return ImageFont.truetype(font_manager.findfont("DejaVu Sans"), size)
    except OSError:
        return ImageFont.load_default()


def _traversal_frames(tr: dict, threshold=ACTIVE_VAR, title=None) -> list[np.ndarray]:
    from PIL import Image, ImageDraw

    tiles = tr["images"]  # (D, n, S, S, 1)
    d, n = tiles.shape[:2]
    active = _active_mask(tr.get("activity"), threshold, d)
    small, big = _font(10), _font(12)
    frames = []
    steps = list(range(n)) + list(range(n - 2, 0, -1))  # ping-pong, so the loop is seamless
    for c in steps:
        strip = imaging.grid(tiles[None, :, c], pad=2, min_tile=64)  # (H, D·W): one tile per latent
        band = Image.new("L", (strip.shape[1], 34), 255)
        draw = ImageDraw.Draw(band)
        head = f"{title}   " if title else ""
        draw.text((4, 1), f"{head}step {c + 1}/{n}: {tr['columns'][c]}", fill=0, font=big)
        tile_w = (strip.shape[1] - 2) / d
        for r, lat in enumerate(tr["order"]):
            draw.text((4 + r * tile_w, 19), f"z{lat} KL {_kl_text(tr['kl'][lat])}",
                      fill=0 if active[lat] else 150, font=small)  # fmt: skip
        frame = np.concatenate([np.asarray(band), strip], axis=0)  # (H', W) uint8
        # RGB frames: greyscale GIFs whose frames get different local palettes are read back by
        # Pillow 13 as a mix of L and RGB frames, which imageio.mimread cannot stack
        frames.append(np.repeat(frame[..., None], 3, axis=-1))
    return frames


def traversal_gif(
    model, image, out, k=2.5, n_steps=9, kl=None, prior_quantiles=False, sigma=1.0,
    threshold=ACTIVE_VAR, title=None, fps=6.0, traversal=None, activity=None,
) -> Path:  # fmt: skip
    """Animated traversal: one tile per latent (sorted by KL), every frame moves all of them one
    step along their sweep, forth and back. Same arguments as ``plot_traversals``; GIF, atomic."""
    tr = traversal or traversal_images(
        model, image, k, n_steps, kl, prior_quantiles, sigma, activity=activity
    )
    return imaging.save_gif(out, _traversal_frames(tr, threshold, title), fps=fps)


# ----------------------------------------------------------------------------- reconstructions
def plot_reconstructions(model, images, out, title=None) -> Path:
    """Inputs (top row) above their reconstructions decode(E[q(z|x)]) (bottom row); PNG."""
    x = as_images(images, model.image_size)  # (N, S, S, 1)
    mean, _ = encode(model, x)
    recon = decode(model, mean)  # (N, S, S, 1)
    grid_img = imaging.grid(np.stack([x, recon]), pad=2, min_tile=64)
    h, w = grid_img.shape
    fig = _figure(w / 100 + 1.2, h / 100 + 0.6)
    ax = fig.add_axes([1.1 / (w / 100 + 1.2), 0.05, w / 100 / (w / 100 + 1.2),
                       h / 100 / (h / 100 + 0.6)])  # fmt: skip
    ax.imshow(grid_img, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([h / 4, 3 * h / 4])
    ax.set_yticklabels(["input", "reconstruction"], fontsize=9)
    ax.tick_params(length=0)
    mse = float(np.mean((x - recon) ** 2))
    fig.suptitle(f"{title + ': ' if title else ''}mean squared pixel error {mse:.4f}", fontsize=9)
    return _save(fig, out)


# ----------------------------------------------------------------------------- factor response
def factor_sweep_factors(sampler, n_bases: int, rng) -> tuple[np.ndarray, list[slice]]:
    """Factors (Σ_k n_bases·n_k, K) that sweep each factor k over its whole grid with the other
    factors held at ``n_bases`` random bases; plus one slice per factor into the rows.

    Rows of factor k, reshaped to (n_bases, n_k, K), hold base b with factor k at index i.
    """
    bases = sampler.sample_factors(n_bases, rng)  # (B, K): the same bases for every factor
    blocks, slices, start = [], [], 0
    for k, n_k in enumerate(sampler.factor_sizes):
        f = np.repeat(bases, n_k, axis=0)  # (B·n_k, K)
        f[:, k] = np.tile(np.arange(n_k), n_bases)
        blocks.append(f)
        slices.append(slice(start, start + len(f)))
        start += len(f)
    return np.concatenate(blocks).astype(np.int64), slices


def _factor_axis(sampler, k: int):
    """(x values (n_k,), tick labels or None) for factor k: physical values, or category names."""
    n_k = sampler.factor_sizes[k]
    name = sampler.factor_names[k]
    values = getattr(sampler, "values", {}).get(name) if hasattr(sampler, "values") else None
    if values is not None and np.asarray(values).dtype.kind in "USO":
        return np.arange(n_k, dtype=float), [str(v) for v in values]
    probe = np.zeros((n_k, len(sampler.factor_sizes)), np.int64)
    probe[:, k] = np.arange(n_k)
    try:
        return np.asarray(sampler.factor_values(probe), float)[:, k], None
    except (AttributeError, NotImplementedError):
        return np.arange(n_k, dtype=float), None


def factor_response(model, sampler, n_bases=16, rng=None, batch=256, progress=False) -> dict:
    """Mean and spread (over bases) of every latent's posterior mean as each factor is swept.

    Returns dict(mean [K × (n_k, D)], std [K × (n_k, D)], x [K × (n_k,)], ticks [K × labels|None],
    kl (D,) mean KL over all swept images, response (K, D) the variance over the grid of each
    latent's mean curve, names [K], n_bases, circular [the sampler's circular factors]). All images are encoded in one batched pass.
    """
    rng = np.random.RandomState(0) if rng is None else rng
    factors, slices = factor_sweep_factors(sampler, n_bases, rng)
    images = sampler.images_from_factors(factors)  # (Σ, S, S, 1)
    mean, logvar = encode(model, images, batch, progress=progress)  # (Σ, D) each
    out = dict(mean=[], std=[], x=[], ticks=[], names=list(sampler.factor_names), n_bases=n_bases,
               circular=list(datasets.circular_factors(sampler)))  # fmt: skip
    out["kl"] = kl_per_latent(mean, logvar).mean(axis=0)  # (D,)
    out["activity"] = unit_activity(mean)  # (D,) over every swept image
    response = []
    for k, sl in enumerate(slices):
        m = mean[sl].reshape(n_bases, sampler.factor_sizes[k], -1)  # (B, n_k, D)
        mu, sd = m.mean(axis=0), m.std(axis=0)  # (n_k, D)
        x, ticks = _factor_axis(sampler, k)
        out["mean"].append(mu)
        out["std"].append(sd)
        out["x"].append(x)
        out["ticks"].append(ticks)
        response.append(mu.var(axis=0))  # (D,): how far the mean code moves along factor k
    out["response"] = np.array(response)  # (K, D)
    return out


def plot_factor_response(
    model, sampler, out, n_bases=16, rng=None, kl=None, threshold=ACTIVE_VAR, title=None,
    batch=256, progress=False, activity=None,
) -> Path:  # fmt: skip
    """Factor-response plot (the seed's valbeta*.png): which latent carries which factor.

    For every ground-truth factor k, the factor is swept over its grid with the others held at
    ``n_bases`` random bases; one subplot per factor shows each latent's posterior mean against
    the factor's value, averaged over the bases (line) ± one standard deviation (band). Active
    latents (KL > ``threshold``, from ``kl`` or from these encodings) are coloured and thick,
    inactive ones thin and grey; the subplot title names the latent that moves most. Categorical
    factors (shape) put the category names on the x axis. Circular factors (the sampler's
    ``circular_factors``, e.g. azimuth or orientation: the first and last grid values are
    neighbours) are drawn on a linear axis and say so in their title.
    Active latents: ``activity`` (D,) > ``threshold`` (Burda et al. 2016); without ``activity``,
    the variance of the posterior means over this plot's own encodings. Writes a PNG atomically.
    """
    fr = factor_response(model, sampler, n_bases, rng, batch, progress)
    kl = fr["kl"] if kl is None else np.asarray(kl, np.float64)
    if activity is None:
        activity = fr["activity"]
    active = _active_mask(activity, threshold, len(kl))
    n_f = len(fr["names"])
    cols = min(3, n_f)
    rows = -(-n_f // cols)
    fig = _figure(4.2 * cols, 3.2 * rows + 1.0)
    axes = fig.subplots(rows, cols, squeeze=False)
    handles = {}
    for k, name in enumerate(fr["names"]):
        ax = axes.flat[k]
        x, mu, sd, ticks = fr["x"][k], fr["mean"][k], fr["std"][k], fr["ticks"][k]
        categorical = ticks is not None
        for d in np.argsort(active):  # inactive first, so active curves are drawn on top
            if active[d]:
                style = dict(color=latent_color(d), lw=2.0, marker="o", ms=3, zorder=3)
                ax.fill_between(x, mu[:, d] - sd[:, d], mu[:, d] + sd[:, d],
                                color=latent_color(d), alpha=0.12, lw=0)  # fmt: skip
                label = f"z{d} (KL {_kl_text(kl[d])})"
            else:
                style = dict(color="0.7", lw=0.8, ls="--", zorder=1)
                label = f"inactive (Var_x μ_d ≤ {threshold:g})"
            if categorical:
                style.update(ls="none" if active[d] else ":", marker="o", ms=4 if active[d] else 2)
            h = ax.plot(x, mu[:, d], **style)[0]
            handles.setdefault(label, h)
        resp = np.where(active, fr["response"][k], -1.0)
        top = int(np.argmax(resp)) if active.any() else None
        carrier = f" → z{top}" if top is not None else ""
        circ = " (circular: last wraps to first)" if name in fr["circular"] else ""
        ax.set_title(f"{name}{carrier}{circ}", fontsize=10)
        ax.set_xlabel(name + (" (index)" if categorical else ""), fontsize=8)
        ax.set_ylabel("posterior mean μ_d", fontsize=8)
        if categorical:
            ax.set_xticks(x)
            ax.set_xticklabels(ticks, rotation=30, fontsize=7)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[n_f:]:
        ax.set_visible(False)
    labels = sorted(handles, key=lambda s: (s.startswith("inactive"), len(s), s))
    fig.legend([handles[lab] for lab in labels], labels, loc="lower center",
               ncol=min(6, len(labels)), fontsize=8, frameon=False)  # fmt: skip
    head = f"{title}\n" if title else ""
    fig.suptitle(f"{head}each latent's mean encoding vs each factor (mean ± std over "
                 f"{fr['n_bases']} random bases of the other factors)", fontsize=10)  # fmt: skip
    fig.subplots_adjust(left=0.06, right=0.98, top=0.86 if title else 0.9, bottom=0.14,
                        hspace=0.55, wspace=0.3)  # fmt: skip
    return _save(fig, out)


# ----------------------------------------------------------------------------- latent geometry
def _corr(codes, target) -> np.ndarray:
    """Pearson r of every code column with ``target``; 0 for a constant column (no NaN)."""
    c = codes - codes.mean(axis=0)
    t = target - target.mean()
    denom = np.sqrt((c**2).sum(axis=0) * (t**2).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (c * t[:, None]).sum(axis=0) / denom
    return np.where(denom > 1e-12, r, 0.0)


def pick_position_latents(codes, pos_x, pos_y) -> tuple[int, int, float, float]:
    """The two *different* latents that carry position best: (d_x, d_y, r_x, r_y).

    Maximises, over ordered pairs dx ≠ dy,
        R²(x | z_dx, z_dy) + R²(y | z_dx, z_dy)  +  r(z_dx, x)² + r(z_dy, y)²
    (affine-fit R² and Pearson r): the first half finds the pair that spans position, so an
    entangled model whose position lives in a rotated pair of latents shows that pair (a rotated
    grid) rather than two weakly related latents; the second half prefers, among pairs that span
    it equally well, the axis-aligned one. r_x, r_y are the signed correlations (0 for a
    constant latent). codes (N, D) with D ≥ 2, pos_x and pos_y (N,).
    """
    codes = np.asarray(codes, np.float64)
    x, y = np.asarray(pos_x, np.float64), np.asarray(pos_y, np.float64)
    if codes.ndim != 2 or codes.shape[1] < 2 or len(codes) != len(x) or len(x) != len(y):
        raise ValueError(f"codes must be (N, D) with D ≥ 2 and N = len(pos_x) = len(pos_y), got "
                         f"{codes.shape}, {x.shape}, {y.shape}")  # fmt: skip
    rx, ry = _corr(codes, x), _corr(codes, y)  # (D,) each
    best, pick = -np.inf, (0, 1)
    d = codes.shape[1]
    for a in range(d):
        for b in range(a + 1, d):
            feats = codes[:, [a, b]]
            joint = _linear_r2(feats, x) + _linear_r2(feats, y)
            for dx, dy in ((a, b), (b, a)):
                score = joint + rx[dx] ** 2 + ry[dy] ** 2
                if score > best + 1e-12:
                    best, pick = score, (dx, dy)
    dx, dy = pick
    return int(dx), int(dy), float(rx[dx]), float(ry[dy])


def _linear_r2(features, target) -> float:
    """R² of the least-squares affine fit target ≈ features · w + b."""
    a = np.column_stack([features, np.ones(len(features))])
    w, *_ = np.linalg.lstsq(a, target, rcond=None)
    ss = ((target - target.mean()) ** 2).sum()
    return float(1.0 - ((target - a @ w) ** 2).sum() / ss) if ss > 0 else 0.0


def latent_geometry(model, sampler, n_bases=2, rng=None, batch=256) -> dict:
    """Encodes the full pos_x × pos_y grid at ``n_bases`` random settings of the other factors.

    Returns dict(codes (B, nx, ny, D), x (nx,), y (ny,), latents (dx, dy), corr (r_x, r_y) signed,
    r2 (R² of the affine fit of x and of y from (z_dx, z_dy)), bases (B, K)).
    """
    names = list(sampler.factor_names)
    missing = [n for n in ("pos_x", "pos_y") if n not in names]
    if missing:
        raise ValueError(f"the sampler has no factor {missing} (factors: {names})")
    kx, ky = names.index("pos_x"), names.index("pos_y")
    nx, ny = sampler.factor_sizes[kx], sampler.factor_sizes[ky]
    rng = np.random.RandomState(0) if rng is None else rng
    bases = sampler.sample_factors(n_bases, rng)  # (B, K)
    f = np.repeat(bases, nx * ny, axis=0)  # (B·nx·ny, K)
    gx, gy = np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij")  # (nx, ny) each
    f[:, kx] = np.tile(gx.ravel(), n_bases)
    f[:, ky] = np.tile(gy.ravel(), n_bases)
    mean, _ = encode(model, sampler.images_from_factors(f), batch)  # (B·nx·ny, D)
    x_axis, _ = _factor_axis(sampler, kx)
    y_axis, _ = _factor_axis(sampler, ky)
    xs, ys = x_axis[f[:, kx]], y_axis[f[:, ky]]
    dx, dy, rx, ry = pick_position_latents(mean, xs, ys)
    feats = mean[:, [dx, dy]]
    return dict(
        codes=mean.reshape(n_bases, nx, ny, -1), x=x_axis, y=y_axis, latents=(dx, dy),
        corr=(rx, ry), r2=(_linear_r2(feats, xs), _linear_r2(feats, ys)), bases=bases,
    )  # fmt: skip


def plot_latent_geometry(
    model, sampler, out, n_bases=2, rng=None, title=None, return_info=False, batch=256
):
    """Latent-space geometry of position (Watters et al. 2019, Fig. 3).

    A pos_x × pos_y grid of images (other factors fixed at ``n_bases`` random bases, one panel
    each) is encoded and drawn in the two different latents that carry position best
    (``pick_position_latents``); each latent's sign is flipped where needed so that pos_x grows
    to the right and pos_y downward, as in the ground-truth panel on the left. Lines join points
    of constant pos_x (blue) and of constant pos_y (orange): a disentangled model draws an
    undistorted, axis-aligned grid; an entangled one rotates, shears or folds it. The title gives
    the correlation of each latent with its factor (1 for an axis-aligned grid) and the R² of an
    affine fit of x and y from the two latents (1 for an undistorted one). PNG, atomic.
    Returns the path, or (path, info dict from ``latent_geometry``) with ``return_info``.
    """
    g = latent_geometry(model, sampler, n_bases, rng, batch)
    dx, dy = g["latents"]
    sx, sy = (1.0 if g["corr"][0] >= 0 else -1.0), (1.0 if g["corr"][1] >= 0 else -1.0)
    nb = g["codes"].shape[0]
    fig = _figure(3.6 * (nb + 1), 4.4)
    axes = fig.subplots(1, nb + 1, squeeze=False)[0]
    gx, gy = np.meshgrid(g["x"], g["y"], indexing="ij")  # (nx, ny)
    panels = [(gx, gy, "ground truth", "pos_x", "pos_y")]
    lx, ly = ("" if sx > 0 else "−") + f"z{dx}", ("" if sy > 0 else "−") + f"z{dy}"
    for b in range(nb):
        c = g["codes"][b]  # (nx, ny, D)
        panels.append((sx * c[..., dx], sy * c[..., dy], f"base {b + 1}", lx, ly))
    for ax, (u, v, name, xl, yl) in zip(axes, panels):
        for i in range(u.shape[0]):  # constant pos_x: vary y
            ax.plot(u[i], v[i], color="#1f77b4", lw=0.9, alpha=0.8)
        for j in range(u.shape[1]):  # constant pos_y: vary x
            ax.plot(u[:, j], v[:, j], color="#ff7f0e", lw=0.9, alpha=0.8)
        ax.scatter(u.ravel(), v.ravel(), s=4, color="k", zorder=3)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(xl, fontsize=8)
        ax.set_ylabel(yl + " (grows downward)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_aspect("equal", adjustable="datalim")
        ax.invert_yaxis()  # image rows grow downward: pos_y (and its latent) point down
    head = f"{title}\n" if title else ""
    fig.suptitle(
        f"{head}position latents z{dx} (x, r={g['corr'][0]:+.2f}) and z{dy} (y, r={g['corr'][1]:+.2f}); "
        f"affine fit R²: x {g['r2'][0]:.2f}, y {g['r2'][1]:.2f}\n"
        "blue: constant pos_x, orange: constant pos_y; disentangled = undistorted axis-aligned grid",
        fontsize=9,
    )
    fig.subplots_adjust(
        left=0.07, right=0.98, top=0.76 if title else 0.82, bottom=0.12, wspace=0.35
    )
    path = _save(fig, out)
    return (path, g) if return_info else path


# ----------------------------------------------------------------------------- KL per latent
def plot_kl_per_latent(kl, out, threshold=ACTIVE_VAR, title=None, activity=None) -> Path:
    """Bar chart of the mean KL(q(z_d|x) ‖ N(0, 1)) of every latent (nats, log scale); active
    latents (``activity`` > ``threshold``, Burda et al. 2016) coloured, inactive ones grey, and
    their number in the title. ``kl`` (D,): from history.csv's last row or from encodings of
    samples; ``activity`` (D,): ``encoding.unit_activity`` of the same encodings. PNG."""
    kl = np.asarray(kl, np.float64).ravel()
    active = _active_mask(activity, threshold, len(kl))
    fig = _figure(max(4.0, 0.45 * len(kl) + 1.5), 3.2)
    ax = fig.add_subplot(1, 1, 1)
    floor = min(1e-3, max(kl.min(), 1e-6)) if len(kl) else 1e-3
    shown = np.maximum(kl, floor)
    colors = [latent_color(d) if a else "0.75" for d, a in enumerate(active)]
    ax.bar(np.arange(len(kl)), shown, color=colors, bottom=0)
    ax.set_yscale("log")
    ax.set_ylim(floor / 2, max(shown.max() * 3, 0.1) if len(kl) else 1)
    for d, v in enumerate(kl):
        ax.text(d, shown[d] * 1.15, f"{v:.2g}", ha="center", fontsize=7)
    ax.set_xticks(np.arange(len(kl)))
    ax.set_xticklabels([f"z{d}" for d in range(len(kl))], fontsize=8)
    ax.set_ylabel("KL (nats)", fontsize=8)
    head = f"{title}: " if title else ""
    count = (
        f"{int(active.sum())} of {len(kl)} active units (Var_x μ_d > {threshold:g})"
        if activity is not None
        else f"{len(kl)} latents (active units not computed)"
    )
    ax.set_title(f"{head}{count}", fontsize=9)
    fig.tight_layout()
    return _save(fig, out)


# ----------------------------------------------------------------------------- sweeps
def seed_std(values) -> float:
    """Sample standard deviation (ddof=1) of the finite ``values``, the spread over seeds that
    papers report; 0 for a single seed, NaN for none."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    return float(v.std(ddof=1)) if len(v) > 1 else (0.0 if len(v) else float("nan"))


def _by_beta(records, key) -> tuple[np.ndarray, np.ndarray, np.ndarray, list]:
    """(betas, mean, sample std, per-β values) of ``key`` over seeds, NaNs ignored."""
    by_beta = values_by_beta(records, key)
    betas, vals = list(by_beta), list(by_beta.values())
    mean = np.array([np.nanmean(v) if np.isfinite(v).any() else np.nan for v in vals])
    std = np.array([seed_std(v) for v in vals])
    return np.array(betas, float), mean, std, vals


def _beta_axis(ax, betas, norm_factor):
    """log-x (symlog if β=0 is present) ticked at the sweep's β values, and β_norm = β·M/N on a
    secondary top axis ticked at the same points."""
    from matplotlib.ticker import NullFormatter, NullLocator

    if len(betas) and betas.min() <= 0:
        pos = betas[betas > 0]
        ax.set_xscale("symlog", linthresh=float(pos.min()) if len(pos) else 1.0)
    else:
        ax.set_xscale("log")
    ax.set_xticks(betas)
    ax.set_xticklabels([f"{b:g}" for b in betas])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("β", fontsize=8)
    if norm_factor and np.isfinite(norm_factor):
        top = ax.secondary_xaxis(
            "top", functions=(lambda b: b * norm_factor, lambda n: n / norm_factor)
        )
        top.set_xticks(betas * norm_factor)
        top.set_xticklabels([f"{b * norm_factor:.2g}" for b in betas])
        top.xaxis.set_minor_locator(NullLocator())
        top.tick_params(labelsize=6)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)


def plot_vs_beta(records, keys, out, title, ylabels=None) -> Path:
    """One subplot per key: mean ± sample std (ddof=1) over seeds against β (log-x), single
    seeds as grey dots, β_norm = β·M/N on the top axis. ``records``: dicts with "beta", "beta_norm" and the keys
    (latentSpace.score_table's rows), and "objective": records of several objectives get one line
    each (``significance.by_objective``), with a legend. PNG, atomic."""
    cols = min(4, len(keys)) or 1
    rows = -(-len(keys) // cols) or 1
    fig = _figure(max(3.3 * cols, 8.0), 2.9 * rows + 0.8)
    axes = fig.subplots(rows, cols, squeeze=False)
    norms = [
        r["beta_norm"] / r["beta"] for r in records if r["beta"] > 0 and np.isfinite(r["beta_norm"])
    ]
    norm_factor = float(np.median(norms)) if norms else None
    groups = by_objective(records)
    several = len(groups) > 1
    for ax, key in zip(axes.flat, keys):
        all_betas, all_vals = [], []
        for i, (objective, recs) in enumerate(groups.items()):
            betas, mean, std, vals = _by_beta(recs, key)
            for b, v in zip(betas, vals):
                ax.scatter(np.full(len(v), b), v, s=8, color="0.6", zorder=2)
            ax.errorbar(betas, mean, yerr=std, color=f"C{i}" if several else "#1f77b4", marker="o",
                        ms=4, capsize=3, zorder=3, label=objective if several else None)  # fmt: skip
            all_betas, all_vals = [*all_betas, *betas], [*all_vals, *vals]
        betas, vals = np.array(sorted(set(all_betas)), float), all_vals
        finite = np.concatenate(vals)[np.isfinite(np.concatenate(vals))] if vals else []
        if len(finite) and finite.min() >= 0 and finite.max() <= 1:
            ax.set_ylim(-0.03, 1.03)  # a score in [0, 1]: the full range, so gaps are not inflated
        ax.set_title((ylabels or {}).get(key, key), fontsize=9, pad=14)
        if "active" in key:  # counts of units or dims
            from matplotlib.ticker import MaxNLocator

            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        _beta_axis(ax, betas, norm_factor)
    for ax in list(axes.flat)[len(keys) :]:
        ax.set_visible(False)
    if several:
        axes.flat[0].legend(fontsize=7, title="objective", title_fontsize=7)
    lines = "one line per objective; " if several else ""
    fig.suptitle(f"{title}\n{lines}mean ± sample std over seeds (grey: single seeds); top axis: "
                 "β_norm = β·M/N", fontsize=9)  # fmt: skip
    fig.tight_layout()
    return _save(fig, out)


__all__ = [
    "CIRCULAR_FACTORS", "factor_response", "factor_sweep_factors", "latent_color", "latent_geometry",
    "pick_position_latents", "plot_factor_response", "plot_kl_per_latent", "plot_latent_geometry",
    "plot_reconstructions", "plot_traversals", "plot_vs_beta", "seed_std", "traversal_gif",
    "traversal_images",
]  # fmt: skip
