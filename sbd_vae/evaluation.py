"""Scoring one loaded run: ``score_run`` (metrics.json and the run's figures), ``read_metrics``,
and the reconstruction error against the data's entropy floor.

``latentSpace.evaluate`` loads the run (``latentSpace.load_run``: the model, its config and the
sampler of its data) and hands them to ``score_run``, which runs the whole suite of ``metrics``
(Higgins et al. 2017; Kim & Mnih 2018; Chen et al. 2018; Eastwood & Williams 2018; Kumar et al.
2018; Ridgeway & Mozer 2018; Suter et al. 2019; the unsupervised scores of Locatello et al. 2019)
on posterior means, with disentanglement_lib's study sample counts
(Locatello et al. 2019) or the labelled CPU-sized "quick" counts (``protocol.PROTOCOLS``), plus
reconstruction error and KL per latent on held-out samples.

Nothing is computed, and TensorFlow is not imported, when this module is imported.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from . import datasets, rundir
from .encoding import (
    ACTIVE_VAR,
    active_units,
    decode,
    encode,
    kl_per_latent,
    make_encode_fn,
    unit_activity,
)
from .figures import (
    plot_factor_response,
    plot_kl_per_latent,
    plot_latent_geometry,
    plot_reconstructions,
    plot_traversals,
    traversal_gif,
    traversal_images,
)
from .metrics import compute_metrics
from .metrics.registry import metric_counts
from .protocol import PROTOCOLS, QUICK_NOTE, check_protocol
from .rundir import RunDirError

# metrics.json layout; a report re-evaluates runs whose metrics.json has another (older) schema.
METRICS_SCHEMA = 2
GEOMETRY_BASES = 2  # latent-geometry plot: one panel per base
FIGURES = {  # <run>/figures/<file>: what score_run writes
    "traversals": "traversals.png",
    "traversals_gif": "traversals.gif",
    "reconstructions": "reconstructions.png",
    "factor_response": "factor_response.png",
    "geometry": "geometry.png",
    "kl": "kl.png",
}


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


def _title(run_dir, cfg, protocol=None, sampler=None) -> str:
    bn = cfg.beta_norm
    tag = " [quick]" if protocol == "quick" else ""
    data = _data_label(sampler)
    return (
        f"{Path(run_dir).name}{f' ({data})' if data else ''}: β={cfg.beta:g} (β_norm={bn:.3g}){tag}"
    )


def _data_label(sampler) -> str | None:
    """The dataset's display name where its data config records one (dsprites: "dSprites-like
    (procedural)"); None for the shapes, whose figures and scores carry no data label."""
    if sampler is None or not hasattr(sampler, "config"):
        return None
    return datasets.display_name(sampler.config())


