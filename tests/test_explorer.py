"""The latent explorer (sbd_vae/explorer.py) driven through its own widget callbacks: a slider
shows what the decoder gives for the sliders' vector, reset returns to the posterior mean,
active latents come first, the factor selectors pick the input, the run dropdown switches
models; and vae_viz's sweep browser (sbd_vae/trainviz.browse). Models are freshly built
`test`-preset models (their decoder is a fixed function of z, which is all these tests need) and
one real 2-run sweep of 20 steps on the small bpy render. Runs on TensorFlow and on JAX."""

import io
import json

import numpy as np
import pytest
from PIL import Image

import latentSpace as ls
import training
from sbd_vae import rundir, trainviz, widgets
from sbd_vae.encoding import encode
from sbd_vae.explorer import LatentExplorer, RunExplorer, latent_order

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cfg(shapes_npz):
    return training.preset_config("test", data_path=str(shapes_npz))


@pytest.fixture(scope="module")
def sampler(cfg):
    return training.make_dataset(cfg)


@pytest.fixture(scope="module")
def models(cfg):
    """Two untrained models of different weights (seeds 0 and 1)."""
    from dataclasses import replace

    return [training.build_model(replace(cfg, seed=s)) for s in (0, 1)]


def _decoder_says(model, z) -> np.ndarray:
    """sigmoid(decoder(z)) by the eager Keras call, not the explorer's compiled path: (S, S, 1)."""
    import keras

    logits = model.decoder(keras.ops.convert_to_tensor(np.asarray(z, np.float32)[None]))
    return np.asarray(keras.ops.convert_to_numpy(keras.ops.sigmoid(logits)))[0]


def _shown(image_widget) -> np.ndarray:
    """The grey levels (0..1) of the PNG a widgets.Image shows, downscaled back to (S, S)."""
    pixels = np.asarray(Image.open(io.BytesIO(image_widget.value)), np.float32) / 255.0
    k = pixels.shape[0] // 32  # test preset: 32², shown upscaled by an integer factor
    return pixels[::k, ::k]


def test_a_slider_shows_what_the_decoder_gives(models, sampler):
    model = models[0]
    ex = LatentExplorer(model, sampler, factors=[1, 2, 0, 3, 4, 5])
    before = ex.decoded.copy()
    d = int(ex.order[0])
    ex.sliders[d].value = float(ex.mean[d]) + 2.0  # the slider's own callback decodes
    want = ex.mean.copy()
    want[d] += 2.0
    np.testing.assert_allclose(ex.z, want, atol=1e-6)
    expected = _decoder_says(model, want)  # (S, S, 1)
    np.testing.assert_allclose(ex.decoded, expected, atol=1e-5)
    np.testing.assert_allclose(_shown(ex.output_image), expected[..., 0], atol=1.0 / 255 + 1e-6)
    assert np.abs(ex.decoded - before).max() > 1e-4  # the image did change
    assert ex.last_ms > 0 and "decoded in" in ex.timing.value


def test_reset_returns_every_slider_to_the_posterior_mean(models, sampler):
    model = models[0]
    ex = LatentExplorer(model, sampler)
    mean = encode(model, ex.input)[0][0]
    np.testing.assert_allclose(ex.z, mean, atol=1e-6)  # it opens at μ
    at_mean = ex.decoded.copy()
    for s in ex.sliders[:3]:
        s.value = s.max
    assert not np.allclose(ex.z, mean)
    ex.reset_button.click()
    np.testing.assert_allclose(ex.z, mean, atol=1e-6)
    np.testing.assert_allclose(ex.decoded, _decoder_says(model, mean), atol=1e-5)
    np.testing.assert_allclose(ex.decoded, at_mean, atol=1e-6)


def test_active_latents_come_first_with_their_kl(models, sampler):
    kl = np.array([0.5, 3.0, 0.0, 1.0, 2.0, 0.1])
    activity = np.array([0.5, 0.0, 0.0, 1.0, 0.2, 0.0])  # active: z0, z3, z4 (> 0.01)
    assert latent_order(kl, activity).tolist() == [4, 3, 0, 1, 5, 2]
    stats = dict(kl=kl, activity=activity, lo=np.full(6, -3.0), hi=np.full(6, 3.0))
    ex = LatentExplorer(models[0], sampler, stats=stats)
    rows = ex.widget.children[2].children[1:-1]  # title, then one (slider, KL) row per latent
    assert [r.children[0].description for r in rows] == ["z4", "z3", "z0", "z1", "z5", "z2"]
    labels = [r.children[1].value for r in rows]
    assert "KL 2.00 nats" in labels[0] and "inactive" not in labels[0]
    assert "KL 3.00 nats" in labels[3] and "inactive" in labels[3]


