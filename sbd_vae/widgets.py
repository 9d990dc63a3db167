"""Small ipywidgets helpers shared by the notebooks' interactive parts: a run dropdown over a
sweep (latent explorer, training browser) and numpy images as PNG bytes for ``widgets.Image``.

ipywidgets and PIL are imported inside the functions: nothing is imported, and nothing runs,
when this module is imported.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from . import rundir

# Images are shown at least this many pixels wide, upscaled by an integer factor with
# nearest-neighbour (a 32² image as 256², a 128² one as 256²): browsers smooth a small image
# that CSS stretches, which hides the pixels the decoder drew.
DISPLAY_PX = 256


def png_bytes(image, px: int = DISPLAY_PX) -> bytes:
    """(S, S, 1) or (S, S) floats in [0, 1] → PNG bytes of a grey image, upscaled by the integer
    factor that makes it at least ``px`` wide. PNG compression level 1: the explorer encodes one
    per slider move, and level 1 is ~5× faster than the default for a few % more bytes."""
    from PIL import Image

    x = np.asarray(image, np.float32).reshape(np.shape(image)[0], np.shape(image)[1])  # (S, S)
    k = max(1, -(-int(px) // x.shape[1]))  # ceil(px / S)
    grey = (np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    grey = np.repeat(np.repeat(grey, k, axis=0), k, axis=1)  # (kS, kS)
    buf = io.BytesIO()
    Image.fromarray(grey, mode="L").save(buf, format="png", compress_level=1)
    return buf.getvalue()


def sweep_choices(sweep_dir, finished: bool = True) -> list[tuple[str, Path]]:
    """(label, run_dir) of every run of ``<sweep_dir>/sweep.json``, sorted by β then seed: the runs
    with a model.keras (``finished=True``: what the latent explorer can load) or with a
    history.csv (``finished=False``: what the training browser can draw). Label: "β=4 · seed 0".
    ValueError naming the sweep and the command that fills it when none qualifies."""
    sweep_dir = Path(sweep_dir)
    index = rundir.read_json(sweep_dir / "sweep.json", "sweep index", "run training.py sweep")
    need = "model.keras" if finished else "history.csv"
    runs = sorted(index["runs"], key=lambda r: (float(r["beta"]), int(r.get("seed", 0))))
    out = [(f"β={float(r['beta']):g} · seed {r.get('seed', 0)} · {r['name']}", sweep_dir / r["name"])
           for r in runs if (sweep_dir / r["name"] / need).exists()]  # fmt: skip
    if not out:
        raise ValueError(
            f"{sweep_dir}: no run of sweep.json has a {need} yet; train them with "
            f"`python training.py sweep ... --out {sweep_dir}` (the command of sweep.json)"
        )
    return out


def run_dropdown(choices, value=None, description: str = "run"):
    """A ``widgets.Dropdown`` over ``choices`` [(label, run_dir)]; its value is the run_dir (a
    Path). ``value``: the run shown first (a path among the choices; the first one by default).
    ValueError naming ``value`` and the choices when it is not one of them."""
    import ipywidgets as w

    paths = [Path(p) for _, p in choices]
    first = Path(value) if value is not None else paths[0]
    if first not in paths:
        raise ValueError(
            f"run {value} is not among the choices: {', '.join(str(p) for p in paths)}; pass one "
            "of them (or the sweep the run belongs to)"
        )
    return w.Dropdown(options=[(label, Path(p)) for label, p in choices], value=first,
                      description=description, layout=w.Layout(width="460px"))  # fmt: skip
