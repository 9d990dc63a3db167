"""The latent space of a trained spatial-broadcast β-VAE: figures, disentanglement metrics, and the
score-vs-β report of a sweep.

    python latentSpace.py evaluate runs/RUN [--protocol quick|study] [--seed 0]
    python latentSpace.py evaluate runs/RUN --all-snapshots     # and the scores over training
    python latentSpace.py evaluate runs/RUN --steps 4000 8000   # of these snapshots only
    python latentSpace.py report runs/SWEEP [--protocol quick|study]
    python latentSpace.py figures runs/SWEEP --out img

``evaluate`` scores one finished run and writes ``<run>/metrics.json`` and ``<run>/figures/``;
with ``--steps``/``--all-snapshots`` it also scores the weights the run kept at its
``--snapshot_steps`` (``metrics.json["snapshots"]``: scores over training);
``report`` evaluates every finished run of a sweep that has no metrics of that protocol yet and
writes ``<sweep>/report/`` (scores.csv, score-vs-β plots, index.md); ``figures`` copies the README
figure set (the lowest β against the β nearest the seed's β=102) into ``img/``.

Metrics, one function per paper: BetaVAE (Higgins et al. 2017), FactorVAE (Kim & Mnih 2018), MIG
(Chen et al. 2018), DCI (Eastwood & Williams 2018), SAP (Kumar et al. 2018), Modularity and
Explicitness (Ridgeway & Mozer 2018), IRS (Suter et al. 2019), and the scores that need no ground
truth (Gaussian total and Wasserstein correlation, mutual-information score; Locatello et al.
2019), with the sample counts of disentanglement_lib's unsupervised study (Locatello et al. 2019)
for ``protocol="study"``. ``protocol="quick"`` shrinks
the counts for CPU; its numbers are labelled "quick" wherever they are shown and are not
comparable to published ones.

This module loads runs (``load_run``: the run's ``BetaVAE`` and the sampler of its data)
and re-exports, in ``__all__``, what users call from sbd_vae/: the metrics (sbd_vae/metrics/),
the batched encoder (sbd_vae/encoding.py) and the figures (sbd_vae/figures.py). Scoring a loaded
run is sbd_vae/evaluation.py, a sweep's report sbd_vae/report.py.

Nothing is computed, and TensorFlow is not imported, when this module is imported.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

import training
from sbd_vae import baselines, datasets, evaluation, rundir
from sbd_vae import report as sweep_report
from sbd_vae.config import load_config, resume_command
from sbd_vae.encoding import ACTIVE_VAR, active_units, decode, encode, kl_per_latent, unit_activity
from sbd_vae.evaluation import read_metrics
from sbd_vae.figures import (
    plot_factor_response,
    plot_kl_per_latent,
    plot_latent_geometry,
    plot_reconstructions,
    plot_traversals,
    traversal_gif,
)
from sbd_vae.metrics import (
    beta_vae_score,
    compute_metrics,
    dci,
    factor_vae_score,
    irs,
    mig,
    modularity_explicitness,
    sap,
    unsupervised_scores,
)
from sbd_vae.protocol import PROTOCOLS, check_protocol
from sbd_vae.rundir import RunDirError

__all__ = [
    # one run
    "load_run", "check_sampler", "evaluate", "read_metrics", "snapshot_model",
    # a sweep
    "report", "figures",
    # interactive (ipywidgets): sliders per latent
    "explorer",
    # metrics
    "PROTOCOLS", "compute_metrics", "mig", "dci", "sap", "modularity_explicitness",
    "beta_vae_score", "factor_vae_score", "irs", "unsupervised_scores",
    # encodings
    "encode", "decode", "kl_per_latent", "unit_activity", "active_units", "ACTIVE_VAR",
    # figures
    "plot_traversals", "traversal_gif", "plot_reconstructions", "plot_factor_response",
    "plot_latent_geometry", "plot_kl_per_latent",
    # the CLI
    "main",
]  # fmt: skip


# ----------------------------------------------------------------------------- one run
def load_run(run_dir, sampler=None):
    """(model, cfg, sampler) of a finished run directory.

    ``cfg`` is the run's TrainConfig (config.json), ``model`` the final ``BetaVAE`` (model.keras,
    loaded without its optimiser) and ``sampler`` the sampler of the run's data
    (``training.make_dataset`` of config.json: its --dataset's entry of the registry,
    ``sbd_vae.datasets``), or the given ``sampler`` after checking that it matches
    (``check_sampler``).
    Raises RunDirError naming the file for a missing run, an unfinished run (no model.keras) and
    a corrupt model file.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunDirError(f"{run_dir}: no such run directory")
    cfg = load_config(run_dir)
    path = run_dir / "model.keras"
    if not path.exists():
        raise RunDirError(
            f"{run_dir}: the run is unfinished (no model.keras); resume it with "
            f"`{resume_command(cfg)} --out {run_dir}`"
        )
    import keras

    import variationAutoEncoder  # noqa: F401  registers BetaVAE & co. for load_model

    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as e:  # a truncated zip, a bad config, missing weights: all the same to us
        raise RunDirError(
            f"{path}: model file is corrupt or unreadable ({type(e).__name__}: {str(e)[:200]}); "
            f"re-save it from the last checkpoint: delete it and {run_dir / 'summary.json'}, then run "
            f"`{resume_command(cfg)} --out {run_dir}` (add --fresh to retrain from scratch)"
        ) from None
    if (model.image_size, model.latent_dim) != (cfg.image_size, cfg.latent_dim):
        raise RunDirError(
            f"{path}: model has image_size={model.image_size}, latent_dim={model.latent_dim} but "
            f"{run_dir / 'config.json'} says {cfg.image_size}, {cfg.latent_dim}"
        )
    if sampler is None:
        sampler = training.make_dataset(cfg)
        check_sampler(sampler, cfg, run_dir, reference=sampler)
    else:
        check_sampler(sampler, cfg, run_dir)
    return model, cfg, sampler


