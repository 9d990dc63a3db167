"""Has a run stopped learning? The change of the loss and of every latent's KL over the last part
of training, read from ``<run>/history.csv``.

A β-VAE's total loss can keep creeping down while its latents have long settled, or a latent can
still be switching on or off while the loss looks flat (the KL of one unit moving between
"active" and "collapsed" barely moves the ELBO). So both are checked:

- ``loss_change``: relative change of the mean loss between the window just before the tail and
  the last window (each ``window`` of the run, 5% by default), tail = the last ``tail`` (20%);
- ``kl_change``: the same windows' absolute change of each latent's KL (nats), (D,).

A run is flagged as still moving when ``|loss_change| > LOSS_TOL`` or any latent's
``|kl_change| > max(KL_TOL_NATS, KL_TOL_REL · its KL)``. Window means (not single logged rows)
keep minibatch noise out of the decision.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import rundir

TAIL = 0.2  # the part of training whose change is checked (issue: the last 20% of steps)
WINDOW = 0.05  # each compared window: 5% of the run, averaged
LOSS_TOL = 0.02  # relative
KL_TOL_NATS = 0.1
KL_TOL_REL = 0.1


def convergence(history: list[dict], tail: float = TAIL, window: float = WINDOW) -> dict:
    """``history``: rows of history.csv (dicts with step, loss, kl_0 … kl_{D-1}), in step order.

    Returns dict(steps, tail_from (first step of the tail), loss_change (relative), kl_change
    (D,) nats, kl_final (D,), moving [latent indices], converged bool, note str)."""
    if len(history) < 4:
        return dict(steps=history[-1]["step"] if history else 0, converged=False, moving=[],
                    loss_change=float("nan"), kl_change=[], kl_final=[], tail_from=None,
                    note="too few logged steps to judge")  # fmt: skip
    steps = np.array([r["step"] for r in history], float)
    d = sum(1 for k in history[0] if k.startswith("kl_") and k[3:].isdigit())
    loss = np.array([r["loss"] for r in history], float)
    kls = np.array([[r[f"kl_{i}"] for i in range(d)] for r in history], float)  # (T, D)
    last = steps[-1]
    start = last * (1 - tail)
    before = (steps > start - window * last) & (steps <= start)  # the window ending at the tail
    end = steps > last - window * last  # the last window
    if not before.any():
        before = steps <= start
    loss_change = (loss[end].mean() - loss[before].mean()) / abs(loss[before].mean())
    kl_a, kl_b = kls[before].mean(axis=0), kls[end].mean(axis=0)  # (D,)
    kl_change = kl_b - kl_a
    tol = np.maximum(KL_TOL_NATS, KL_TOL_REL * np.maximum(kl_a, kl_b))
    moving = [int(i) for i in np.flatnonzero(np.abs(kl_change) > tol)]
    converged = abs(loss_change) <= LOSS_TOL and not moving
    parts = []
    if abs(loss_change) > LOSS_TOL:
        parts.append(f"loss moved {100 * loss_change:+.1f}%")
    if moving:
        parts.append("KL still moving: " + ", ".join(f"z{i} {kl_change[i]:+.2f}" for i in moving))
    return dict(
        steps=int(last), tail_from=int(start), loss_change=float(loss_change),
        kl_change=[float(v) for v in kl_change], kl_final=[float(v) for v in kl_b],
        moving=moving, converged=bool(converged),
        note="; ".join(parts) if parts else "settled",
    )  # fmt: skip


def run_convergence(run_dir) -> dict:
    """``convergence`` of ``<run_dir>/history.csv``."""
    return convergence(rundir.read_history(Path(run_dir)))


__all__ = ["convergence", "run_convergence", "TAIL", "LOSS_TOL", "KL_TOL_NATS", "KL_TOL_REL"]
