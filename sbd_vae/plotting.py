"""The one plotting convention: matplotlib's object API (``matplotlib.figure.Figure`` with the
Agg canvas), never pyplot.

No global backend switch (a notebook keeps its own), no figure registry to leak, nothing to
close. A figure made here renders itself as a PNG in Jupyter (``display(fig)``, or as a cell's
value) whether or not pyplot was ever imported, and ``save`` writes it atomically
(``rundir.atomic_path``). Used by figures.py (latent space), trainviz.py (training curves) and
the dataset's sample sheet.
"""

from __future__ import annotations

import functools
import io
from pathlib import Path

from . import rundir


@functools.cache
def _figure_class():
    """matplotlib's Figure plus ``_repr_png_`` (built on first use: matplotlib is imported then)."""
    from matplotlib.figure import Figure

    class PngFigure(Figure):
        def _repr_png_(self) -> bytes:  # IPython's display hook: no pyplot, no inline backend
            buf = io.BytesIO()
            self.savefig(buf, format="png", bbox_inches="tight")
            return buf.getvalue()

    return PngFigure


def figure(width: float, height: float, dpi: int = 100):
    """A new Figure of ``width`` × ``height`` inches; the Agg canvas is attached by ``savefig``."""
    return _figure_class()(figsize=(width, height), dpi=dpi)


def save(fig, out, dpi: int = 100) -> Path:
    """Writes ``fig`` as a PNG to ``out`` (temporary name, fsync, rename); returns the path."""
    out = Path(out)
    with rundir.atomic_path(out, suffix=out.suffix or ".png") as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return out
