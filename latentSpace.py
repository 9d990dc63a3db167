"""The latent space of a trained spatial-broadcast β-VAE: figures, disentanglement metrics, and the
score-vs-β report of a sweep.

    python latentSpace.py evaluate runs/RUN [--protocol quick|study] [--seed 0]
    python latentSpace.py report runs/SWEEP [--protocol quick|study]
    python latentSpace.py figures runs/SWEEP --out img

``evaluate`` scores one finished run and writes ``<run>/metrics.json`` and ``<run>/figures/``;
``report`` evaluates every finished run of a sweep that has no metrics of that protocol yet and
writes ``<sweep>/report/`` (scores.csv, score-vs-β plots, index.md); ``figures`` copies the README
figure set (β=1 and the best-disentangling β) into ``img/``.

Metrics (re-exported from metrics.py, one function per paper): BetaVAE (Higgins et al. 2017),
FactorVAE (Kim & Mnih 2018), MIG (Chen et al. 2018), DCI (Eastwood & Williams 2018), SAP (Kumar
et al. 2018), Modularity and Explicitness (Ridgeway & Mozer 2018), with the sample counts of
disentanglement_lib's unsupervised study (Locatello et al. 2019) for ``protocol="study"``.
``protocol="quick"`` shrinks the counts for CPU; its numbers are labelled "quick" wherever they are
shown and are not comparable to published ones. The figures live in figures.py (re-exported).

Nothing is computed, and TensorFlow is not imported, when this module is imported.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import sys
import time
from pathlib import Path

import numpy as np

import rundir
from figures import (
    ACTIVE_KL,
    EncodeFn,
    decode,
    encode,
    factor_response,
    kl_per_latent,
    latent_geometry,
    make_encode_fn,
    pick_position_latents,
    plot_factor_response,
    plot_kl_per_latent,
    plot_latent_geometry,
    plot_reconstructions,
    plot_traversals,
    plot_vs_beta,
    traversal_gif,
    traversal_images,
)
from metrics import (
    PROTOCOLS,
    beta_vae_score,
    compute_metrics,
    dci,
    factor_vae_score,
    mig,
    modularity_explicitness,
    sap,
)
from rundir import RunDirError

# Held-out samples for reconstruction error and active units, and the figures' sample sizes.
EVAL_SAMPLES = {"quick": 500, "study": 2000}
RESPONSE_BASES = {"quick": 8, "study": 32}  # factor-response plot: random bases averaged over
GEOMETRY_BASES = 2  # latent-geometry plot: one panel per base
QUICK_NOTE = "reduced sample counts for CPU, not comparable to published numbers"
FIGURES = {  # <run>/figures/<file>: what evaluate() writes
    "traversals": "traversals.png",
    "traversals_gif": "traversals.gif",
    "reconstructions": "reconstructions.png",
    "factor_response": "factor_response.png",
    "geometry": "geometry.png",
    "kl": "kl.png",
}


# ----------------------------------------------------------------------------- loading
def _resume_command(cfg) -> str:
    """The training command that resumes ``cfg``'s run: the preset plus every changed field."""
    from dataclasses import fields

    import training

    base = training.PRESETS.get(cfg.preset, training.TrainConfig())
    args = [f"--preset {cfg.preset}"]
    for f in fields(cfg):
        v, b = getattr(cfg, f.name), getattr(base, f.name)
        if f.name == "preset" or (tuple(v) if isinstance(v, list) else v) == b:
            continue
        args.append(
            f"--{f.name} "
            + (" ".join(f"{x:g}" for x in v) if isinstance(v, tuple | list) else f"{v}")
        )
    return "python training.py train " + " ".join(args)


