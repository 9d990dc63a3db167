"""The interactive latent explorer of latent_space.ipynb: pick a run and an input image (a factor
combination of the run's data), then move one slider per latent and watch the decoder's image.

The explorer is the interactive form of a latent traversal (Higgins et al. 2017;
Watters et al. 2019): the sliders start at the posterior mean μ = E_q(z|x)[z] of the
input image; moving slider d sets z_d and the image ``sigmoid(decoder(z))`` follows. The
sliders are ordered active latents first (Var_x of μ_d > ``ACTIVE_VAR``, Burda et al. 2016), by
mean KL within each group (the KL, in nats, is written beside each slider); the reset button
returns every slider to μ.

Latency, slider to image (bench/bench_explorer.py; BENCHMARKS.md, "Latent explorer"), at 128²
with a ``paper``-preset model (SBD, 64 channels, 10 latents; the cost does not depend on the
weights) on a 2-core AMD EPYC (KVM; AVX-512 with AVX512_BF16, no AMX): one latent vector decodes
in 28-36 ms through the compiled decoder of ``encoding.compiled`` (a ``tf.function``; a ``jax.jit``
on JAX) against 90-180 ms for ``decoder.predict``, while the project's two training processes
held both cores (nice 10, measured at nice 12); the PNG and the widget add about 1 ms. With the
machine saturated (load 4.7-7 on 2 cores, the training at nice 3, the bench at nice 12: the table
in BENCHMARKS.md) the same paths took 150-240 ms and 730-980 ms (medians). About 100 ms is where
a response stops feeling instant, so the sliders update continuously while dragged; a busy CPU is
felt at once.

``latentSpace.explorer`` builds a ``RunExplorer`` from a run directory (and its sweep, for the run
dropdown). ipywidgets is imported when an explorer is built: nothing is imported, and nothing
runs, when this module is imported.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .encoding import ACTIVE_VAR, as_images, decode, encode, kl_per_latent, unit_activity
from .widgets import png_bytes, run_dropdown

STATS_IMAGES = 256  # images whose KL and activity label the sliders (the notebook's own 256)
SLIDER_SIGMA = 3.0  # every slider spans at least ±3 prior σ (99.7 % of N(0, 1)) ...
SLIDER_MARGIN = 0.5  # ... and the data's posterior means plus this margin, in σ
SLIDER_STEP = 0.01


def latent_stats(model, sampler, n: int = STATS_IMAGES, seed: int = 0) -> dict:
    """What labels and bounds the sliders, from ``n`` images of ``sampler`` drawn with
    ``RandomState(seed)`` (the draw latent_space.ipynb makes, so the KL agrees with its plot):
    kl (D,) mean KL per latent in nats, activity (D,) Var_x of the posterior mean, and lo, hi (D,)
    the slider ranges: ±SLIDER_SIGMA widened to the means seen (± SLIDER_MARGIN)."""
    rng = np.random.RandomState(seed)
    images = sampler.images_from_factors(sampler.sample_factors(n, rng))  # (n, S, S, 1)
    mean, logvar = encode(model, images)  # (n, D) each
    lo = np.minimum(-SLIDER_SIGMA, np.floor(mean.min(axis=0) - SLIDER_MARGIN))
    hi = np.maximum(SLIDER_SIGMA, np.ceil(mean.max(axis=0) + SLIDER_MARGIN))
    return dict(kl=kl_per_latent(mean, logvar).mean(axis=0), activity=unit_activity(mean),
                lo=lo, hi=hi)  # fmt: skip


def latent_order(kl, activity, threshold: float = ACTIVE_VAR) -> np.ndarray:
    """(D,) latent indices: the active ones (``activity`` > threshold) first, each group by KL,
    largest first (ties keep index order)."""
    kl, active = np.asarray(kl, np.float64), np.asarray(activity, np.float64) > threshold
    return np.lexsort((np.arange(len(kl)), -kl, ~active))  # last key sorts first


def _factor_widget(sampler, k: int, value: int):
    """A selector of factor k's grid index: a dropdown for categories, a slider for the rest,
    both labelled with the grid's values where the sampler has them."""
    import ipywidgets as w

    name, size = sampler.factor_names[k], int(sampler.factor_sizes[k])
    values = getattr(sampler, "values", {}).get(name)
    labels = [str(v) if isinstance(v, str) else f"{float(v):.3g}" for v in values] \
        if values is not None and len(values) == size else [str(i) for i in range(size)]  # fmt: skip
    options = list(zip(labels, range(size)))
    if name in getattr(sampler, "categorical_factors", ()):
        return w.Dropdown(options=options, value=value, description=name)
    return w.SelectionSlider(options=options, value=value, description=name,
                             continuous_update=False)  # fmt: skip