def test_the_factor_selectors_pick_the_input(models, sampler):
    model = models[0]
    ex = LatentExplorer(model, sampler, factors=[0, 0, 0, 0, 0, 0])
    ex.factor_widgets[0].value = 3  # shape: the dropdown's callback re-encodes
    want = np.array([3, 0, 0, 0, 0, 0])
    assert ex.factors.tolist() == want.tolist()
    image = sampler.images_from_factors(want[None])[0]
    np.testing.assert_array_equal(ex.input, image)
    np.testing.assert_allclose(ex.z, encode(model, image)[0][0], atol=1e-6)
    ex.random_button.click()
    assert ex.factors.shape == (6,) and (ex.factors < np.array(sampler.factor_sizes)).all()


def test_bad_input_names_the_argument(models, sampler):
    with pytest.raises(ValueError, match=r"factors=\[1, 2\].*one grid index per factor"):
        LatentExplorer(models[0], sampler, factors=[1, 2])
    with pytest.raises(ValueError, match=r"this model takes \(N, 32, 32, 1\)"):
        LatentExplorer(models[0], sampler, image=np.zeros((64, 64, 1)))


def test_the_run_dropdown_switches_models_and_keeps_the_image(models, sampler, cfg):
    runs = {"a": models[0], "b": models[1]}
    choices = [("β=1", "a"), ("β=4", "b")]
    rex = RunExplorer(
        choices, lambda run: (runs[str(run)], cfg, sampler), factors=[2, 1, 1, 0, 3, 4]
    )
    assert rex.explorer.model is models[0]
    rex.explorer.set_factors([5, 3, 1, 4, 0, 12])
    rex.dropdown.value = rex.dropdown.options[1][1]  # the dropdown's callback loads run b
    ex = rex.explorer
    assert ex.model is models[1] and ex.factors.tolist() == [5, 3, 1, 4, 0, 12]
    np.testing.assert_allclose(ex.decoded, _decoder_says(models[1], ex.mean), atol=1e-5)
    assert rex.widget.children[1] is ex.widget


@pytest.fixture(scope="module")
def sweep(shapes_npz, tmp_path_factory):
    out = tmp_path_factory.mktemp("explorer") / "sweep"
    cfg = training.preset_config("test", data_path=str(shapes_npz), steps=20)
    training.sweep(cfg, [1.0, 4.0], [0], out, progress=False)
    return out


def test_latent_space_explorer_opens_a_run_of_a_sweep(sweep):
    rex = ls.explorer(sweep / "beta4_seed0", sweep)
    labels = [label for label, _ in rex.dropdown.options]
    assert labels == ["β=1 · seed 0 · beta1_seed0", "β=4 · seed 0 · beta4_seed0"]
    assert rex.dropdown.value == sweep / "beta4_seed0"
    ex = rex.explorer
    model, _, sampler = ls.load_run(sweep / "beta4_seed0")
    np.testing.assert_allclose(ex.stats["kl"], ls.kl_per_latent(*ls.encode(
        model, sampler.images_from_factors(sampler.sample_factors(256, np.random.RandomState(0))))
    ).mean(axis=0), rtol=1e-5, atol=1e-7)  # fmt: skip  # the KL the notebook plots
    alone = ls.explorer(sweep / "beta1_seed0")  # no sweep: that run only
    assert [p for _, p in alone.dropdown.options] == [sweep / "beta1_seed0"]


def test_sweep_choices_without_finished_runs_say_how_to_train(tmp_path):
    rundir.write_json(tmp_path / "sweep.json",
                      {"runs": [{"name": "beta1_seed0", "beta": 1.0, "seed": 0}]})  # fmt: skip
    with pytest.raises(
        ValueError, match=r"no run of sweep.json has a model.keras.*training.py sweep"
    ):
        widgets.sweep_choices(tmp_path)
    assert json.loads((tmp_path / "sweep.json").read_text())["runs"]  # nothing was rewritten


def test_vae_viz_browser_draws_the_run_the_dropdown_picks(sweep, monkeypatch):
    drawn = []
    monkeypatch.setattr(trainviz, "show_run", drawn.append)
    box = trainviz.browse(sweep)
    dropdown = box.children[0]
    assert drawn == [sweep / "beta1_seed0"]
    dropdown.value = sweep / "beta4_seed0"
    assert drawn == [sweep / "beta1_seed0", sweep / "beta4_seed0"]