def write_run_figures(run_dir, model, cfg, sampler, kl, seed=0, protocol="quick", progress=False,
                      activity=None):  # fmt: skip
    """The run's figures into ``<run>/figures/`` (see FIGURES); returns {name: path, ...} plus the
    geometry info under "geometry_info". ``kl`` (D,) orders and labels the traversals;
    ``activity`` (D,) (``encoding.unit_activity`` of held-out encodings) greys inactive latents."""
    out = Path(run_dir) / "figures"
    title = _title(run_dir, cfg, protocol, sampler)
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
    bases = PROTOCOLS.get(protocol, PROTOCOLS["quick"])["response_bases"]
    paths["factor_response"] = plot_factor_response(
        model, sampler, out / FIGURES["factor_response"], n_bases=bases,
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
# IRS (Suter et al. 2019) and the unsupervised scores (Locatello et al. 2019) come last: the
# latter need no ground truth, and lower is more factorised for them (report.LOWER_IS_FACTORISED).
HEADLINE = (
    "mig", "dci_disentanglement", "dci_completeness", "dci_informativeness_test", "sap_discrete",
    "sap_continuous", "modularity", "explicitness_test", "beta_vae_eval_accuracy",
    "factor_vae_eval_accuracy", "irs", "gaussian_total_correlation",
    "gaussian_total_correlation_active", "gaussian_wasserstein_correlation",
    "gaussian_wasserstein_correlation_norm",
    "mutual_info_score",
)  # fmt: skip


def metric_order(names) -> list[str]:
    """``names`` with the HEADLINE metrics first (in that order), the rest alphabetically."""
    names = set(names)
    return [n for n in HEADLINE if n in names] + sorted(names - set(HEADLINE))


def _split_scores(result: dict, protocol: str) -> tuple[dict, dict, dict]:
    """compute_metrics' flat dict → (scores {metric: float}, counts {name: number}, other).

    Counts are the protocol's metric counts (``registry.metric_counts``) and the ``num_images_*``
    totals; ``time_*`` entries and strings go to ``other``; every remaining number is a metric.
    """
    params = set(metric_counts(protocol)) if protocol in PROTOCOLS else set()
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


def held_out_scores(model, sampler, n_eval: int, seed: int = 0) -> tuple[dict, np.ndarray,
                                                                          np.ndarray]:  # fmt: skip
    """(``reconstruction_error``, mean KL per latent (D,), Var_x of the posterior means (D,)) on
    ``n_eval`` held-out grid images drawn with ``RandomState([seed, 1])``, a stream independent of
    the metrics': the numbers metrics.json records as recon*, kl_per_latent and unit_activity."""
    held_out = sampler.images_from_factors(
        sampler.sample_factors(n_eval, np.random.RandomState([seed, 1]))
    )  # (n_eval, S, S, 1)
    rec = reconstruction_error(model, held_out)
    kl = kl_per_latent(rec["mean"], rec["logvar"]).mean(axis=0)  # (D,)
    return rec, kl, unit_activity(rec["mean"])


def score_model(
    model, sampler, protocol="study", seed=0, progress=True, metric_options=None
) -> dict:
    """The numbers of one model, written nowhere: the metric suite (``compute_metrics`` with
    ``RandomState(seed)`` on posterior means) and, on ``PROTOCOLS[protocol]["eval_samples"]``
    held-out images (the independent stream ``RandomState([seed, 1])``), the reconstruction error
    and the KL and activity of every latent. ``score_run`` (a run's final model) and
    ``score_snapshots`` (its weights over training) share it, so both give the same numbers for the
    same weights. Returns dict(scores, counts, other, rec, kl (D,), activity (D,), n_eval,
    encoder_images, t_metrics)."""
    table = check_protocol(protocol)
    encode_fn = make_encode_fn(model)
    result = compute_metrics(sampler, encode_fn, np.random.RandomState(seed), protocol=protocol,
                             progress=progress, **(metric_options or {}))  # fmt: skip
    t_metrics = time.perf_counter()
    scores, counts, other = _split_scores(result, protocol)
    n_eval = table["eval_samples"]
    rec, kl, activity = held_out_scores(model, sampler, n_eval, seed)
    return dict(scores=scores, counts=counts, other=other, rec=rec, kl=kl, activity=activity,
                n_eval=n_eval, encoder_images=encode_fn.images, t_metrics=t_metrics)  # fmt: skip


def score_run(run_dir, model, cfg, sampler, protocol="study", seed=0, progress=True, figures=True,
              metric_options=None, t_load=None) -> dict:  # fmt: skip
    """Scores one loaded run and writes ``<run>/metrics.json`` (and ``<run>/figures/``).

    ``model``, ``cfg``, ``sampler``: the run's ``BetaVAE``, its TrainConfig and a sampler of its
    data, as ``latentSpace.load_run`` returns them (``latentSpace.evaluate`` is this function
    after loading). It writes:
    - ``compute_metrics`` with ``numpy.random.RandomState(seed)``: every metric of the suite, on
      posterior means, images encoded in batches;
    - reconstruction error (−log p(x|μ) in nats per image, and the mean squared pixel error) and the
      KL of every latent on ``PROTOCOLS[protocol]["eval_samples"]`` held-out grid samples (an
      independent stream of the same seed); the reconstruction's excess over the data's entropy
      floor; active units as Burda et al. (2016): Var over those samples of the posterior mean > 0.01;
    - per-factor scores (``per_factor``: MIG gap and DCI test accuracy of every factor);
    - the figures of ``write_run_figures`` (unless ``figures=False``).
    The same (run, protocol, seed) gives the same numbers. ``metric_options`` are keyword options
    of ``compute_metrics`` (``metrics``, ``chunk``, ``dci_backend``); they are recorded in
    metrics.json. ``t_load``: when loading started (``time.perf_counter()``), for elapsed_s.
    Returns the dict written to metrics.json.
    """
    run_dir = Path(run_dir)
    t1 = time.perf_counter()
    t0 = t1 if t_load is None else t_load
    core = score_model(model, sampler, protocol, seed, progress, metric_options)
    scores, counts, other, rec = core["scores"], core["counts"], core["other"], core["rec"]
    kl, activity, n_eval = core["kl"], core["activity"], core["n_eval"]
    t2, t3 = core["t_metrics"], time.perf_counter()
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
        "encoder_images_metrics": core[
            "encoder_images"
        ],  # images through the encoder for the metrics
        "data_config": datasets.data_config(sampler),
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
    kept = _kept_snapshots(run_dir, protocol, seed, metric_options)
    if kept:  # the scores over training stay with the final scores they lead to
        out["snapshots"] = kept
    rundir.write_json(run_dir / "metrics.json", out)
    if progress:
        head = "  ".join(f"{k}={scores[k]:.3f}" for k in metric_order(scores) if k in HEADLINE)
        print(f"[evaluate] {run_dir}: {protocol} seed={seed}  {head}  recon={rec['recon']:.1f}  "
              f"active={out['active_units']}/{cfg.latent_dim}  ({t4 - t0:.0f}s)")  # fmt: skip
    return out


# ----------------------------------------------------------------------------- over training
def _kept_snapshots(run_dir, protocol, seed, metric_options) -> dict | None:
    """The "snapshots" block of the run's metrics.json when it was scored with the same protocol,
    seed and options (scores of another protocol are not comparable with the new final ones)."""
    try:
        old = read_metrics(run_dir)
    except RunDirError:
        return None
    block = (old or {}).get("snapshots")
    if not isinstance(block, dict) or not isinstance(block.get("steps"), dict):
        return None
    same = (block.get("protocol"), block.get("seed"), block.get("metric_options") or {})
    return block if same == (protocol, int(seed), metric_options or {}) else None


def snapshot_record(core: dict, step: int, batch_size: int) -> dict:
    """One step's entry of metrics.json["snapshots"]["steps"]: every metric, the per-factor scores,
    reconstruction, KL and active units of the weights at ``step`` (``score_model``'s ``core``)."""
    rec, kl = core["rec"], core["kl"]
    return {
        "step": int(step),
        "images_seen": int(step) * int(batch_size),
        **core["scores"],
        "per_factor": core["other"].get("per_factor", {}),
        "recon": rec["recon"],
        "recon_excess": rec["recon_excess"],
        "kl_total": float(kl.sum()),
        "kl_per_latent": [float(v) for v in kl],
        "active_units": active_units(rec["mean"]),
        "unit_activity": [float(v) for v in core["activity"]],
    }


def record_of_final(metrics: dict, batch_size: int) -> dict:
    """``snapshot_record`` read back from a final model's metrics.json dict (``score_run``'s
    return): the entry of a snapshot that holds the final weights, without scoring them again."""
    keys = ("per_factor", "recon", "recon_excess", "kl_total", "kl_per_latent", "active_units",
            "unit_activity")  # fmt: skip
    step = int(metrics["step"])
    return {
        "step": step,
        "images_seen": step * int(batch_size),
        **{k: metrics[k] for k in metrics["metric_names"]},
        **{k: metrics[k] for k in keys},
    }


def same_weights(a, b) -> bool:
    """True when two models hold bit-identical weights (variable by variable, in order)."""
    va, vb = a.weights, b.weights
    return len(va) == len(vb) and all(
        np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(va, vb)
    )


def score_snapshots(run_dir, model_at, cfg, sampler, steps, protocol="study", seed=0,
                    progress=True, metric_options=None, known=None) -> dict:  # fmt: skip
    """Scores the run's weights at each of ``steps`` and keeps them in ``<run>/metrics.json``
    under "snapshots" (the final model's scores stay at the top level).

    ``model_at(step)`` returns the model with the weights of that step (``latentSpace`` loads the
    run's snapshots/snap-<step>.npz into a model built from its config.json). Steps already scored
    with the same protocol, seed and options are kept, not recomputed, so a sweep's snapshots can
    be scored as its runs finish. The metric RNG is ``RandomState(seed)`` at every step: the
    curve follows the weights, not a re-drawn sample. ``known``: {step: record} taken as they are
    (``latentSpace.evaluate`` passes the final model's scores for the snapshot at the final step
    when its weights are the final ones: the same weights, seed and protocol give the same
    numbers, so scoring them twice would only cost minutes). Returns the "snapshots" block."""
    check_protocol(protocol)
    run_dir = Path(run_dir)
    block = _kept_snapshots(run_dir, protocol, seed, metric_options) or {
        "protocol": protocol, "seed": int(seed), "metric_options": metric_options or {},
        "steps": {},
    }  # fmt: skip
    from tqdm.auto import tqdm

    todo = [int(s) for s in steps if str(int(s)) not in block["steps"]]
    known = {int(k): v for k, v in (known or {}).items()}
    for step in tqdm(todo, desc=f"snapshots {run_dir.name}", unit="snapshot", disable=not progress):
        if step in known:
            block["steps"][str(step)] = known[step]
        else:
            core = score_model(model_at(step), sampler, protocol, seed, False, metric_options)
            block["steps"][str(step)] = snapshot_record(core, step, cfg.batch_size)
        block["steps"] = dict(sorted(block["steps"].items(), key=lambda kv: int(kv[0])))
        m = read_metrics(run_dir) or {}
        rundir.write_json(run_dir / "metrics.json", {**m, "snapshots": block} if m else
                          _snapshots_only(run_dir, cfg, block))  # fmt: skip
    return block


def _snapshots_only(run_dir, cfg, block) -> dict:
    """A metrics.json for a run whose final model is not scored yet: snapshot scores only, with
    the fields read_metrics needs (an empty metric list), so a later ``evaluate`` adds the rest."""
    return {"schema": METRICS_SCHEMA, "run": Path(run_dir).name, "protocol": None,
            "seed": None, "metric_names": [], "beta": cfg.beta, "beta_norm": cfg.beta_norm,
            "train_seed": cfg.seed, "snapshots": block}  # fmt: skip


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
        "circular": [n for n in names if n in datasets.circular_factors(sampler)],
        "categorical": [n for n in names if n in getattr(sampler, "categorical_factors", ())],
        "note": "every metric treats each factor as categorical over its grid (disentanglement_lib), "
        "so a circular factor such as azimuth or orientation needs no special case there: its "
        "first and last values are simply two classes. " + getattr(sampler, "grid_note", ""),
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
