"""Watching training: curves from history.csv, per-latent KL over steps, latest frame, sweep overlays.

Used by vae_viz.ipynb (``browse``: a dropdown over a sweep's runs, ipywidgets). Reads only the
run-directory files (history.csv, frames/, training.gif, sweep.json), so it can attach to a run
that another process is still writing: history.csv and the frames are replaced atomically, never
seen half-written. Plots follow plotting.py (matplotlib's object API, no pyplot): each function
returns its Figure, which a notebook displays.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from . import plotting, rundir

REPO = Path(__file__).resolve().parents[1]  # the repository root, where training.py lives


def start_run(out, preset="demo", beta=4.0, seed=0, extra=(), log=None) -> subprocess.Popen:
    """Starts ``training.py train`` in a background process (resuming if ``out`` has a checkpoint).

    Its output goes to ``<out>.log`` (or ``log``); returns the Popen so the notebook can poll it.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    log = Path(log or f"{out}.log")
    cmd = [sys.executable, str(REPO / "training.py"), "train", "--preset", preset,
           "--beta", str(beta), "--seed", str(seed), "--out", str(out), "--quiet", *extra]  # fmt: skip
    return subprocess.Popen(cmd, cwd=REPO, stdout=open(log, "w"), stderr=subprocess.STDOUT)


def sweep_runs(sweep_dir) -> list[tuple[float, Path]]:
    """(β, run_dir) for every run listed in ``sweep.json`` that has started logging."""
    index = rundir.read_json(Path(sweep_dir) / "sweep.json", "sweep index", "run training.py sweep")
    runs = [(r["beta"], Path(sweep_dir) / r["name"]) for r in index["runs"]]
    return [(b, p) for b, p in sorted(runs) if (p / "history.csv").exists()]


def plot_curves(run_dirs, labels=None, out=None):
    """Loss, reconstruction and KL against step; several runs share the axes (colour = run).

    ``run_dirs``: one path or a list; ``labels``: legend entries (default: β from config.json).
    Returns the matplotlib Figure (and writes a PNG if ``out`` is given).
    """
    from matplotlib import colormaps

    run_dirs = [run_dirs] if isinstance(run_dirs, str | Path) else list(run_dirs)
    labels = labels or [f"β={_beta(p):g}" for p in run_dirs]
    colours = colormaps["viridis"](np.linspace(0, 0.9, max(len(run_dirs), 1)))
    fig = plotting.figure(13, 3.4)
    axes = fig.subplots(1, 3)
    for path, label, colour in zip(run_dirs, labels, colours):
        rows = rundir.read_history(path)
        if not rows:
            continue
        steps = [r["step"] for r in rows]
        for ax, key in zip(axes, ("loss", "recon", "kl")):
            ax.plot(steps, [r[key] for r in rows], color=colour, label=label)
    for ax, title in zip(axes, ("loss", "reconstruction (nats, summed over pixels)", "KL (nats)")):
        ax.set(title=title, xlabel="step")
        ax.grid(alpha=0.3)
    axes[0].set_yscale("log")
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    return _maybe_save(fig, out)


def plot_kl_dims(run_dir, out=None):
    """KL of every latent over steps (history.csv kl_0..kl_{D-1}): which units switch on, and when."""
    rows = rundir.read_history(run_dir)
    fig = plotting.figure(7, 3.4)
    ax = fig.add_subplot(1, 1, 1)
    if rows:
        dims = sorted((k for k in rows[0] if k.startswith("kl_")), key=lambda k: int(k[3:]))
        steps = [r["step"] for r in rows]
        for k in dims:
            ax.plot(steps, [max(r[k], 1e-4) for r in rows], label=k.replace("kl_", "z"))
        ax.legend(ncol=2, fontsize=7)
    ax.set(
        yscale="log",
        xlabel="step",
        ylabel="KL (nats)",
        title=f"KL per latent, β={_beta(run_dir):g}",
    )
    # no threshold line: active units are defined on Var_x μ_d (encoding.ACTIVE_VAR), not on KL
    fig.tight_layout()
    return _maybe_save(fig, out)


# A latent "carries information" once its logged KL (nats, averaged over a logging interval) is
# above this. Fixed before the 128² runs were read (results/seed_128/budget.md); the study's
# active-unit count uses Var_x μ_d instead (encoding.ACTIVE_VAR), which needs an evaluation pass.
ONSET_NATS = 1.0


def latent_onsets(rows: list[dict], nats: float = ONSET_NATS) -> dict[int, int | None]:
    """{latent d: the first logged step from which its KL stays above ``nats`` to the last row of
    ``rows`` (rundir.read_history), or None if it is not above at the end}.

    When each unit switched on: under a β-VAE objective units open one at a time, the factor that
    buys the most reconstruction per nat first (Burgess et al. 2018, §4), so the onset steps say
    which budget gets a model past position and size. A unit that opened and closed again has no
    onset."""
    dims = sorted(int(k[3:]) for k in (rows[0] if rows else {}) if k.startswith("kl_"))
    onsets: dict[int, int | None] = {}
    for d in dims:
        onset = None
        for row in reversed(rows):  # the last stretch above the threshold, walked backwards
            if not row[f"kl_{d}"] > nats:
                break
            onset = int(row["step"])
        onsets[d] = onset
    return onsets


def latest_frame(run_dir) -> Path | None:
    """Path of the newest reconstruction frame (frames/frame_<step>.png), or None."""
    frames = sorted((Path(run_dir) / "frames").glob("frame_*.png"))
    return frames[-1] if frames else None


def status(run_dir) -> str:
    """One line: step reached, last losses, img/s, and whether the run has finished."""
    rows = rundir.read_history(run_dir)
    done = (Path(run_dir) / "summary.json").exists()
    if not rows:
        return f"{run_dir}: no history yet"
    r = rows[-1]
    return (f"{run_dir}: step {r['step']}  loss {r['loss']:.1f}  recon {r['recon']:.1f}  "
            f"kl {r['kl']:.2f}  {r['img_per_s']:.0f} img/s  {'finished' if done else 'running/unfinished'}")  # fmt: skip


def show_run(run_dir) -> None:
    """Displays one run in a notebook: ``status``, ``plot_curves``, ``plot_kl_dims``, the latest
    reconstruction frame and the training GIF (what vae_viz.ipynb refreshes, and ``browse`` draws
    for the run its dropdown picks)."""
    from IPython.display import Image, display

    print(status(run_dir))
    display(plot_curves(run_dir))
    display(plot_kl_dims(run_dir))
    for path in (latest_frame(run_dir), Path(run_dir) / "training.gif"):
        if path is not None and path.exists():
            display(Image(filename=str(path)))


def browse(sweep_dir, run=None):
    """A dropdown over the runs of ``<sweep_dir>/sweep.json`` that have started logging (β, seed)
    above an ``Output`` that ``show_run`` draws the chosen run into (ipywidgets); ``run``: the run
    shown first. Returns the widget box: a notebook draws it as the cell's value."""
    import ipywidgets as w

    from .widgets import run_dropdown, sweep_choices

    dropdown = run_dropdown(sweep_choices(sweep_dir, finished=False), run)
    out = w.Output()

    def draw(_change=None):
        out.clear_output(wait=True)
        with out:
            show_run(dropdown.value)

    dropdown.observe(draw, names="value")
    draw()
    return w.VBox([dropdown, out])


def _beta(run_dir) -> float:
    return float(
        rundir.read_json(Path(run_dir) / "config.json", "run config").get("beta", float("nan"))
    )


def _maybe_save(fig, out):
    if out is not None:
        plotting.save(fig, out, dpi=110)
    return fig