def _same(a, b) -> bool:
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-9)
    return a == b


def check_sampler(sampler, cfg, run_dir=None, reference=None) -> None:
    """Raises ValueError unless ``sampler`` produces the data the run was trained on.

    Only the sampler contract is used (``sbd_vae.datasets.GroundTruthSampler``). Compared: the
    dataset (the sampler's ``name`` against config.json's --dataset); the images' size; every key
    of ``sampler.config()`` named like a TrainConfig field the dataset reads (image_size, and for
    shapes scale_range and pos_range) against the run's config.json; and every key of the data
    config the run recorded (summary.json's ``data_config``, else ``reference``'s, else that of
    ``training.make_dataset(cfg)`` where it can be built) but its file path, with the factor
    names and sizes, against the sampler's (``datasets.data_config``).

    ``reference is sampler`` means the sampler was built from config.json (``load_run``): a
    mismatch then says that config.json (or the data file it names) no longer gives the data
    the model trained on, e.g. a model trained on one dataset evaluated on another.
    """
    where = f"{run_dir}/config.json" if run_dir else "the run's config"
    has_config = hasattr(sampler, "config")
    got = datasets.data_config(sampler)
    diff = []
    name = getattr(sampler, "name", None) or got.get("name")
    if name is not None and name != cfg.dataset:
        diff.append(f"dataset: sampler {name!r}, run {cfg.dataset!r} (--dataset)")
    got.setdefault("name", name)  # shapes' config() leaves its name out
    reads = datasets.entry(cfg.dataset).reads if cfg.dataset in datasets.DATASETS else ()
    want = {k: getattr(cfg, k) for k in reads if k in got}
    recorded, source = None, "the sampler the run's config.json builds"
    if run_dir is not None and (Path(run_dir) / "summary.json").exists():
        summary = rundir.read_json(Path(run_dir) / "summary.json", "run summary")
        recorded, source = summary.get("data_config"), f"{run_dir}/summary.json"
    if recorded is None and reference is not None and hasattr(reference, "config"):
        recorded = datasets.data_config(reference)
    elif recorded is None:
        try:
            recorded = datasets.data_config(training.make_dataset(cfg))
        except (OSError, ValueError):  # the run's data cannot be built here: compare the rest
            recorded = None
    for key, value in (recorded or {}).items():
        if key in RECORD_UNCHECKED or (key not in got and not has_config):
            continue
        want[key] = value
    diff += [f"{k}: sampler {got.get(k)!r}, run {v!r}" for k, v in want.items()
             if not _same(got.get(k), v)]  # fmt: skip
    probe = np.zeros((1, len(sampler.factor_sizes)), np.int64)
    shape = tuple(np.asarray(sampler.images_from_factors(probe)).shape[1:])
    if shape != (cfg.image_size, cfg.image_size, 1):
        diff.append(f"image shape: sampler {shape}, run {(cfg.image_size, cfg.image_size, 1)}")
    if not diff:
        return
    if reference is sampler and run_dir is not None:  # built from config.json: it changed
        trained = (recorded or {}).get("name")
        raise ValueError(
            f"{where} no longer describes the data this model was trained on ({source}"
            + (f": --dataset {trained}" if trained else "")
            + "), so its scores would be on other data:\n  "
            + "\n  ".join(diff)
            + f"\nrestore {where}'s --dataset and data fields (and the data file they name) to "
            "those of the training run; to score on other data, train a run on it"
        )
    raise ValueError(
        f"the sampler does not match the run's data config ({where}):\n  " + "\n  ".join(diff)
        + "\nbuild the sampler with training.make_dataset(training.load_config(RUN)), or leave "
        "sampler out to use the run's own data"
    )  # fmt: skip


