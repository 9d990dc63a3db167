"""Keras callbacks of the training loop: NaN guard, history.csv + TensorBoard, GIF frames,
checkpoints and the tqdm progress bar.

training.py runs ``fit`` with one Keras epoch per ``log_every`` steps, so the global step after
batch ``b`` of epoch ``e`` is ``e · log_every + b + 1`` and the logs at ``on_epoch_end`` are the
means of exactly one logging interval.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import keras
import numpy as np
from tqdm.auto import tqdm

from . import imaging, rundir


class _StepCallback(keras.callbacks.Callback):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def step(self, batch=None):
        """Global step after ``batch`` of the current epoch, or at the end of the epoch."""
        b = self.cfg.log_every - 1 if batch is None else batch
        return self.epoch * self.cfg.log_every + b + 1


class NaNGuard(_StepCallback):
    """Stops at the first non-finite loss, before anything is checkpointed after it."""

    def __init__(self, out, cfg):
        super().__init__(cfg)
        self.out = Path(out)

    def on_train_batch_end(self, batch, logs=None):
        loss = float((logs or {}).get("loss", 0.0))
        if not math.isfinite(loss):
            ckpts = rundir.list_checkpoints(self.out)
            kept = (
                f"the last good checkpoint {ckpts[-1]} is intact"
                if ckpts
                else "no checkpoint was written yet"
            )
            raise rundir.NonFiniteLoss(
                f"{self.out}: the loss became {loss} at step {self.step(batch)}; training stopped and "
                f"{kept}. Re-running the same command would diverge again: lower --lr (now "
                f"{self.cfg.lr:g}) or β and start over with --fresh (or use another --out)."
            )


class History(_StepCallback):
    """One row per ``log_every`` steps in history.csv (atomic rewrite) and TensorBoard scalars."""

    def __init__(self, out, cfg, start, rows):
        super().__init__(cfg)
        self.out, self.rows = Path(out), list(rows)
        self.elapsed = rows[-1]["elapsed_s"] if rows else 0.0
        self.writer = None
        self.t0 = time.time()

    def on_train_begin(self, logs=None):
        from .backend import ScalarWriter

        self.writer = ScalarWriter.open(self.out / "tb")  # None without TensorBoard installed

    def on_epoch_begin(self, epoch, logs=None):
        super().on_epoch_begin(epoch, logs)
        self.t0 = time.time()

    def on_epoch_end(self, epoch, logs=None):
        dt = time.time() - self.t0
        self.elapsed += dt
        logs = logs or {}
        row = {"step": self.step()}
        row.update({k: float(logs[src]) for k, src in (
            ("loss", "loss"), ("recon", "reconstruction"), ("kl", "kl"), ("capacity", "capacity"))})  # fmt: skip
        row.update({f"kl_{i}": float(logs[f"kl_{i}"]) for i in range(self.cfg.latent_dim)})
        # then the terms of the objective only (β-TCVAE's mi, tc, …: BetaVAE.term_names)
        written = {"reconstruction", "kl", "capacity", *row}
        row.update({k: float(logs[k]) for k in self.model.term_names() if k not in written})
        row["img_per_s"] = self.cfg.log_every * self.cfg.batch_size / max(dt, 1e-9)
        row["elapsed_s"] = self.elapsed
        self.rows.append(row)
        rundir.write_history(self.out, self.rows)
        if self.writer is not None:
            tags = {k if not k.startswith("kl_") else f"kl_dims/{k}": v for k, v in row.items()}
            self.writer.scalars(row["step"], {k: v for k, v in tags.items() if k != "step"})

    def on_train_end(self, logs=None):
        if self.writer is not None:
            self.writer.close()


class Frames(_StepCallback):
    """Reconstructions of a fixed batch every ``frame_every`` steps → frames/*.png + training.gif.

    The GIF is rebuilt from all frames after each new one, so it is current *during* training.
    Frames later than the resume step are removed, so a resumed run's GIF has no duplicates.
    """

    def __init__(self, out, cfg, fixed_images, start):
        super().__init__(cfg)
        self.out, self.fixed, self.start = Path(out), np.asarray(fixed_images), start
        self.dir = self.out / "frames"
        self.dir.mkdir(parents=True, exist_ok=True)
        for p in self.dir.glob("frame_*.png"):
            if int(p.stem.split("_")[1]) > start:
                p.unlink()
        # the GIF's frames so far, read once; each new frame is appended in memory
        self.frames = [imaging.imageio.imread(p) for p in sorted(self.dir.glob("frame_*.png"))]

    def on_train_begin(self, logs=None):
        if self.start == 0:
            self.write(0)

    def on_epoch_end(self, epoch, logs=None):
        if self.step() % self.cfg.frame_every == 0:
            self.write(self.step())

    def write(self, step):
        recon = np.asarray(self.model.reconstruct(self.fixed))  # (F, S, S, 1)
        image = imaging.grid(np.stack([self.fixed, recon]))  # row 0 inputs, row 1 reconstructions
        label = f"step {step}  beta={self.cfg.beta:g}  top: input, bottom: reconstruction"
        frame = imaging.caption(image, label)
        imaging.save_png(self.dir / f"frame_{step:08d}.png", frame)
        self.frames.append(frame)
        imaging.save_gif(self.out / "training.gif", self.frames)


class Checkpoint(_StepCallback):
    """Atomic checkpoint every ``checkpoint_every`` steps and at the last step of this call.

    ``deadline`` (a ``time.time()`` value, or None): the first logging interval that ends past it
    is checkpointed and ends ``fit`` (``stopped_at`` is then its step), so a time budget (the GPU
    study's, on a machine that is handed back) cuts a run at a resumable checkpoint, never
    between two."""

    def __init__(self, out, cfg, start, end, deadline=None):
        super().__init__(cfg)
        self.out, self.end, self.deadline = Path(out), end, deadline
        self.stopped_at = None

    def on_epoch_end(self, epoch, logs=None):
        step = self.step()
        late = self.deadline is not None and step < self.end and time.time() >= self.deadline
        if step % self.cfg.checkpoint_every == 0 or step == self.end or late:
            rundir.save_checkpoint(self.out, self.model, step, {}, keep=self.cfg.keep_checkpoints)
        if late:
            self.stopped_at = step
            self.model.stop_training = True


class Snapshot(_StepCallback):
    """The weights at each of ``cfg.snapshot_steps`` → snapshots/snap-<step>.npz (rundir.save_snapshot),
    for scores over training. A resumed run re-writes a snapshot only if it is missing."""

    def __init__(self, out, cfg):
        super().__init__(cfg)
        self.out, self.steps = Path(out), set(cfg.snapshot_steps)

    def on_epoch_end(self, epoch, logs=None):
        step = self.step()
        if step in self.steps and step not in rundir.list_snapshots(self.out):
            rundir.save_snapshot(self.out, self.model, step)


class Progress(_StepCallback):
    """tqdm bar over global steps with loss, recon, kl and img/s."""

    def __init__(self, cfg, start, end):
        super().__init__(cfg)
        self.start, self.end = start, end
        self.bar = None
        self.t0 = None

    def on_train_begin(self, logs=None):
        desc = f"β={self.cfg.beta:g} seed={self.cfg.seed}"
        self.bar = tqdm(
            total=self.end, initial=self.start, desc=desc, unit="step", dynamic_ncols=True
        )
        self.t0 = time.time()

    def on_train_batch_end(self, batch, logs=None):
        self.bar.update(1)
        if batch % 5 == 0 and logs:
            done = self.step(batch) - self.start
            rate = done * self.cfg.batch_size / max(time.time() - self.t0, 1e-9)
            self.bar.set_postfix(
                loss=f"{float(logs['loss']):.1f}", recon=f"{float(logs['reconstruction']):.1f}",
                kl=f"{float(logs['kl']):.2f}", img_s=f"{rate:.0f}", refresh=False,
            )  # fmt: skip

    def on_train_end(self, logs=None):
        self.bar.close()