def load_run(run_dir, sampler=None):
    """(model, cfg, sampler) of a finished run directory.

    ``cfg`` is the run's TrainConfig (config.json), ``model`` the final ``BetaVAE`` (model.keras,
    loaded without its optimiser) and ``sampler`` the ``dataset.ShapesDataset`` of the run's data
    config, or the given ``sampler`` after checking that it matches (``check_sampler``).
    Raises RunDirError naming the file for a missing run, an unfinished run (no model.keras) and
    a corrupt model file.
    """
    import training

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunDirError(f"{run_dir}: no such run directory")
    cfg = training.load_config(run_dir)
    path = run_dir / "model.keras"
    if not path.exists():
        raise RunDirError(
            f"{run_dir}: the run is unfinished (no model.keras); resume it with "
            f"`{_resume_command(cfg)} --out {run_dir}`"
        )
    import keras

    import variationAutoEncoder  # noqa: F401  registers BetaVAE & co. for load_model

    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as e:  # a truncated zip, a bad config, missing weights: all the same to us
        raise RunDirError(
            f"{path}: model file is corrupt or unreadable ({type(e).__name__}: {str(e)[:200]}); "
            f"re-save it from the last checkpoint: delete it and {run_dir / 'summary.json'}, then run "
            f"`{_resume_command(cfg)} --out {run_dir}` (add --fresh to retrain from scratch)"
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

    Compared: the images' size; image_size, scale_range and pos_range against the run's
    config.json; and, where the run's data file can be opened, the factor names, factor sizes,
    evaluation grid and render-config hash against ``reference`` (default
    ``training.make_dataset(cfg)``). A data config recorded in summary.json (``data_config``)
    takes precedence over both.
    """
    import training

    where = f"{run_dir}/config.json" if run_dir else "the run's config"
    fix = "build the sampler with training.make_dataset(training.load_config(RUN))"
    got = sampler.config() if hasattr(sampler, "config") else {}
    got = dict(got, factor_names=list(sampler.factor_names),
               factor_sizes=[int(v) for v in sampler.factor_sizes])  # fmt: skip
    want = {"image_size": cfg.image_size, "scale_range": list(cfg.scale_range),
            "pos_range": list(cfg.pos_range)}  # fmt: skip
    recorded = None
    if run_dir is not None and (Path(run_dir) / "summary.json").exists():
        summary = rundir.read_json(Path(run_dir) / "summary.json", "run summary")
        recorded = summary.get("data_config")
    if recorded is None and reference is not None and hasattr(reference, "config"):
        recorded = reference.config()
    elif recorded is None and Path(cfg.data_path).exists():
        recorded = training.make_dataset(cfg).config()
    if recorded:
        for key in ("num_scales", "num_positions", "factor_names", "factor_sizes",
                    "render_config_hash"):  # fmt: skip
            if key in recorded:
                want[key] = recorded[key]
    diff = [f"{k}: sampler {got.get(k)!r}, run {v!r}" for k, v in want.items()
            if k in got and not _same(got[k], v)]  # fmt: skip
    probe = np.zeros((1, len(sampler.factor_sizes)), np.int64)
    shape = tuple(np.asarray(sampler.images_from_factors(probe)).shape[1:])
    if shape != (cfg.image_size, cfg.image_size, 1):
        diff.append(f"image shape: sampler {shape}, run {(cfg.image_size, cfg.image_size, 1)}")
    if diff:
        raise ValueError(
            f"the sampler does not match the run's data config ({where}):\n  "
            + "\n  ".join(diff)
            + f"\n{fix}"
        )


# ----------------------------------------------------------------------------- evaluation
def _showcase_factors(sampler) -> np.ndarray:
    """(1, K): the middle of every factor's grid, first category of categorical ones."""
    return np.array([[n // 2 if i else 0 for i, n in enumerate(sampler.factor_sizes)]], np.int64)


def reconstruction_error(model, images, batch: int = 256) -> dict:
    """Mean −log p(x|z=μ) per image (nats, the training likelihood, summed over pixels) and the mean
    squared pixel error of decode(μ), on ``images`` (N, S, S, 1). Also returns the encodings."""
    mean, logvar = encode(model, images, batch)  # (N, D) each
    nll, sq = [], []
    for i in range(0, len(images), batch):
        x = np.asarray(images[i : i + batch], np.float32)
        logits = decode(model, mean[i : i + batch], batch, logits=True)  # (b, S, S, 1)
        nll.append(np.asarray(model.reconstruction_loss(x, logits)))  # (b,)
        sq.append(((x - 1.0 / (1.0 + np.exp(-logits))) ** 2).mean(axis=(1, 2, 3)))
    return dict(recon=float(np.concatenate(nll).mean()), recon_mse=float(np.concatenate(sq).mean()),
                mean=mean, logvar=logvar)  # fmt: skip


def _title(run_dir, cfg, protocol=None) -> str:
    bn = cfg.beta_norm
    tag = " [quick]" if protocol == "quick" else ""
    return f"{Path(run_dir).name}: β={cfg.beta:g} (β_norm={bn:.3g}){tag}"


def write_run_figures(run_dir, model, cfg, sampler, kl, seed=0, protocol="quick", progress=False):
    """The run's figures into ``<run>/figures/`` (see FIGURES); returns {name: path, ...} plus the
    geometry info under "geometry_info". ``kl`` (D,) orders and labels the traversals."""
    out = Path(run_dir) / "figures"
    title = _title(run_dir, cfg, protocol)
    image = sampler.images_from_factors(_showcase_factors(sampler))[0]  # (S, S, 1)
    tr = traversal_images(model, image, kl=kl)  # decoded once for the PNG and the GIF
    paths = {
        "traversals": plot_traversals(model, image, out / FIGURES["traversals"], title=title,
                                      traversal=tr),
        "traversals_gif": traversal_gif(model, image, out / FIGURES["traversals_gif"], title=title,
                                        traversal=tr),
    }  # fmt: skip
    rng = np.random.RandomState([seed, 2])
    recon_images = sampler.images_from_factors(sampler.sample_factors(8, rng))
    paths["reconstructions"] = plot_reconstructions(model, recon_images,
                                                    out / FIGURES["reconstructions"], title)  # fmt: skip
    paths["factor_response"] = plot_factor_response(
        model, sampler, out / FIGURES["factor_response"], n_bases=RESPONSE_BASES.get(protocol, 8),
        rng=np.random.RandomState([seed, 3]), kl=kl, title=title, progress=progress,
    )  # fmt: skip
    paths["kl"] = plot_kl_per_latent(kl, out / FIGURES["kl"], title=title)
    names = list(sampler.factor_names)
    if model.latent_dim >= 2 and "pos_x" in names and "pos_y" in names:
        paths["geometry"], g = plot_latent_geometry(
            model, sampler, out / FIGURES["geometry"], n_bases=GEOMETRY_BASES,
            rng=np.random.RandomState([seed, 4]), title=title, return_info=True,
        )  # fmt: skip
        paths["geometry_info"] = {
            "latent_x": g["latents"][0], "latent_y": g["latents"][1], "corr_x": g["corr"][0],
            "corr_y": g["corr"][1], "r2_x": g["r2"][0], "r2_y": g["r2"][1],
        }  # fmt: skip
    else:  # one latent, or no position factors: there is no position plane to draw
        paths["geometry_info"] = None
    return paths


# Headline metrics first in tables and plots; every other float that compute_metrics returns
# (train-split variants, FactorVAE's number of active dims) follows in alphabetical order.
HEADLINE = (
    "mig", "dci_disentanglement", "dci_completeness", "dci_informativeness_test", "sap_discrete",
    "sap_continuous", "modularity", "explicitness_test", "beta_vae_eval_accuracy",
    "factor_vae_eval_accuracy",
)  # fmt: skip


def metric_order(names) -> list[str]:
    """``names`` with the HEADLINE metrics first (in that order), the rest alphabetically."""
    names = set(names)
    return [n for n in HEADLINE if n in names] + sorted(names - set(HEADLINE))


def _split_scores(result: dict, protocol: str) -> tuple[dict, dict, dict]:
    """compute_metrics' flat dict → (scores {metric: float}, counts {name: number}, other).

    Counts are the protocol's parameters (PROTOCOLS[protocol]) and the ``num_images_*`` totals;
    ``time_*`` entries and strings go to ``other``; every remaining number is a metric.
    """
    params = set(PROTOCOLS.get(protocol, {}))
    scores, counts, other = {}, {}, {}
    for k, v in result.items():
        if k in params or k.startswith("num_images"):
            counts[k] = v
        elif k.startswith("time_") or k == "protocol" or isinstance(v, str | bool | dict | list):
            other[k] = v
        elif isinstance(v, int | float | np.floating | np.integer):
            scores[k] = float(v)
        else:
            other[k] = v
    return scores, counts, other


def evaluate(run_dir, protocol="study", seed=0, progress=True, sampler=None, figures=True,
             metric_options=None) -> dict:  # fmt: skip
    """Scores one finished run and writes ``<run>/metrics.json`` (and ``<run>/figures/``).

    - ``compute_metrics`` (metrics.py) with ``numpy.random.RandomState(seed)``: every metric of the
      suite, on posterior means, images encoded in batches;
    - reconstruction error (−log p(x|μ) in nats per image, and the mean squared pixel error) and the
      KL of every latent on ``EVAL_SAMPLES[protocol]`` held-out grid samples (an independent
      stream of the same seed); active units = latents with mean KL > 0.01 nats;
    - the figures of ``write_run_figures`` (unless ``figures=False``).
    The same (run, protocol, seed) gives the same numbers. ``metric_options`` are keyword options
    of ``compute_metrics`` (``chunk``, ``dci_backend``); they are recorded in metrics.json.
    Returns the dict written to metrics.json.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"--protocol {protocol!r}: choose one of {sorted(PROTOCOLS)}")
    run_dir = Path(run_dir)
    t0 = time.perf_counter()
    model, cfg, sampler = load_run(run_dir, sampler)
    encode_fn = make_encode_fn(model)
    t1 = time.perf_counter()
    result = compute_metrics(sampler, encode_fn, np.random.RandomState(seed), protocol=protocol,
                             progress=progress, **(metric_options or {}))  # fmt: skip
    t2 = time.perf_counter()
    scores, counts, other = _split_scores(result, protocol)
    n_eval = EVAL_SAMPLES[protocol] if protocol in EVAL_SAMPLES else EVAL_SAMPLES["study"]
    held_out = sampler.images_from_factors(
        sampler.sample_factors(n_eval, np.random.RandomState([seed, 1]))
    )  # (n_eval, S, S, 1): a stream independent of the metrics'
    rec = reconstruction_error(model, held_out)
    kl = kl_per_latent(rec["mean"], rec["logvar"]).mean(axis=0)  # (D,)
    t3 = time.perf_counter()
    summary = {}
    if (run_dir / "summary.json").exists():
        summary = rundir.read_json(run_dir / "summary.json", "run summary")
    out = {
        "run": run_dir.name,
        "protocol": protocol,
        "protocol_note": f"quick: {QUICK_NOTE}"
        if protocol == "quick"
        else "disentanglement_lib study counts",
        "seed": int(seed),
        "metric_options": metric_options or {},
        "beta": cfg.beta,
        "beta_norm": cfg.beta_norm,
        "train_seed": cfg.seed,
        "step": summary.get("step"),
        "latent_dim": cfg.latent_dim,
        "image_size": cfg.image_size,
        **scores,  # every metric, a float each (names listed in "metric_names")
        "metric_names": metric_order(scores),
        "counts": counts,
        "recon": rec["recon"],
        "recon_mse": rec["recon_mse"],
        "recon_samples": n_eval,
        "active_units": int((kl > ACTIVE_KL).sum()),
        "active_threshold": ACTIVE_KL,
        "kl_per_latent": [float(v) for v in kl],
        "kl_total": float(kl.sum()),
        "encoder_images_metrics": encode_fn.images,  # images through the encoder for the metrics
        "data_config": sampler.config() if hasattr(sampler, "config") else None,
        "extra": {k: v for k, v in other.items() if k != "protocol"},
    }
    if figures:
        paths = write_run_figures(run_dir, model, cfg, sampler, kl, seed, protocol, progress)
        out["geometry"] = paths.pop("geometry_info")
        out["figures"] = {k: str(Path(p).relative_to(run_dir)) for k, p in paths.items()}
    t4 = time.perf_counter()
    out["elapsed_s"] = {"load": t1 - t0, "metrics": t2 - t1, "recon_kl": t3 - t2,
                        "figures": t4 - t3, "total": t4 - t0}  # fmt: skip
    rundir.write_json(run_dir / "metrics.json", out)
    if progress:
        head = "  ".join(f"{k}={scores[k]:.3f}" for k in metric_order(scores) if k in HEADLINE)
        print(f"[evaluate] {run_dir}: {protocol} seed={seed}  {head}  recon={rec['recon']:.1f}  "
              f"active={out['active_units']}/{cfg.latent_dim}  ({t4 - t0:.0f}s)")  # fmt: skip
    return out


def read_metrics(run_dir) -> dict | None:
    """``<run>/metrics.json`` or None if absent; RunDirError naming the file if it is corrupt."""
    path = Path(run_dir) / "metrics.json"
    if not path.exists():
        return None
    m = rundir.read_json(
        path, "metrics file", f"delete it and re-run `python latentSpace.py evaluate {run_dir}`"
    )
    names = m.get("metric_names") if isinstance(m, dict) else None
    if not isinstance(names, list) or "protocol" not in m or any(n not in m for n in names):
        raise RunDirError(f"{path}: metrics file is corrupt (no protocol, metric_names or scores); delete it and re-run "
                          f"`python latentSpace.py evaluate {run_dir}`")  # fmt: skip
    return m


# ----------------------------------------------------------------------------- sweeps
def sweep_runs(sweep_dir) -> list[dict]:
    """Every run of a sweep: sweep.json's entries plus run directories found beside them.

    Each dict has name, path, beta, beta_norm, seed, finished (summary.json and model.keras exist),
    status (sweep.json's, or "done"/"unfinished") and error (if the sweep recorded one).
    """
    import training

    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise RunDirError(f"{sweep_dir}: no such sweep directory")
    entries = {}
    if (sweep_dir / "sweep.json").exists():
        index = rundir.read_json(sweep_dir / "sweep.json", "sweep index",
                                 "re-run `python training.py sweep ... --out SWEEP` to rewrite it")  # fmt: skip
        for r in index.get("runs", []):
            entries[r["name"]] = dict(r)
    for d in sorted(sweep_dir.iterdir()):
        if d.is_dir() and (d / "config.json").exists() and d.name not in entries:
            cfg = training.load_config(d)
            entries[d.name] = {"name": d.name, "beta": cfg.beta, "seed": cfg.seed,
                               "beta_norm": cfg.beta_norm}  # fmt: skip
    if not entries and not (sweep_dir / "sweep.json").exists():
        raise RunDirError(
            f"{sweep_dir}: not a sweep directory (no sweep.json and no run directories); create one "
            "with `python training.py sweep --preset demo --betas 1 8 32 --out SWEEP`"
        )
    runs = []
    for name, e in entries.items():
        path = sweep_dir / name
        finished = (path / "summary.json").exists() and (path / "model.keras").exists()
        status = (
            "done"
            if finished
            else (e.get("status") if e.get("status") not in (None, "done") else "unfinished")
        )
        runs.append(dict(name=name, path=path, beta=float(e["beta"]), seed=int(e["seed"]),
                         beta_norm=float(e.get("beta_norm", float("nan"))), finished=finished,
                         status=status, error=e.get("error")))  # fmt: skip
    return sorted(runs, key=lambda r: (r["beta"], r["seed"]))


def _needs_evaluation(m, protocol, seed, run_dir, figures=True, metric_options=None) -> bool:
    import json

    if m is None or m.get("protocol") != protocol or m.get("seed") != seed:
        return True
    same = json.dumps(m.get("metric_options") or {}, sort_keys=True, default=str)
    if same != json.dumps(metric_options or {}, sort_keys=True, default=str):
        return True
    counts = m.get("counts") or {}
    if any(counts.get(k) != v for k, v in PROTOCOLS[protocol].items()):
        return True  # the protocol's sample counts changed since: these numbers are stale
    listed = (m.get("figures") or {}).values()
    if figures and (not listed or not all((Path(run_dir) / f).exists() for f in listed)):
        return True
    return False


def collect(sweep_dir, protocol="study", seed=0, progress=True, metric_options=None) -> dict:
    """Evaluates every finished run of the sweep that lacks metrics of ``protocol`` and ``seed``
    (or has a corrupt metrics.json, which is re-evaluated with a warning naming it).

    Returns dict(rows [per finished, scored run], unfinished [run dicts], failed [(run, error)]).
    """
    runs = sweep_runs(sweep_dir)
    rows, unfinished, failed = [], [r for r in runs if not r["finished"]], []
    done = [r for r in runs if r["finished"]]
    it = done
    if progress and done:
        from tqdm.auto import tqdm

        it = tqdm(done, desc="report", unit="run")
    for r in it:
        try:
            try:
                m = read_metrics(r["path"])
            except RunDirError as e:
                print(f"warning: {e}; re-evaluating", file=sys.stderr)
                m = None
            if _needs_evaluation(m, protocol, seed, r["path"], metric_options=metric_options):
                m = evaluate(r["path"], protocol, seed, progress=progress,
                             metric_options=metric_options)  # fmt: skip
            rows.append({"run": r, "metrics": m})
        except (RunDirError, ValueError, OSError) as e:
            failed.append((r, str(e)))
            print(f"warning: {r['name']} could not be evaluated: {e}", file=sys.stderr)
    return dict(rows=rows, unfinished=unfinished, failed=failed, runs=runs)


def score_table(rows) -> tuple[list[str], list[dict]]:
    """(columns, records) of scores.csv: one record per (β, seed)."""
    metric_names = metric_order({k for row in rows for k in row["metrics"]["metric_names"]})
    cols = ["run", "beta", "beta_norm", "seed", "protocol", *metric_names, "recon", "recon_mse",
            "active_units", "kl_total"]  # fmt: skip
    records = []
    for row in rows:
        m, r = row["metrics"], row["run"]
        rec = {"run": r["name"], "beta": m.get("beta", r["beta"]), "seed": r["seed"],
               "beta_norm": m.get("beta_norm", r["beta_norm"]), "protocol": m["protocol"]}  # fmt: skip
        rec.update({k: m.get(k, float("nan")) for k in metric_names})
        rec.update(
            {k: m.get(k, float("nan")) for k in ("recon", "recon_mse", "active_units", "kl_total")}
        )
        records.append(rec)
    return cols, records


def _fmt(v) -> str:
    if isinstance(v, str):
        return v
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _md_table(cols, records) -> str:
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |" for r in records]
    return "\n".join(lines)


def report(sweep_dir, protocol="study", seed=0, progress=True, metric_options=None) -> Path:
    """Evaluates what is missing in a sweep and writes ``<sweep>/report/``; returns its path.

    report/scores.csv         one row per (β, seed): β, β_norm, seed, every metric, recon, active units
    report/scores_vs_beta.png every metric, mean ± std over seeds, against β (β_norm on top)
    report/recon_vs_beta.png, report/active_units_vs_beta.png
    report/index.md           the tables, the plots, and per β the traversals, factor response,
                              geometry and training GIF of the run (relative links)
    Unfinished runs are skipped and listed (stdout and index.md); a sweep with no finished run
    still gets an index.md saying so. ``protocol="quick"`` is labelled in every plot and table.
    """
    return _report(sweep_dir, protocol, seed, progress, metric_options)[0]


def _report(sweep_dir, protocol="study", seed=0, progress=True, metric_options=None):
    sweep_dir = Path(sweep_dir)
    res = collect(sweep_dir, protocol, seed, progress, metric_options)
    out = sweep_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    cols, records = score_table(res["rows"])
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    writer.writeheader()
    for rec in records:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in rec.items()})
    rundir.write_text(out / "scores.csv", buf.getvalue())

    label = f"protocol: {protocol}" + (f" ({QUICK_NOTE})" if protocol == "quick" else "")
    metric_names = [c for c in cols if c not in ("run", "beta", "beta_norm", "seed", "protocol",
                                                 "recon", "recon_mse", "active_units", "kl_total")]  # fmt: skip
    plots = {}
    for stale in ("scores_vs_beta.png", "recon_vs_beta.png", "active_units_vs_beta.png"):
        (out / stale).unlink(missing_ok=True)  # never show plots of an earlier state
    if records:
        plots["scores"] = plot_vs_beta(records, metric_names, out / "scores_vs_beta.png",
                                       f"{sweep_dir.name}: disentanglement scores vs β\n{label}")  # fmt: skip
        plots["recon"] = plot_vs_beta(records, ["recon", "recon_mse"], out / "recon_vs_beta.png",
                                      f"{sweep_dir.name}: reconstruction error vs β\n{label}",
                                      {"recon": "−log p(x|μ) (nats/image)", "recon_mse": "pixel MSE"})  # fmt: skip
        plots["active"] = plot_vs_beta(records, ["active_units", "kl_total"],
                                       out / "active_units_vs_beta.png",
                                       f"{sweep_dir.name}: active units and total KL vs β\n{label}",
                                       {"active_units": f"active units (KL > {ACTIVE_KL:g})",
                                        "kl_total": "total KL (nats)"})  # fmt: skip
    rundir.write_text(out / "index.md", _index_md(sweep_dir, res, cols, records, metric_names,
                                                  protocol, seed, label, plots))  # fmt: skip
    if not records:
        print(f"[report] {sweep_dir}: no finished runs yet, nothing to score "
              f"({len(res['runs'])} run(s) listed)")  # fmt: skip
    if progress:
        print(f"[report] {len(records)} scored run(s), {len(res['unfinished'])} unfinished, "
              f"{len(res['failed'])} failed → {out}/index.md")  # fmt: skip
        for r in res["unfinished"]:
            print(f"[report] unfinished (skipped): {r['name']} ({r['status']})")
    return out, res, records


def _index_md(sweep_dir, res, cols, records, metric_names, protocol, seed, label, plots) -> str:
    name = sweep_dir.name
    lines = [f"# Sweep report: {name}", "",
             f"Written by `python latentSpace.py report {sweep_dir} --protocol {protocol}` "
             f"(metric seed {seed}). **{label}.**", "",
             f"{len(records)} of {len(res['runs'])} run(s) scored."]  # fmt: skip
    if not res["runs"] or not records:
        lines += ["", "**No finished runs yet: nothing to score.** Finish the sweep with "
                  f"`python training.py sweep ... --out {sweep_dir}` and re-run the report."]  # fmt: skip
    if res["unfinished"]:
        lines += ["", "## Unfinished runs (skipped)", ""]
        for r in res["unfinished"]:
            err = f": {r['error']}" if r.get("error") else ""
            lines.append(f"- `{r['name']}` (β={r['beta']:g}, seed {r['seed']}): {r['status']}{err}")
    if res["failed"]:
        lines += ["", "## Runs that could not be evaluated", ""]
        lines += [f"- `{r['name']}`: {e}" for r, e in res["failed"]]
    if records:
        shown = [
            m for m in metric_names if m in HEADLINE
        ] or metric_names  # the rest: per-run table
        summary_cols = ["beta", "beta_norm", "seeds", *shown, "recon", "active_units"]
        agg = []
        for b in sorted({r["beta"] for r in records}):
            rs = [r for r in records if r["beta"] == b]
            row = {
                "beta": f"{b:g}",
                "beta_norm": f"{rs[0]['beta_norm']:.3g}",
                "seeds": str(len(rs)),
            }
            for k in [*shown, "recon", "active_units"]:
                v = np.array([r[k] for r in rs], float)
                row[k] = (
                    f"{np.nanmean(v):.3f} ± {np.nanstd(v):.3f}" if len(v) > 1 else _fmt(float(v[0]))
                )
            agg.append(row)
        lines += ["", f"## Scores (mean ± std over seeds; {protocol})", "", _md_table(summary_cols, agg),
                  "", "Per run: [scores.csv](scores.csv)", "", _md_table(cols, records), ""]  # fmt: skip
        for key, title in (("scores", "Scores vs β"), ("recon", "Reconstruction error vs β"),
                           ("active", "Active units vs β")):  # fmt: skip
            if key in plots:
                lines += [f"### {title}", "", f"![{title}]({Path(plots[key]).name})", ""]
        lines += ["## Per β", ""]
        for b in sorted({r["beta"] for r in records}):
            rs = sorted([row for row in res["rows"] if row["run"]["beta"] == b],
                        key=lambda row: row["run"]["seed"])  # fmt: skip
            run = rs[0]["run"]
            rel = f"../{run['name']}"
            other = ", ".join(
                f"[{row['run']['name']}](../{row['run']['name']}/figures/)" for row in rs[1:]
            )
            lines += [f"### β = {b:g} (β_norm = {run['beta_norm']:.3g}), run `{run['name']}`", ""]
            if other:
                lines += [f"Other seeds: {other}", ""]
            for fig_key, caption in (("traversals", "latent traversals"),
                                     ("factor_response", "factor response"),
                                     ("geometry", "latent geometry")):  # fmt: skip
                if (run["path"] / "figures" / FIGURES[fig_key]).exists():
                    lines += [f"![{caption}]({rel}/figures/{FIGURES[fig_key]})", ""]
            lines += [f"![training]({rel}/training.gif) ![traversal animation]"
                      f"({rel}/figures/{FIGURES['traversals_gif']})", ""]  # fmt: skip
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- README figures
def _pick_betas(records) -> tuple[float, float]:
    """(reference β: 1 if present else the smallest, best β: highest mean MIG, tie DCI D)."""
    betas = sorted({r["beta"] for r in records})
    ref = 1.0 if 1.0 in betas else betas[0]
    mig_key = next((k for k in ("mig",) if k in records[0]), None)
    dci_key = next(
        (k for k in ("dci_disentanglement", "dci_d", "disentanglement") if k in records[0]), None
    )

    def score(b):
        rs = [r for r in records if r["beta"] == b]
        m = np.nanmean([r.get(mig_key, np.nan) for r in rs]) if mig_key else np.nan
        d = np.nanmean([r.get(dci_key, np.nan) for r in rs]) if dci_key else np.nan
        return (np.nan_to_num(m, nan=-np.inf), np.nan_to_num(d, nan=-np.inf))

    return ref, max(betas, key=score)


def figures(
    sweep_dir, out="img", protocol=None, seed=0, progress=True, metric_options=None
) -> dict:
    """The README figure set of one sweep, for β=1 (or the smallest β) and the best-disentangling
    β (highest mean MIG over seeds, ties broken by DCI disentanglement), from each β's lowest seed:

        <out>/training_beta{b}.gif, traversals_beta{b}.png, factor_response_beta{b}.png,
        geometry_beta{b}.png, and <out>/scores_vs_beta.png

    Runs the report first (evaluating what is missing). ``protocol=None`` reuses the protocol of
    the metrics already in the sweep (quick if there are none). Returns {file name: path}.
    """
    sweep_dir, out = Path(sweep_dir), Path(out)
    if protocol is None:
        found = set()
        for r in sweep_runs(sweep_dir):
            try:
                m = read_metrics(r["path"]) if r["finished"] else None
            except RunDirError:
                m = None
            if m:
                found.add(m["protocol"])
        if len(found) > 1:
            raise ValueError(
                f"{sweep_dir} has metrics of several protocols {sorted(found)}; pass --protocol"
            )
        protocol = found.pop() if found else "quick"
    rep, res, records = _report(sweep_dir, protocol, seed, progress, metric_options)
    if not records:
        raise RunDirError(
            f"{sweep_dir}: no finished run to make figures from; finish the sweep first"
        )
    ref, best = _pick_betas(records)
    written = {}
    for b in dict.fromkeys([ref, best]):
        run = min(
            (row["run"] for row in res["rows"] if row["run"]["beta"] == b), key=lambda r: r["seed"]
        )
        src = run["path"]
        for name, path in ((f"training_beta{b:g}.gif", src / "training.gif"),
                           (f"traversals_beta{b:g}.png", src / "figures" / FIGURES["traversals"]),
                           (f"factor_response_beta{b:g}.png", src / "figures" / FIGURES["factor_response"]),
                           (f"geometry_beta{b:g}.png", src / "figures" / FIGURES["geometry"])):  # fmt: skip
            if path.exists():
                rundir.write_bytes(out / name, path.read_bytes())
                written[name] = out / name
    rundir.write_bytes(out / "scores_vs_beta.png", (rep / "scores_vs_beta.png").read_bytes())
    written["scores_vs_beta.png"] = out / "scores_vs_beta.png"
    written["betas"] = {"reference": ref, "best": best, "protocol": protocol}
    if progress:
        print(f"[figures] β={ref:g} and best β={best:g} ({protocol}) → {out}: "
              + ", ".join(k for k in written if k != "betas"))  # fmt: skip
    return written


# ----------------------------------------------------------------------------- CLI
def main(argv=None) -> int:
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before anything imports TensorFlow
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True)
    protocols = sorted(PROTOCOLS)
    pe = sub.add_parser("evaluate", help="score one finished run → RUN/metrics.json, RUN/figures/")
    pe.add_argument("run")
    pr = sub.add_parser("report", help="evaluate a sweep's runs → SWEEP/report/")
    pr.add_argument("sweep")
    pf = sub.add_parser("figures", help="README figures of a sweep → --out")
    pf.add_argument("sweep")
    pf.add_argument("--out", default="img")
    for q in (pe, pr, pf):
        q.add_argument("--protocol", choices=protocols, default=None if q is pf else "study",
                       help="metric sample counts (default: study; figures: the sweep's)")  # fmt: skip
        q.add_argument("--seed", type=int, default=0, help="metric RNG seed")
        q.add_argument("--quiet", action="store_true", help="no progress output")
    args = p.parse_args(argv)
    try:
        if args.command == "evaluate":
            evaluate(args.run, args.protocol, args.seed, progress=not args.quiet)
        elif args.command == "report":
            path = report(args.sweep, args.protocol, args.seed, progress=not args.quiet)
            print(path / "index.md")
        else:
            figures(args.sweep, args.out, args.protocol, args.seed, progress=not args.quiet)
    except (RunDirError, ValueError, FileNotFoundError, NotADirectoryError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

__all__ = [
    # metrics (metrics.py)
    "PROTOCOLS", "beta_vae_score", "compute_metrics", "dci", "factor_vae_score", "mig",
    "modularity_explicitness", "sap",
    # encodings and figures (figures.py)
    "ACTIVE_KL", "EncodeFn", "decode", "encode", "factor_response", "kl_per_latent",
    "latent_geometry", "make_encode_fn", "pick_position_latents", "plot_factor_response",
    "plot_kl_per_latent", "plot_latent_geometry", "plot_reconstructions", "plot_traversals",
    "plot_vs_beta", "traversal_gif", "traversal_images",
    # runs, evaluation, reports
    "check_sampler", "collect", "evaluate", "figures", "load_run", "main", "read_metrics",
    "reconstruction_error", "report", "score_table", "sweep_runs", "write_run_figures",
]  # fmt: skip