# Keys of a recorded data config that need not match: where the file was (the same render may
# be moved), and the name shown with the scores.
RECORD_UNCHECKED = ("path", "display_name")


def snapshot_model(run_dir, cfg=None):
    """``model_at(step)``: the run's model with the weights of ``<run>/snapshots/snap-<step>.npz``
    (``--snapshot_steps``), built once from config.json and re-loaded per step; RunDirError naming
    the steps there are when a step has no snapshot."""
    cfg = cfg or load_config(run_dir)
    snaps = rundir.list_snapshots(run_dir)
    model = training.build_model(cfg)

    def model_at(step: int):
        if int(step) not in snaps:
            have = " ".join(map(str, snaps)) or "none (train with --snapshot_steps)"
            raise RunDirError(f"{run_dir}: no snapshot at step {step}; snapshots: {have}")
        rundir.load_snapshot(snaps[int(step)], model)
        return model

    return model_at


def evaluate(run_dir, protocol="study", seed=0, progress=True, sampler=None, figures=True,
             metric_options=None, steps=None, all_snapshots=False) -> dict:  # fmt: skip
    """Scores one finished run and writes ``<run>/metrics.json`` (and ``<run>/figures/``).

    ``load_run`` (with ``sampler``, if given), then ``sbd_vae.evaluation.score_run``: every metric
    of the suite with ``numpy.random.RandomState(seed)`` on posterior means; reconstruction error,
    its excess over the data's entropy floor, KL per latent and active units (Burda et al. 2016)
    on ``PROTOCOLS[protocol]["eval_samples"]`` held-out samples; per-factor scores; the figures
    (unless ``figures=False``). The same (run, protocol, seed) gives the same numbers.
    ``metric_options`` are keyword options of ``compute_metrics`` (``metrics``, ``chunk``,
    ``dci_backend``), recorded in metrics.json.

    Scores over training: ``steps`` (a list) or ``all_snapshots=True`` also scores the weights
    kept at those ``--snapshot_steps`` (``<run>/snapshots/``) with the same protocol and seed, into
    metrics.json["snapshots"]["steps"][step] (``evaluation.score_snapshots``; steps scored before
    are kept). Returns the dict written to metrics.json.
    """
    check_protocol(protocol)
    t0 = time.perf_counter()
    model, cfg, sampler = load_run(run_dir, sampler)
    if all_snapshots:
        steps = list(rundir.list_snapshots(run_dir))
    model_at = None
    if steps:
        model_at = snapshot_model(run_dir, cfg)
        for step in steps:  # a missing step fails now, before minutes of scoring
            if int(step) not in rundir.list_snapshots(run_dir):
                model_at(step)
    out = evaluation.score_run(run_dir, model, cfg, sampler, protocol, seed, progress, figures,
                               metric_options, t_load=t0)  # fmt: skip
    if model_at is not None:
        final, known = out.get("step"), {}
        if final is not None and int(final) in map(int, steps):
            if evaluation.same_weights(model, model_at(int(final))):  # the final weights
                known[int(final)] = evaluation.record_of_final(out, cfg.batch_size)
        out["snapshots"] = evaluation.score_snapshots(run_dir, model_at, cfg, sampler, steps,
                                                      protocol, seed, progress, metric_options,
                                                      known=known)  # fmt: skip
    return out


