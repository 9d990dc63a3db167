"""Loading and scoring one trained run: ``load_run``, ``check_sampler``, ``evaluate`` (metrics.json
and the run's figures) and ``read_metrics``.

latentSpace.py is the public entry point and re-exports everything here; this module holds the
per-run part so that latentSpace.py stays about sweeps, reports and the CLI.

``evaluate`` runs the whole disentanglement suite of metrics.py (Higgins et al. 2017; Kim & Mnih
2018; Chen et al. 2018; Eastwood & Williams 2018; Kumar et al. 2018; Ridgeway & Mozer 2018) on
posterior means, with disentanglement_lib's study sample counts (Locatello et al. 2019) or the
labelled CPU-sized "quick" counts, plus reconstruction error and KL per latent on held-out samples.

Nothing is computed, and TensorFlow is not imported, when this module is imported.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

import rundir
from encoding import (
    ACTIVE_VAR,
    active_units,
    decode,
    encode,
    kl_per_latent,
    make_encode_fn,
    unit_activity,
)
from figures import (
    CIRCULAR_FACTORS,
    plot_factor_response,
    plot_kl_per_latent,
    plot_latent_geometry,
    plot_reconstructions,
    plot_traversals,
    traversal_gif,
    traversal_images,
)
from metrics import PROTOCOLS, compute_metrics
from rundir import RunDirError

# metrics.json layout; a report re-evaluates runs whose metrics.json has another (older) schema.
METRICS_SCHEMA = 2
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


def entropy_floor(images, likelihood: str = "bernoulli", gaussian_sigma: float = 0.1) -> float:
    """The smallest −log p(x|z) any decoder can reach on ``images`` (N, S, S, 1), in nats per image.

    Bernoulli: a grey target pixel x ∈ (0, 1) costs at least its binary entropy
    H(x) = −x log x − (1 − x) log(1 − x) (reached by the prediction x itself); summed over pixels,
    averaged over images. Gaussian with fixed σ: the normalising constant, S² log(σ√(2π)).
    ``recon − entropy_floor`` is the reconstruction error a model can still remove."""
    x = np.asarray(images, np.float64)
    if likelihood == "gaussian":
        return float(x[0].size * math.log(gaussian_sigma * math.sqrt(2 * math.pi)))
    p = np.clip(x, 1e-12, 1 - 1e-12)
    h = -(p * np.log(p) + (1 - p) * np.log(1 - p))  # (N, S, S, 1); 0 at x ∈ {0, 1}
    return float(h.reshape(len(x), -1).sum(axis=1).mean())


def reconstruction_error(model, images, batch: int = 256) -> dict:
    """Mean −log p(x|z=μ) per image (nats, the training likelihood, summed over pixels), decoded
    from the posterior mean μ, its excess over the data's own ``entropy_floor``, and the mean
    squared pixel error of decode(μ), on ``images`` (N, S, S, 1). Also returns the encodings."""
    mean, logvar = encode(model, images, batch)  # (N, D) each
    nll, sq = [], []
    for i in range(0, len(images), batch):
        x = np.asarray(images[i : i + batch], np.float32)
        logits = decode(model, mean[i : i + batch], batch, logits=True)  # (b, S, S, 1)
        nll.append(np.asarray(model.reconstruction_loss(x, logits)))  # (b,)
        sq.append(((x - 1.0 / (1.0 + np.exp(-logits))) ** 2).mean(axis=(1, 2, 3)))
    recon = float(np.concatenate(nll).mean())
    floor = entropy_floor(images, model.likelihood, getattr(model, "gaussian_sigma", 0.1))
    return dict(recon=recon, recon_floor=floor, recon_excess=recon - floor,
                recon_mse=float(np.concatenate(sq).mean()), mean=mean, logvar=logvar)  # fmt: skip


def _title(run_dir, cfg, protocol=None) -> str:
    bn = cfg.beta_norm
    tag = " [quick]" if protocol == "quick" else ""
    return f"{Path(run_dir).name}: β={cfg.beta:g} (β_norm={bn:.3g}){tag}"


def write_run_figures(run_dir, model, cfg, sampler, kl, seed=0, protocol="quick", progress=False,
                      activity=None):  # fmt: skip
    """The run's figures into ``<run>/figures/`` (see FIGURES); returns {name: path, ...} plus the
    geometry info under "geometry_info". ``kl`` (D,) orders and labels the traversals;
    ``activity`` (D,) (``encoding.unit_activity`` of held-out encodings) greys inactive latents."""
    out = Path(run_dir) / "figures"
    title = _title(run_dir, cfg, protocol)
    image = sampler.images_from_factors(_showcase_factors(sampler))[0]  # (S, S, 1)
    tr = traversal_images(model, image, kl=kl, activity=activity)  # decoded once: PNG and GIF
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
        activity=activity,
    )  # fmt: skip
    paths["kl"] = plot_kl_per_latent(kl, out / FIGURES["kl"], title=title, activity=activity)
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
      stream of the same seed); the reconstruction's excess over the data's entropy floor;
      active units as Burda et al. (2016): Var over those samples of the posterior mean > 0.01;
    - per-factor scores (``per_factor``: MIG gap and DCI test accuracy of every factor);
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
    activity = unit_activity(rec["mean"])  # (D,) Var_x of the posterior means
    t3 = time.perf_counter()
    summary = {}
    if (run_dir / "summary.json").exists():
        summary = rundir.read_json(run_dir / "summary.json", "run summary")
    out = {
        "schema": METRICS_SCHEMA,
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
        "per_factor": other.pop("per_factor", {}),
        "recon": rec["recon"],
        "recon_floor": rec["recon_floor"],
        "recon_excess": rec["recon_excess"],
        "recon_note": "−log p(x|μ) in nats per image, decoded from the posterior mean; "
        "recon_floor: the data's own entropy (Bernoulli) or normaliser (Gaussian); "
        "recon_excess = recon − recon_floor",
        "recon_mse": rec["recon_mse"],
        "recon_samples": n_eval,
        "active_units": active_units(rec["mean"]),
        "active_threshold": ACTIVE_VAR,
        "active_definition": "Burda et al. 2016: Var_x(E_q(z|x)[z_d]) > active_threshold, "
        "over the recon_samples held-out images",
        "unit_activity": [float(v) for v in activity],
        "factor_grid": _factor_grid(sampler),
        "kl_per_latent": [float(v) for v in kl],
        "kl_total": float(kl.sum()),
        "encoder_images_metrics": encode_fn.images,  # images through the encoder for the metrics
        "data_config": sampler.config() if hasattr(sampler, "config") else None,
        "extra": {k: v for k, v in other.items() if k != "protocol"},
    }
    if figures:
        paths = write_run_figures(run_dir, model, cfg, sampler, kl, seed, protocol, progress,
                                  activity=activity)  # fmt: skip
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


def _factor_grid(sampler) -> dict:
    """What the metrics' factor grid was: sizes, values and how each factor is treated."""
    names = [str(n) for n in sampler.factor_names]
    values = getattr(sampler, "values", {})
    return {
        "factor_names": names,
        "factor_sizes": [int(v) for v in sampler.factor_sizes],
        "values": {
            n: [v if isinstance(v, str) else float(v) for v in np.asarray(values[n]).tolist()]
            for n in names
            if n in values
        },  # fmt: skip
        "circular": [n for n in names if n in CIRCULAR_FACTORS],
        "note": "every metric treats each factor as categorical over its grid (disentanglement_lib), "
        "so a circular factor such as azimuth needs no special case there: its first and last "
        "values are simply two classes. Scale and position grids are sized to the image so that "
        "neighbouring values differ by at least one pixel (dataset.grid_sizes).",
    }


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