class LatentExplorer:
    """One model and one input image: a slider per latent, the decoded image beside them.

    ``model``: a BetaVAE; ``sampler``: the run's data (the factor selectors draw the input
    image from it); ``factors`` (K,) grid indices of the first input (the middle of each grid by
    default) or ``image`` (S, S, 1) any image instead; ``stats``: ``latent_stats`` (computed when
    not given); ``title``: an HTML line above. Public state, for notebooks and tests:
    ``sliders`` (one per latent, in latent order: ``sliders[d]`` is z_d), ``order`` (display
    order), ``mean`` (D,) the input's posterior mean, ``z`` (D,) the sliders' vector,
    ``decoded`` (S, S, 1) the image shown, ``last_ms`` the last decode's time, ``widget`` the box.
    """

    def __init__(self, model, sampler, factors=None, image=None, stats=None, seed=0, title=""):
        import ipywidgets as w

        self.model, self.sampler, self.seed = model, sampler, int(seed)
        self.stats = stats if stats is not None else latent_stats(model, sampler, seed=seed)
        self.order = latent_order(self.stats["kl"], self.stats["activity"])
        self._rng = np.random.RandomState([self.seed, 6])  # the "random image" button's draws
        self._hold = False  # True while many sliders move at once: decode once, at the end
        self.sliders = [self._slider(d) for d in range(model.latent_dim)]
        start = self._check_factors(factors) if factors is not None else self._middle()
        self.factor_widgets = [_factor_widget(sampler, k, int(v)) for k, v in enumerate(start)]
        for fw in self.factor_widgets:
            fw.observe(self._factor_moved, names="value")
        self.random_button = w.Button(description="random image", icon="random")
        self.random_button.on_click(lambda _: self.set_factors(self._random()))
        self.reset_button = w.Button(description="reset to μ", icon="undo",
                                     tooltip="every slider back to the posterior mean")  # fmt: skip
        self.reset_button.on_click(lambda _: self.reset())
        self.input_image, self.output_image = w.Image(format="png"), w.Image(format="png")
        self.timing = w.HTML()
        self.widget = self._layout(w, title)
        if image is not None:
            self.set_image(image)
        else:
            self.set_factors(start)

    # ------------------------------------------------------------------ state
    @property
    def z(self) -> np.ndarray:
        """(D,) float32: the latent vector the sliders hold (z_d = sliders[d].value)."""
        return np.array([s.value for s in self.sliders], np.float32)

    @property
    def factors(self) -> np.ndarray | None:
        """(K,) the factor combination shown, or None when the input came from ``set_image``."""
        return None if self._factors is None else self._factors.copy()

    def set_factors(self, factors) -> None:
        """Input := ``sampler.images_from_factors([factors])``; sliders to its posterior mean."""
        factors = self._check_factors(factors)
        self._hold = True
        try:
            for fw, v in zip(self.factor_widgets, factors):
                fw.value = int(v)
        finally:
            self._hold = False
        self.set_image(self.sampler.images_from_factors(factors[None])[0], factors)

    def set_image(self, image, _factors=None) -> None:
        """Input := ``image`` (S, S, 1) in [0, 1]; encodes it and resets the sliders to μ."""
        mean, _ = encode(self.model, image)  # as_images checks the shape: (1, D)
        self._factors = None if _factors is None else np.asarray(_factors, np.int64)
        self.input = as_images(image, self.model.image_size)[0]  # (S, S, 1)
        self.mean = mean[0].astype(np.float32)  # (D,)
        self.input_image.value = png_bytes(self.input)
        self.reset()

    def reset(self) -> None:
        """Every slider back to the input's posterior mean μ; decodes once."""
        self._hold = True
        try:
            for s, m in zip(self.sliders, self.mean):
                s.min, s.max = min(s.min, float(np.floor(m))), max(s.max, float(np.ceil(m)))
                s.value = float(m)
        finally:
            self._hold = False
        self.show()

    def show(self) -> np.ndarray:
        """Decodes ``z`` and shows it; returns the image (S, S, 1) and times the call."""
        t0 = time.perf_counter()
        self.decoded = decode(self.model, self.z[None])[0]  # (S, S, 1) pixel means in [0, 1]
        self.output_image.value = png_bytes(self.decoded)
        self.last_ms = 1e3 * (time.perf_counter() - t0)
        self.timing.value = f"<small>decoded in {self.last_ms:.0f} ms</small>"
        return self.decoded

    # ------------------------------------------------------------------ plumbing
    def _slider(self, d: int):
        import ipywidgets as w

        s = w.FloatSlider(value=0.0, min=float(self.stats["lo"][d]), max=float(self.stats["hi"][d]),
                          step=SLIDER_STEP, description=f"z{d}", readout_format=".2f",
                          continuous_update=True, layout=w.Layout(width="340px"))  # fmt: skip
        s.observe(lambda _: None if self._hold else self.show(), names="value")
        return s

    def _kl_label(self, d: int):
        import ipywidgets as w

        active = float(self.stats["activity"][d]) > ACTIVE_VAR
        colour = "black" if active else "#999"
        text = f"KL {float(self.stats['kl'][d]):.2f} nats{'' if active else ' · inactive'}"
        return w.HTML(f"<span style='color:{colour}; font-family:monospace'>{text}</span>")

    def _layout(self, w, title: str):
        rows = [w.HBox([self.sliders[d], self._kl_label(d)]) for d in self.order]
        picker = w.VBox([w.HTML("<b>input: a factor combination</b>"), *self.factor_widgets,
                         self.random_button])  # fmt: skip
        images = w.HBox([w.VBox([w.HTML("input"), self.input_image]),
                         w.VBox([w.HTML("decoded from the sliders"), self.output_image,
                                 self.timing])])  # fmt: skip
        sliders = w.VBox([w.HTML("<b>latents</b> (active first, by KL)"), *rows,
                          self.reset_button])  # fmt: skip
        return w.VBox([w.HTML(title), w.HBox([picker, images]), sliders])

    def _factor_moved(self, _change) -> None:
        if not self._hold:
            self.set_factors([fw.value for fw in self.factor_widgets])

    def _middle(self) -> np.ndarray:
        return np.array([n // 2 for n in self.sampler.factor_sizes], np.int64)

    def _random(self) -> np.ndarray:
        return self.sampler.sample_factors(1, self._rng)[0]

    def _check_factors(self, factors) -> np.ndarray:
        f, sizes = np.asarray(factors).reshape(-1), np.asarray(self.sampler.factor_sizes)
        if f.shape != sizes.shape or (f < 0).any() or (f >= sizes).any():
            raise ValueError(
                f"factors={np.asarray(factors).tolist()}: give one grid index per factor, "
                f"{dict(zip(self.sampler.factor_names, (f'0..{n - 1}' for n in sizes)))}"
            )
        return f.astype(np.int64)

    def _repr_mimebundle_(self, **kwargs):  # display(explorer) draws the widget
        return self.widget._repr_mimebundle_(**kwargs)


class RunExplorer:
    """A run dropdown (the finished runs of a sweep) above the ``LatentExplorer`` of the chosen run.

    ``choices`` [(label, run_dir)] (``widgets.sweep_choices``, or one run); ``load_run(run_dir)``
    → (model, cfg, sampler) (``latentSpace.load_run``); ``run``: the run shown first. Switching
    runs keeps the factor combination when the new run's data has the same factors, so two β can
    be compared on one image. ``explorer`` is the current run's LatentExplorer."""

    def __init__(self, choices, load_run, run=None, factors=None, seed=0):
        import ipywidgets as w

        self.load_run, self.seed, self._factors = load_run, int(seed), factors
        self.dropdown = run_dropdown(choices, run)
        self.dropdown.observe(lambda change: self.pick(change["new"]), names="value")
        self.widget = w.VBox([self.dropdown])
        self.pick(self.dropdown.value)

    def pick(self, run_dir) -> LatentExplorer:
        """Loads ``run_dir`` and shows its explorer (the dropdown's callback)."""
        model, cfg, sampler = self.load_run(run_dir)
        old = getattr(self, "explorer", None)
        factors = self._factors
        if old is not None and old.factors is not None and _same_factors(old.sampler, sampler):
            factors = old.factors
        title = (f"<b>{Path(run_dir).name}</b>: β={cfg.beta:g} (β_norm={cfg.beta_norm:.3g}), "
                 f"{cfg.image_size}², {cfg.latent_dim} latents")  # fmt: skip
        self.explorer = LatentExplorer(model, sampler, factors=factors, seed=self.seed,
                                       title=title)  # fmt: skip
        self.widget.children = (self.dropdown, self.explorer.widget)
        return self.explorer

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)


def _same_factors(a, b) -> bool:
    return (list(a.factor_names), list(map(int, a.factor_sizes))) == (
        list(b.factor_names), list(map(int, b.factor_sizes)))  # fmt: skip


def write_demo_notebook(path, run_dir, sweep_dir=None, repo=None) -> Path:
    """A two-cell notebook at ``path`` (the imports, then the explorer) that opens ``run_dir``
    (and ``sweep_dir``'s dropdown) in the explorer, importing the repository at ``repo`` and
    running in it (paths inside it are written relative to it). What the browser check runs (sbd_vae/browser.py; tests/test_explorer_browser.py,
    scripts/explorer_screenshot.py)."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    repo = Path(repo or Path(__file__).resolve().parents[1]).resolve()

    def where(p):  # relative to the repository where it is inside, for a readable cell
        p = Path(p).resolve()
        return str(p.relative_to(repo) if p.is_relative_to(repo) else p)

    imports = (f"import os, sys\nsys.path.insert(0, {str(repo)!r})\nos.chdir({str(repo)!r})\n"
               "os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')\nimport keras  # the backend's "
               "start-up log lands here\nimport latentSpace as ls")  # fmt: skip
    call = f"ls.explorer({where(run_dir)!r}, {where(sweep_dir) if sweep_dir else None!r})"
    nb = new_notebook(cells=[new_code_cell(imports), new_code_cell(call)])  # TF's log: cell 1
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}  # fmt: skip
    from .rundir import write_text

    write_text(path, nbformat.writes(nb))
    return Path(path)