# ----------------------------------------------------------------------------- sweeps
def _noise_baselines(run_dir, protocol, seed, cache=None, metric_options=None) -> dict:
    """The report's calibration numbers (``sbd_vae.baselines.noise_baselines``): every score of
    a Gaussian and a uniform noise code of the run's latent dimension on the run's data
    (``training.make_dataset`` of its config.json, made only when ``cache`` lacks the numbers;
    the key names the data by metrics.json's "data_config")."""
    cfg = load_config(run_dir)
    m = read_metrics(run_dir) or {}
    return baselines.noise_baselines(lambda: training.make_dataset(cfg), cfg.latent_dim, protocol,
                                     seed, cache=cache, metric_options=metric_options,
                                     data_config=m.get("data_config"))  # fmt: skip


def report(sweep_dir, protocol="study", seed=0, progress=True, metric_options=None,
           all_snapshots=False) -> Path:  # fmt: skip
    """Evaluates what is missing in a sweep and writes ``<sweep>/report/``; returns its path.

    report/scores.csv         one row per (β, seed): every metric, per-factor scores,
                              reconstruction, active units, KL per latent, convergence, machine
    report/scores_vs_beta.png every metric against β (β_norm on top): mean ± sample std over seeds
    report/factors_vs_beta.png per-factor MIG gap and informativeness against β
    report/recon_vs_beta.png, report/active_units_vs_beta.png
    report/index.md           the tables (mean ± std over seeds), Welch tests between β, each
                              run's convergence, the plots, and per β the traversals, factor
                              response, geometry and training GIF of the run (relative links)
    Unfinished runs are skipped and listed (stdout and index.md); a sweep with no finished run
    still gets an index.md saying so. ``protocol="quick"`` is labelled in every plot and table.
    ``all_snapshots=True`` also scores every snapshot the runs kept (``--snapshot_steps``) and adds
    the scores over training: report/scores_over_training.{csv,png}, factors_over_training.png
    and index.md's "Scores over training" (settled or not, the paired climb, the β trend per step).
    index.md's "Calibration" gives every score of a random code on the same data (Gaussian and
    uniform noise, ``_noise_baselines``; cached in report/baselines.json).
    (sbd_vae/report.py writes it all; runs are scored with ``evaluate``.)
    """
    return sweep_report.report(sweep_dir, evaluate, protocol, seed, progress, metric_options,
                               all_snapshots, baselines_fn=_noise_baselines)  # fmt: skip


def figures(
    sweep_dir, out="img", protocol=None, seed=0, progress=True, metric_options=None
) -> dict:
    """The README figure set of one sweep, from its report: the lowest β against the β nearest the
    seed's β=102 in β_norm, from each β's lowest seed, into ``out`` (see
    ``sbd_vae.report.readme_figures``). ``protocol=None`` reuses the protocol of the metrics
    already in the sweep (quick if there are none). Returns {file name: path}."""
    return sweep_report.readme_figures(sweep_dir, evaluate, out, protocol, seed, progress,
                                       metric_options, baselines_fn=_noise_baselines)  # fmt: skip


