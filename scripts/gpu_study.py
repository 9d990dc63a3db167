"""The GPU study: a preset's β grid on a bare JAX GPU machine, packed for any CPU to score.

    KERAS_BACKEND=jax python scripts/gpu_study.py --data data/shapes.npz --out runs/gpu_study \
        --pack OUTDIR --budget_min 8
    KERAS_BACKEND=jax python scripts/gpu_study.py --dataset dsprites --seeds 0 1 2 \
        --out runs/gpu_dsprites --pack OUTDIR --budget_min 60   # no --data; full budget: docs/gpu.md
    KERAS_BACKEND=jax python scripts/gpu_study.py --smoke --data data/shapes.npz --out /tmp/s \
        --pack /tmp/s/pack      # the same script on a CPU, tiny model, seconds

For a machine with Python, JAX (CUDA), numpy, scipy, scikit-learn, matplotlib, imageio, pandas
and tqdm, and Keras installed from a folder of wheels (keras, optree, namex): no TensorFlow, no
bpy, no Ray. ``--dataset`` (``STUDIES``) picks what it trains:

    shapes     (default) the ``paper`` preset at 128² on a rendered data/shapes.npz (render it
               on a CPU machine and carry it); β grid 1, 16, 64, 102, 256 (the seed's β = 1 and
               102 first); full budget: the preset's 100 000 steps
    dsprites   the ``dsprites`` preset: disentanglement_lib's conv encoder and deconv decoder at
               64² on dSprites-like (procedural) images, made on the host in the script (no
               file: ``--data`` is refused); β grid 1, 4, 16 (Higgins et al. 2017 report 61.6 %
               BetaVAE score at β = 1 and 99.2 % at β = 4); full budget: disentanglement_lib's
               ``config.DLIB_STEPS`` (Locatello et al. 2019); 4 weight snapshots per run on a
               doubling grid, for the scores over training

It then:

1. measures training img/s of the preset's model for each batch size in --bench_batches and
   each of float32 and mixed_bfloat16: the real step (``training.training_stream``: shapes warp
   on the device, inside the step; dSprites images from the host), timed after the XLA compile,
   which is reported on its own;
2. trains the preset over the β grid (--betas) × --seeds, one run after another, each for the
   steps its share of --budget_min affords at the measured rate, at most the full budget. Every
   run is labelled with the fraction of the full budget it reached (``fraction_of_full`` in
   manifest.json and study.json). Runs checkpoint as they go (the run folders resume, as any run
   of training.py). The budget is a hard deadline: a run still training when it passes is
   checkpointed at its next logging step and stopped ("partial"), and the runs after it are
   skipped, so the packing always happens before the machine is handed back;
3. packs every finished run's model (without the optimizer state), config, summary, history and
   GIF, and the throughput table and figure, then each partial run's config, history and newest
   checkpoint (unzipped, its folder resumes with ``training.py train``), then the finished runs'
   weight snapshots, into at most --max_archives zip files of at most --archive_mib MiB each,
   in priority order (shapes: β = 1 and 102 first). What does not fit is listed in
   manifest.json, never silently dropped. study.json (in the first archive) and manifest.json
   give every run's status: done, partial (with the step reached), skipped or failed.
   manifest.json is written last and removed when packing starts: **a pack folder without
   manifest.json is an interrupted pack**; each archive is written under a temporary name and
   renamed, so no ``gpu_study_*.zip`` is ever partial.

Score the archives later on any CPU (docs/gpu.md): unzip them into results/gpu_study/ and run
``python latentSpace.py report results/gpu_study --protocol study``.

A budget-limited run is short of its full budget: summary.json and the manifest record the
steps reached and the fraction of the full budget, and the convergence table of the report says
whether the KL curves still move. Nothing here decides what counts as converged.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import zipfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from sbd_vae import datasets  # noqa: E402  (numpy only: no Keras before the backend is set)
from sbd_vae.config import DLIB_STEPS, PRESETS  # noqa: E402

PRECISIONS = ("float32", "mixed_bfloat16")
SEED_BETAS = (1.0, 102.0)  # the seed repo's two figures: packed first
# The smoke config: the paper model shrunk until a CPU runs every stage in seconds.
SMOKE = dict(image_size=32, channels=8, hidden=32, latent_dim=6, log_every=5)


@dataclass(frozen=True)
class Study:
    """What the script trains for one ``--dataset``.

    preset: the ``config.PRESETS`` entry trained (its dataset is the one named).
    betas: the default β grid; ``first``: the β packed and trained first.
    full_steps: the preset's full training budget, in steps: runs never plan more, and each is
        labelled with the fraction of it reached.
    smoke: ``--smoke``'s overrides: the preset shrunk until a CPU runs every stage in seconds.
    snapshots: weight snapshots per run, on a doubling grid ending at its planned steps (for
        the scores over training, ``latentSpace.py evaluate RUN --all-snapshots``); 0: none.
    """

    preset: str
    betas: tuple[float, ...]
    full_steps: int
    smoke: dict = field(default_factory=dict)
    first: tuple[float, ...] = ()
    snapshots: int = 0


# One line per dataset the script trains (a --dataset of the registry without one is refused).
STUDIES = {
    "shapes": Study("paper", betas=(1, 16, 64, 102, 256), full_steps=PRESETS["paper"].steps,
                    smoke=SMOKE, first=SEED_BETAS),
    # dlib_deconv renders 64² only: the smoke run keeps 64² and shrinks latents, batch and steps
    "dsprites": Study("dsprites", betas=(1, 4, 16), full_steps=DLIB_STEPS,
                      smoke=dict(latent_dim=4, batch_size=16, log_every=5), snapshots=4),
}  # fmt: skip


def study(args) -> Study:
    return STUDIES[args.dataset]


def _preset(args, **overrides):
    """The study's preset (``--smoke``: shrunk) on --dataset (and --data where it reads one)
    with ``--batch_size`` and ``--precision`` when given, then ``overrides``."""
    from sbd_vae.config import preset_config

    base = dict(study(args).smoke if args.smoke else {})
    if args.data is not None:
        base["data_path"] = args.data
    if args.batch_size:
        base["batch_size"] = args.batch_size
    if args.precision:
        base["precision"] = args.precision
    return preset_config(study(args).preset, **{**base, **overrides})


def snapshot_grid(steps: int, n: int, log_every: int) -> tuple[int, ...]:
    """``n`` steps on a doubling grid ending at ``steps`` (steps/2^(n-1), ..., steps/2, steps),
    each rounded down to a multiple of ``log_every``; those that round to 0 are dropped."""
    grid = {steps // 2**i // log_every * log_every for i in range(n)}
    return tuple(sorted(s for s in grid if s > 0))


# ----------------------------------------------------------------------------- 1. throughput
def throughput(args, data) -> list[dict]:
    """img/s of the training step per (batch, precision); one row each, compile time apart."""
    import keras
    from tqdm.auto import tqdm

    import training

    rows = []
    grid = [(b, p) for b in args.bench_batches for p in PRECISIONS]
    for batch, precision in tqdm(grid, desc="throughput", unit="config"):
        cfg = _preset(args, batch_size=batch, precision=precision, steps=10**6)
        keras.backend.clear_session()
        model = training.build_model(cfg)
        stream = training.training_stream(data, model, cfg, 0)
        t0 = time.perf_counter()
        model.fit(stream, epochs=1, steps_per_epoch=2, verbose=0)  # trace + XLA compile
        compile_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        logs = model.fit(stream, epochs=1, steps_per_epoch=args.bench_steps, verbose=0)
        float(logs.history["loss"][-1])  # the logs are read back: every step has finished
        seconds = time.perf_counter() - t0
        rows.append(dict(batch_size=batch, precision=precision, steps=args.bench_steps,
                         seconds=seconds, img_per_s=args.bench_steps * batch / seconds,
                         compile_seconds=compile_s, image_size=cfg.image_size))  # fmt: skip
    return rows


def throughput_figure(rows, path, machine: str, preset: str) -> None:
    from sbd_vae import plotting

    fig = plotting.figure(6, 3.4)
    ax = fig.subplots()
    batches = sorted({r["batch_size"] for r in rows})
    width = 0.38
    for i, precision in enumerate(PRECISIONS):
        ys = [next(r["img_per_s"] for r in rows if r["batch_size"] == b and
                   r["precision"] == precision) for b in batches]  # fmt: skip
        ax.bar([j + (i - 0.5) * width for j in range(len(batches))], ys, width, label=precision)
    ax.set_xticks(range(len(batches)), [f"batch {b}" for b in batches])
    ax.set_ylabel("training img/s")
    ax.set_title(f"{preset} preset, {rows[0]['image_size']}² — {machine}", fontsize=8)
    ax.legend(fontsize=8)
    fig.tight_layout()
    plotting.save(fig, path, dpi=110)


# ----------------------------------------------------------------------------- 2. the β grid
def plan_steps(args, rows, n_runs: int) -> tuple[dict, int]:
    """(throughput row of the chosen batch and precision, steps per run): each run gets an
    equal share of --budget_min, less the compile time, at the measured rate, rounded down to
    the log interval, and at most the study's full budget (``Study.full_steps``)."""
    from sbd_vae.hardware import resolve_precision

    cfg = _preset(args)
    precision = resolve_precision(cfg.precision)
    row = next((r for r in rows if r["batch_size"] == cfg.batch_size
                and r["precision"] == precision), None)  # fmt: skip
    if args.smoke:
        return row, args.smoke_steps
    if row is None:
        raise SystemExit(
            f"gpu_study.py: --batch_size {cfg.batch_size} with {precision} was not measured; "
            f"add it to --bench_batches (now {args.bench_batches})"
        )
    share = args.budget_min * 60.0 / n_runs - row["compile_seconds"] - args.overhead_s
    steps = int(share * row["img_per_s"] / cfg.batch_size) // cfg.log_every * cfg.log_every
    steps = min(steps, study(args).full_steps // cfg.log_every * cfg.log_every)
    if steps < cfg.log_every:
        raise SystemExit(
            f"gpu_study.py: --budget_min {args.budget_min} leaves {share:.0f} s per run for "
            f"{n_runs} runs: raise --budget_min or pass fewer --betas"
        )
    return row, steps


def train_grid(args, data_rows) -> list[dict]:
    """Trains the β grid until the --budget_min deadline; one result dict per run, its status
    "done", "partial" (cut by the deadline at a checkpoint: ``steps`` of ``planned_steps``),
    "skipped: budget spent" or "failed" (with ``error``); a trained one also has
    ``fraction_of_full``, its steps over the study's full budget (``Study.full_steps``)."""
    import keras

    import training
    from sbd_vae import rundir
    from sbd_vae.sweep import run_name

    plan = study(args)
    betas = sorted(args.betas, key=lambda b: (b not in plan.first, b))
    runs = [(b, s) for b in betas for s in args.seeds]
    row, steps = plan_steps(args, data_rows, len(runs))
    log_every = _preset(args).log_every
    snapshots = snapshot_grid(steps, plan.snapshots, log_every)
    every = max(steps // 10 // log_every, 1) * log_every  # ~10 frames and checkpoints a run
    deadline = time.time() + args.budget_min * 60  # a hard one: the packing must still run
    results = []
    for beta, seed in runs:
        out = Path(args.out) / run_name(beta, seed)
        if time.time() >= deadline:
            results.append(dict(beta=beta, seed=seed, status="skipped: budget spent"))
            continue
        cfg = _preset(args, beta=beta, seed=seed, steps=steps, checkpoint_every=every,
                      frame_every=every, snapshot_steps=snapshots)  # fmt: skip
        cfg = _as_started(cfg, out)
        keras.backend.clear_session()
        try:
            summary = training.train(cfg, out, progress=True, deadline=deadline)
        except (training.NonFiniteLoss, rundir.RunDirError, ValueError) as e:
            # one bad run (NaN, a damaged folder) must not cost the others their archives
            print(f"[gpu_study] {out.name} failed: {e}", file=sys.stderr)
            results.append(dict(beta=beta, seed=seed, run=out.name, status="failed",
                                error=str(e)))  # fmt: skip
            continue
        done = summary["status"] == "done"
        results.append(dict(beta=beta, seed=seed, run=out.name,
                            status="done" if done else "partial", steps=summary["step"],
                            planned_steps=cfg.steps, full_steps=plan.full_steps,
                            fraction_of_full=summary["step"] / plan.full_steps,
                            img_per_s=summary.get("img_per_s"),
                            train_seconds=summary.get("train_seconds")))  # fmt: skip
    return results


def _as_started(cfg, out: Path):
    """``cfg`` for a run that an earlier call started in ``out``: its own checkpoint and frame
    intervals (they follow the img/s measured then; a resume with others would be refused as a
    changed config), and at least the steps its newest checkpoint reached."""
    from sbd_vae import rundir
    from sbd_vae.config import load_config

    if not (out / "config.json").exists():
        return cfg
    old = load_config(out)
    reached = max((int(p.name[5:13]) for p in rundir.list_checkpoints(out)), default=0)
    return replace(cfg, steps=max(cfg.steps, reached), checkpoint_every=old.checkpoint_every,
                   frame_every=old.frame_every)  # fmt: skip


# ----------------------------------------------------------------------------- 3. packing
def pack(files: list[tuple[Path, str]], dest: Path, max_archives: int, mib: float) -> dict:
    """Zips ``files`` [(path, name in the archive)] in order into gpu_study_1.zip, … (at most
    ``max_archives``, each at most ``mib`` MiB), each written to a temporary name, then renamed.
    A file goes into the first archive where it still fits (its stored size bounds its
    compressed one); one that fits nowhere is listed under "left_out". Returns the manifest."""
    limit = int(mib * 2**20)
    dest.mkdir(parents=True, exist_ok=True)
    sizes = [0] * max_archives  # bytes used per archive (member sizes + 1 KiB of headers each)
    members: list[list[tuple[Path, str]]] = [[] for _ in range(max_archives)]
    left_out = []
    for path, name in files:
        need = path.stat().st_size + 1024
        slot = next((i for i in range(max_archives) if sizes[i] + need <= limit - 4096), None)
        if slot is None:
            left_out.append(name)
            continue
        sizes[slot] += need
        members[slot].append((path, name))
    # An earlier pack's manifest would vouch for archives this pack is about to replace: gone
    # first, so that until the new one is written (last) the folder says "interrupted".
    (dest / MANIFEST).unlink(missing_ok=True)
    written = []
    for i, group in enumerate(members):
        if not group:
            continue
        final = dest / f"gpu_study_{i + 1}.zip"
        tmp = final.with_name(final.name + ".tmp")
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            for path, name in group:
                zf.write(path, name)
        os.replace(tmp, final)
        written.append({"archive": final.name, "bytes": final.stat().st_size,
                        "members": [n for _, n in group]})  # fmt: skip
    # archives of an earlier, larger pack, and a killed pack's temporaries, are not this pack's
    for p in dest.glob("gpu_study_*.zip*"):
        if ARCHIVE_RE.match(p.name) and p.name not in {w["archive"] for w in written}:
            p.unlink()
    return {"archives": written, "left_out": left_out}


def pack_and_index(files, dest: Path, max_archives: int, mib: float, runs: list[dict]) -> dict:
    """``pack``, then manifest.json (archives, left_out, every run and the partial ones), which
    is written last (atomically): its presence says the pack is complete."""
    from sbd_vae import rundir

    manifest = pack(files, dest, max_archives, mib)
    manifest["runs"] = runs
    manifest["partial"] = [r["run"] for r in runs if r["status"] == "partial"]
    rundir.write_json(dest / MANIFEST, manifest)
    return manifest


MANIFEST = "manifest.json"
ARCHIVE_RE = re.compile(r"^gpu_study_\d+\.zip(\.tmp)?$")


RUN_FILES = ("config.json", "summary.json", "history.csv", "model.keras", "training.gif")
PARTIAL_FILES = ("config.json", "history.csv", "training.gif")  # + the newest checkpoint


def files_to_pack(args, results, work: Path) -> list[tuple[Path, str]]:
    """Throughput first, then each finished run in grid order (shapes: β = 1 and 102 first),
    every model saved without its optimizer state (``training.save_without_optimizer``); then
    each partial run's ``PARTIAL_FILES`` and newest checkpoint, which lets it resume elsewhere
    (no summary.json or model.keras: the report lists it as unfinished); last, the finished
    runs' weight snapshots (snapshots/snap-<step>.npz: the scores over training), which are
    worth the least and are the first left out when the archives are full."""
    import training
    from sbd_vae import rundir

    files = [(work / n, n) for n in ("throughput.json", "throughput.png", "study.json")]
    slim_dir = work / "slim"  # the optimizer-free copies of the models
    partial = []  # after every finished run: they are worth less
    snapshots = []  # after the partial runs: the least
    for r in results:
        run = Path(args.out) / r.get("run", "")
        if r.get("status") == "partial":
            ckpts = rundir.list_checkpoints(run)  # newest last; unreadable ones are skipped
            partial += [(run / n, f"{r['run']}/{n}") for n in PARTIAL_FILES if (run / n).exists()]
            partial += [(c, f"{r['run']}/checkpoints/{c.name}") for c in ckpts[-1:]]
        if r.get("status") != "done":
            continue
        for name in RUN_FILES:
            src = run / name
            if name == "model.keras":
                slim = slim_dir / r["run"] / name
                slim.parent.mkdir(parents=True, exist_ok=True)
                training.save_without_optimizer(src, slim)
                src = slim
            if src.exists():
                files.append((src, f"{r['run']}/{name}"))
        snapshots += [(path, f"{r['run']}/snapshots/{path.name}")
                      for path in rundir.list_snapshots(run).values()]  # fmt: skip
    return files + partial + snapshots


# ----------------------------------------------------------------------------- main
def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="shapes", choices=list(datasets.DATASETS),
                   help="what to train (STUDIES): shapes, the paper preset on --data; dsprites, "
                   "the dsprites preset, procedural (no --data)")  # fmt: skip
    p.add_argument("--data", default=None,
                   help="the rendered shapes (.npz), --dataset shapes only; default data/shapes.npz")  # fmt: skip
    p.add_argument("--out", default="runs/gpu_study", help="run folders (resumable)")
    p.add_argument("--pack", required=True, help="folder for the archives and manifest.json")
    p.add_argument("--budget_min", type=float, default=8.0, help="training minutes, all runs")
    p.add_argument("--betas", type=float, nargs="+", default=None,
                   help="β grid; default: the --dataset's (shapes 1 16 64 102 256, dsprites 1 4 16)")  # fmt: skip
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds per β")
    p.add_argument("--batch_size", type=int, default=None, help="default: the preset's")
    p.add_argument("--precision", default=None,
                   help="of the β runs; default: the preset's (paper auto: bf16 on cc ≥ 8; dsprites float32)")  # fmt: skip
    p.add_argument("--bench_batches", type=int, nargs="+", default=[16, 64, 256],
                   help="batch sizes whose img/s is measured")  # fmt: skip
    p.add_argument("--bench_steps", type=int, default=200, help="timed steps per measurement")
    p.add_argument(
        "--overhead_s",
        type=float,
        default=15.0,
        help="per-run seconds outside the step: frames, checkpoints, saving",
    )
    p.add_argument("--max_archives", type=int, default=2, help="zip files at most")
    p.add_argument("--archive_mib", type=float, default=16.0, help="MiB per zip file at most")
    p.add_argument("--smoke", action="store_true", help="tiny model, a CPU, seconds")
    p.add_argument("--smoke_steps", type=int, default=20, help="steps per run with --smoke")
    args = p.parse_args(argv)
    if args.dataset not in STUDIES:
        p.error(
            f"--dataset {args.dataset}: no study preset for it here; add its line to STUDIES "
            f"in scripts/gpu_study.py, or pick one of {', '.join(STUDIES)}"
        )
    reads_file = "data_path" in datasets.entry(args.dataset).reads
    if args.data is not None and not reads_file:
        p.error(
            f"--data {args.data}: --dataset {args.dataset} reads no file (its images are made "
            "in the script): drop --data"
        )
    if args.data is None and reads_file:
        args.data = "data/shapes.npz"
    if args.betas is None:
        args.betas = list(STUDIES[args.dataset].betas)
    if args.smoke:
        args.bench_batches, args.bench_steps = [8, 16], min(args.bench_steps, 5)
    problems = [f"--{k} must be > 0" for k in ("budget_min", "bench_steps", "max_archives",
                "archive_mib") if not getattr(args, k) > 0]  # fmt: skip
    problems += [f"--betas {b:g}: β must be ≥ 0" for b in args.betas if b < 0]
    if problems:
        p.error("; ".join(problems))
    return args


def load_data(args):
    """The sampler of --dataset (and --data), or exit 2 with one line that names the file (or
    the dataset) and its fix (a missing file, a damaged one, or an .npz that is not a render of
    blender/render_shapes.py)."""
    from sbd_vae.renders import DatasetError
    from training import make_dataset

    try:
        return make_dataset(_preset(args))
    except (OSError, DatasetError, ValueError) as e:
        what = f"--data {args.data}" if args.data is not None else f"--dataset {args.dataset}"
        print(f"gpu_study.py: error: {what}: {e}", file=sys.stderr)
        raise SystemExit(2) from None


def main(argv=None) -> dict:
    args = parse(argv)
    from sbd_vae import backend, rundir
    from sbd_vae.hardware import gpu_compute_capabilities, machine

    if backend.name() != "jax":
        raise SystemExit("gpu_study.py runs on JAX: set KERAS_BACKEND=jax")
    data = load_data(args)  # before the devices are touched: a bad --data costs no device time
    import jax

    devices = [str(d) for d in jax.devices()]
    where = ", ".join(sorted(set(d.device_kind for d in jax.devices()))) + f" ({machine()})"
    work = Path(args.pack)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    rows = throughput(args, data)
    rundir.write_json(work / "throughput.json", {"device": where, "rows": rows})
    throughput_figure(rows, work / "throughput.png", where, study(args).preset)
    results = train_grid(args, rows)
    record = dict(
        command=" ".join(sys.argv), device=where, devices=devices, cuda_cc=[
            list(c) for c in gpu_compute_capabilities()], versions=backend.versions(),
        dataset=args.dataset, preset=study(args).preset, full_steps=study(args).full_steps,
        runs=results, throughput=rows,
        wall_seconds=time.time() - t0, smoke=args.smoke,
        config=asdict(replace(_preset(args), beta=0.0)),
    )  # fmt: skip
    rundir.write_json(work / "study.json", record)
    manifest = pack_and_index(files_to_pack(args, results, work), work, args.max_archives,
                              args.archive_mib, results)  # fmt: skip
    print(json.dumps({k: manifest[k] for k in ("archives", "left_out")}, indent=1))
    return manifest


if __name__ == "__main__":
    main()
