"""Does bf16 change what a β-VAE learns? float32 against mixed_bfloat16 over a real training run:
the study preset (32², β=4, seed 0) for 5 000 steps each, then per-latent KL, active units,
MIG (study protocol) and throughput of both. Issue: bf16 may become a default (``--precision
auto`` on AMX-BF16 CPUs and bf16 GPUs) only with this evidence.

    python bench/bench_precision.py [--quick]     # prints a markdown section (~15 min on 2 cores)
"""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import replace

import numpy as np
from common import ensure_data, machine

BETA, SEED, STEPS = 4.0, 0, 5000


def _train_and_score(cfg, run_dir) -> dict:
    import latentSpace
    import training
    from sbd_vae import encoding, rundir
    from sbd_vae.metrics import compute_metrics

    t0 = time.time()
    summary = training.train(cfg, run_dir, progress=False)
    seconds = time.time() - t0
    history = rundir.read_history(run_dir)
    tail = history[-max(1, len(history) // 10) :]  # the last 10% of logged steps, averaged
    kl = np.array([[r[f"kl_{i}"] for i in range(cfg.latent_dim)] for r in tail]).mean(axis=0)
    model, _, sampler = latentSpace.load_run(run_dir)
    fn = encoding.make_encode_fn(model)
    mig = compute_metrics(sampler, fn, np.random.RandomState(0), "study", ["mig"], False)["mig"]
    return dict(kl=kl, active=summary["active_units"], mig=mig, loss=np.mean([r["loss"] for r in tail]),
                img_s=cfg.steps * cfg.batch_size / seconds)  # fmt: skip


def run(quick: bool = False) -> str:
    import training

    steps = 500 if quick else STEPS
    base = training.preset_config("study", data_path=str(ensure_data()), beta=BETA, seed=SEED,
                                  steps=steps, checkpoint_every=steps, frame_every=steps)  # fmt: skip
    t0 = time.time()
    res = {}
    with tempfile.TemporaryDirectory() as tmp:
        for precision in ("float32", "mixed_bfloat16"):
            res[precision] = _train_and_score(
                replace(base, precision=precision), f"{tmp}/{precision}"
            )
    f, b = res["float32"], res["mixed_bfloat16"]
    order = np.argsort(-f["kl"])
    kl_row = lambda r: " ".join(f"{r['kl'][i]:.2f}" for i in order)  # noqa: E731
    lines = [
        f"## bf16 against float32 over a real run (study preset, 32², β={BETA:g}, {steps} steps)",
        "",
        f"Machine: {machine()}. Command: `python bench/bench_precision.py`. Both runs in one "
        f"process, same seed and data ({time.time() - t0:.0f} s in all). KL per latent: mean of the "
        "last 10% of logged steps, latents in float32's KL order; MIG: study protocol, metric "
        "seed 0; active units: Burda et al. 2016.",
        "",
        "| precision | img/s | loss | KL per latent (nats) | total KL | active units | MIG |",
        "|---|---|---|---|---|---|---|",
        *[
            f"| {p} | {r['img_s']:.0f} | {r['loss']:.1f} | {kl_row(r)} | {r['kl'].sum():.2f} | "
            f"{r['active']} | {r['mig']:.3f} |"
            for p, r in res.items()
        ],  # fmt: skip
        "",
        f"bf16 / float32: {b['img_s'] / f['img_s']:.2f}× the throughput. The latents above 1 nat "
        f"in float32 ({int((f['kl'] > 1).sum())}) differ by at most "
        f"{np.abs(b['kl'] - f['kl'])[f['kl'] > 1].max(initial=0):.2f} nats; ΔMIG "
        f"{b['mig'] - f['mig']:+.3f}, Δ total KL {b['kl'].sum() - f['kl'].sum():+.2f} nats, Δ active "
        f"units {b['active'] - f['active']:+d}. One seed each, so this bounds a gross effect of bf16 "
        "only; the weak latents (< 1 nat) are the ones that differ, and they also vary between "
        "float32 seeds (results/study). The study preset stays float32.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