# ----------------------------------------------------------------------------- interactive
def explorer(run_dir, sweep_dir=None, factors=None, seed=0):
    """The interactive latent explorer of a finished run, for a notebook (ipywidgets): one slider
    per latent, active latents first with their KL beside them, the decoded image following the
    sliders, a reset button back to the posterior mean, and the input image picked by a factor
    combination of the run's data (``sbd_vae.explorer``; latency at 128²: its docstring).

    ``sweep_dir``: a dropdown over every finished run of that sweep (``run_dir`` shown first;
    added to the list when it is not one of them). ``factors``: the first input's grid indices
    (the middle of each factor's grid by default). ``seed``: the draw of the images whose KL and
    activity label the sliders (latent_space.ipynb's SEED). Returns the ``RunExplorer``; display
    it (a notebook draws it as the cell's value)."""
    from sbd_vae.explorer import RunExplorer
    from sbd_vae.widgets import sweep_choices

    run_dir = Path(run_dir)
    choices = sweep_choices(sweep_dir) if sweep_dir else []
    same = [p for _, p in choices if p.resolve() == run_dir.resolve()]
    if not same:
        choices = [(run_dir.name, run_dir), *choices]
    return RunExplorer(choices, load_run, run=same[0] if same else run_dir, factors=factors,
                       seed=seed)  # fmt: skip


# ----------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    """The CLI's parser (``main`` parses with it; tests read every flag's help from it)."""
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(
        dest="command", required=True, help="evaluate | report | figures (each has --help)"
    )
    pe = sub.add_parser("evaluate", help="score one finished run → RUN/metrics.json, RUN/figures/")
    pe.add_argument("run", help="a finished run directory of training.py train")
    pe.add_argument(
        "--steps",
        type=int,
        nargs="+",
        default=None,
        metavar="STEP",
        help="also score the weights the run kept at these training steps (its --snapshot_steps) "
        "[default: none]",
    )
    pe.add_argument(
        "--all-snapshots",
        dest="all_snapshots",
        action="store_true",
        help="also score every snapshot the run kept (scores over training) [off]",
    )
    pr = sub.add_parser("report", help="evaluate a sweep's runs → SWEEP/report/")
    pr.add_argument("sweep", help="a sweep directory of training.py sweep (with sweep.json)")
    pr.add_argument(
        "--all-snapshots",
        dest="all_snapshots",
        action="store_true",
        help="also score every snapshot of every run (scores over training) [off]",
    )
    pf = sub.add_parser("figures", help="README figures of a sweep → --out")
    pf.add_argument("sweep", help="a sweep directory of training.py sweep (with sweep.json)")
    pf.add_argument("--out", default="img", help="folder the figures are written to [default img]")
    for q in (pe, pr, pf):
        default = "the protocol of the sweep's metrics, quick if none" if q is pf else "study"
        q.add_argument("--protocol", choices=sorted(PROTOCOLS), default=None if q is pf else "study",
                       help="metric sample counts: study (disentanglement_lib's unsupervised "
                       "study) | quick (shrunk for a CPU, labelled, not comparable to published "
                       f"scores) [default {default}]")  # fmt: skip
        q.add_argument("--seed", type=int, default=0, help="seed of the metrics' RNG [default 0]")
        q.add_argument("--quiet", action="store_true", help="no progress output [off]")
    return p


def main(argv=None) -> int:
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before anything imports TensorFlow
    p = build_parser()
    args = p.parse_args(argv)
    try:
        from sbd_vae.backend import check_requested

        check_requested()  # an unusable KERAS_BACKEND: one line with the fix, not a traceback
        if args.command == "evaluate":
            evaluate(
                args.run,
                args.protocol,
                args.seed,
                progress=not args.quiet,
                steps=args.steps,
                all_snapshots=args.all_snapshots,
            )
        elif args.command == "report":
            path = report(
                args.sweep,
                args.protocol,
                args.seed,
                progress=not args.quiet,
                all_snapshots=args.all_snapshots,
            )
            print(path / "index.md")
        else:
            figures(args.sweep, args.out, args.protocol, args.seed, progress=not args.quiet)
    except (RunDirError, ValueError, FileNotFoundError, NotADirectoryError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
