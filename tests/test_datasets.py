"""The dataset seam (issue 19, point 1): the registry, --dataset, the sampler contract, and a tiny
real run on the dSprites-like data through training, resume, evaluation and the report, on the
backend in use (also run with KERAS_BACKEND=jax and TensorFlow unimportable: see README)."""

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import keras
import numpy as np
import pytest

import latentSpace as ls
import training
from sbd_vae import backend, datasets, rundir
from sbd_vae.config import check_or_write_config, load_config
from sbd_vae.datasets import DATASETS, DatasetEntry, GridStreams, GroundTruthSampler
from sbd_vae.dsprites import DSpritesDataset

pytestmark = pytest.mark.filterwarnings("ignore:FactorVAE. every code dim")
# The quick protocol shrunk further (as in tests/test_latent_space.py): plumbing, not scores.
TINY_QUICK = dict(num_train=300, num_test=150, batch_size=8, beta_vae_train=40, beta_vae_eval=20,
                  factor_vae_train=40, factor_vae_eval=20, num_variance_estimate=300)  # fmt: skip
FAST = {"metrics": ["mig", "sap", "beta_vae", "factor_vae"]}


@pytest.fixture(scope="module", autouse=True)
def tiny_quick_protocol():
    from sbd_vae import metrics

    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(metrics.PROTOCOLS, "quick", dict(metrics.PROTOCOLS["quick"], **TINY_QUICK))
        yield


def tiny(**overrides):
    """The test preset on the dSprites-like data: 64², tiny model, 40 steps."""
    kw = dict(dataset="dsprites", image_size=64, steps=40, log_every=10, checkpoint_every=20,
              frame_every=20)  # fmt: skip
    return training.preset_config("test", **{**kw, **overrides})


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A real one-run sweep (β=1, seed 0) of the tiny dsprites config."""
    out = tmp_path_factory.mktemp("dsprites") / "sw"
    index = training.sweep(tiny(), [1.0], [0], out, progress=False)
    assert [r["status"] for r in index["runs"]] == ["done"], index
    return out


@pytest.fixture(scope="module")
def run(sweep):
    return sweep / "beta1_seed0"


def _weights(path):
    return [v.numpy() if hasattr(v, "numpy") else np.asarray(v)
            for v in keras.models.load_model(path).variables]  # fmt: skip


# ----------------------------------------------------------------------------- the registry
def test_registry_lists_both_and_builds_dsprites():
    assert {"shapes", "dsprites"} <= set(DATASETS) and datasets.DEFAULT == "shapes"
    data = training.make_dataset(tiny())
    assert isinstance(data, DSpritesDataset) and isinstance(data, GroundTruthSampler)
    assert data.display_name == "dSprites-like (procedural)" and data.num_points == 737_280
    assert datasets.circular_factors(data) == ("orientation",)
    assert datasets.ignored_fields("dsprites") == ("data_path", "scale_range", "pos_range")
    assert datasets.ignored_fields("shapes") == ()


def test_shapes_sampler_has_the_contract(shapes_npz):
    import dataset

    data = training.make_dataset(training.preset_config("test", data_path=shapes_npz))
    assert isinstance(data, dataset.ShapesDataset) and isinstance(data, GroundTruthSampler)
    assert data.name == "shapes" and datasets.circular_factors(data) == ("azimuth",)
    assert datasets.has_device_warp(data) and not datasets.has_device_warp(DSpritesDataset())


def test_unknown_dataset_is_refused_naming_the_choices(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"--dataset 'mnist': choose one of shapes, dsprites"):
        training.preset_config("test", dataset="mnist")
    code = training.main(["train", "--preset", "test", "--dataset", "mnist", "--out",
                          str(tmp_path / "r")])  # fmt: skip
    assert code == 2 and "choose one of shapes, dsprites" in capsys.readouterr().err
    assert not (tmp_path / "r" / "config.json").exists()


def test_dsprites_refuses_another_image_size(tmp_path, capsys):
    with pytest.raises(
        ValueError, match=r"--dataset dsprites renders 64×64 images only.*--image_size 64"
    ):
        training.preset_config("test", dataset="dsprites")  # the test preset is 32²
    code = training.main(["sweep", "--preset", "test", "--dataset", "dsprites", "--betas", "1",
                          "--out", str(tmp_path / "sw")])  # fmt: skip
    assert code == 2 and "--image_size 64" in capsys.readouterr().err
    assert not (tmp_path / "sw" / "sweep.json").exists()  # refused before anything is written
    with pytest.raises(ValueError, match="--image_size 64"):
        DSpritesDataset.from_config(training.preset_config("test"))
    assert training.PRESETS["dsprites"].validate().image_size == 64


def test_config_json_without_dataset_loads_as_shapes(tmp_path):
    cfg = training.preset_config("test")
    raw = dict(asdict(cfg), backend=backend.name())  # as train writes it (backend resolved)
    del raw["dataset"]  # as every config.json written before --dataset
    rundir.write_json(tmp_path / "config.json", raw)
    assert load_config(tmp_path).dataset == "shapes"
    # and such a run resumes with today's (shapes) config: no "changed config" refusal
    assert check_or_write_config(cfg, tmp_path).dataset == "shapes"
    assert json.loads((tmp_path / "config.json").read_text())["dataset"] == "shapes"


def test_fields_a_dataset_ignores_do_not_block_a_resume(tmp_path):
    cfg = tiny()
    check_or_write_config(cfg, tmp_path)
    moved = tiny(data_path="elsewhere.npz", pos_range=(-0.1, 0.1))  # not read by dsprites
    check_or_write_config(moved, tmp_path)
    with pytest.raises(rundir.RunDirError, match="dataset"):
        check_or_write_config(training.preset_config("test", image_size=64), tmp_path)


def test_grid_streams_are_pure_functions_of_seed_and_step():
    data = DSpritesDataset()
    first = [b for _, b in zip(range(3), data.image_stream(8, seed=5))]
    resumed = next(data.image_stream(8, seed=5, start=2))
    for a, b in zip(first[2], resumed):
        np.testing.assert_array_equal(a, b)
    images, factors = first[0]
    assert images.shape == (8, 64, 64, 1) and factors.shape == (8, 5)
    np.testing.assert_array_equal(images, data.images_from_factors(factors.astype(int)))
    other = next(data.image_stream(8, seed=6))
    assert not np.array_equal(other[1], first[0][1])
    if backend.is_jax():
        return
    tf_batches = list(data.tf_dataset(8, seed=5, start=1).take(2))  # the same batches on tf.data
    for (x, f), (a, b) in zip(tf_batches, first[1:]):
        np.testing.assert_array_equal(x.numpy(), a)
        np.testing.assert_array_equal(f.numpy(), b)


# ----------------------------------------------------------------------------- a real run
def test_tiny_dsprites_run_lowers_the_loss(run):
    rows = rundir.read_history(run)
    assert [r["step"] for r in rows] == [10, 20, 30, 40]
    assert rows[-1]["recon"] < 0.8 * rows[0]["recon"], rows
    summary = json.loads((run / "summary.json").read_text())
    assert summary["data_config"]["name"] == "dsprites"
    assert json.loads((run / "config.json").read_text())["dataset"] == "dsprites"


def test_dsprites_resume_equals_uninterrupted(run, tmp_path):
    out = tmp_path / "resumed"
    assert training.train(tiny(), out, progress=False, stop_at=20)["status"] == "interrupted"
    training.train(tiny(), out, progress=False)
    assert [r["step"] for r in rundir.read_history(out)] == [10, 20, 30, 40]
    for a, b in zip(_weights(run / "model.keras"), _weights(out / "model.keras")):
        np.testing.assert_array_equal(a, b)


def test_evaluate_quick_and_report_name_the_dsprites_data(sweep, run):
    m = ls.evaluate(run, "quick", progress=False, metric_options=FAST)
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["data_config"]["name"] == "dsprites" == m["data_config"]["name"]
    assert saved["data_config"]["display_name"] == "dSprites-like (procedural)"
    grid = saved["factor_grid"]
    assert grid["circular"] == ["orientation"] and grid["categorical"] == ["shape"]
    assert grid["factor_sizes"] == [3, 6, 40, 32, 32] and "0 and 39" in grid["note"]
    assert all(np.isfinite(saved[k]) for k in saved["metric_names"])
    assert {"factor_response", "geometry", "traversals"} <= set(saved["figures"])
    assert saved["geometry"] is not None  # dsprites has pos_x and pos_y
    out = ls.report(sweep, "quick", progress=False, metric_options=FAST)
    index = (out / "index.md").read_text()
    assert index.startswith("# Sweep report: sw (dSprites-like (procedural))")


def test_check_sampler_refuses_a_shapes_sampler_for_a_dsprites_run(run, shapes_npz):
    import dataset

    shapes = dataset.ShapesDataset(shapes_npz, image_size=64)
    with pytest.raises(
        ValueError, match=r"(?s)does not match.*dataset: sampler 'shapes', run 'dsprites'"
    ):
        ls.load_run(run, sampler=shapes)
    model, cfg, sampler = ls.load_run(run)
    assert isinstance(sampler, DSpritesDataset) and cfg.dataset == "dsprites"
    ls.check_sampler(DSpritesDataset(), cfg, run)  # the right one passes


def test_evaluate_refuses_a_run_whose_config_now_names_other_data(run, tmp_path, shapes_npz,
                                                                 capsys):  # fmt: skip
    """A model trained on dsprites, its config.json edited to another dataset (or to one no longer
    registered): `latentSpace.py evaluate` stops with a message naming the files and the fix,
    and the metrics.json already there is kept."""
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    (copy / "metrics.json").write_text('{"kept": true}')
    raw = json.loads((copy / "config.json").read_text())
    rundir.write_json(copy / "config.json", dict(raw, dataset="shapes", data_path=shapes_npz))
    assert ls.main(["evaluate", str(copy), "--protocol", "quick", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"{copy}/config.json no longer describes the data this model was trained on" in err
    assert f"{copy}/summary.json: --dataset dsprites" in err
    assert "name: sampler 'shapes', run 'dsprites'" in err and "restore" in err
    rundir.write_json(copy / "config.json", dict(raw, dataset="mnist"))
    assert ls.main(["evaluate", str(copy), "--protocol", "quick", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "config.json" in err and "--dataset 'mnist': choose one of shapes, dsprites" in err
    assert json.loads((copy / "metrics.json").read_text()) == {"kept": True}


# ----------------------------------------------------------------------------- a new dataset
class MovingSquare(GridStreams):
    """A toy dataset as a user would add it: a 6 × 6 white square on a black 32² image, moved
    over an 8 × 8 grid of positions (factors "x" and "y", 3 px a step). The contract's members
    and nothing else; its config() records its identity only (datasets.data_config adds the
    grid to what runs record)."""

    name, display_name, image_size = "square", "toy moving square", 32
    factor_names, factor_sizes = ("x", "y"), (8, 8)
    circular_factors, categorical_factors = (), ()
    values = {"x": np.arange(8), "y": np.arange(8)}
    num_points = 64

    def sample_factors(self, n, rng):
        draw = rng.randint if hasattr(rng, "randint") else rng.integers
        return np.stack([draw(0, k, size=n) for k in self.factor_sizes], 1)

    def images_from_factors(self, factors):
        out = np.zeros((len(factors), 32, 32, 1), np.float32)
        for img, (x, y) in zip(out, np.asarray(factors, int)):
            img[4 + 3 * y : 10 + 3 * y, 4 + 3 * x : 10 + 3 * x] = 1.0  # rows y, columns x
        return out

    def config(self):
        return {"name": self.name, "display_name": self.display_name}


def test_a_registered_toy_dataset_trains_is_scored_and_reported(tmp_path, monkeypatch):
    """One class and one registry line: training (a one-run sweep), evaluate (scores and
    figures), the report, and a changed grid refused, with nothing else changed."""
    monkeypatch.setitem(
        DATASETS, "square", DatasetEntry(lambda cfg: MovingSquare(), image_sizes=(32,))
    )
    cfg = training.preset_config("test", dataset="square", steps=20, log_every=10,
                                 checkpoint_every=10, frame_every=10)  # fmt: skip
    assert isinstance(MovingSquare(), GroundTruthSampler)
    index = training.sweep(cfg, [1.0], [0], tmp_path / "toy", progress=False)
    assert [r["status"] for r in index["runs"]] == ["done"], index
    run = tmp_path / "toy" / "beta1_seed0"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["data_config"] == {"name": "square", "display_name": "toy moving square",
                                      "factor_names": ["x", "y"], "factor_sizes": [8, 8]}  # fmt: skip
    m = ls.evaluate(run, "quick", progress=False, metric_options=FAST)
    assert m["data_config"]["display_name"] == "toy moving square"
    assert all(np.isfinite(m[k]) for k in m["metric_names"])
    assert m["factor_grid"]["factor_sizes"] == [8, 8] and m["geometry"] is None  # no pos_x/pos_y
    assert {"traversals", "factor_response"} <= set(m["figures"])
    assert all((run / f).exists() for f in m["figures"].values())
    out = ls.report(tmp_path / "toy", "quick", progress=False, metric_options=FAST)
    assert (out / "index.md").read_text().startswith("# Sweep report: toy (toy moving square)")
    assert (out / "scores.csv").exists()
    # the class changes its grid later: its runs are refused, not scored on other data
    monkeypatch.setattr(MovingSquare, "factor_sizes", (8, 9))
    with pytest.raises(ValueError, match=r"(?s)no longer describes.*factor_sizes"):
        ls.load_run(run)


def test_readme_datasets_section_names_both():
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text.split("## Datasets", 1)[1].split("\n## ", 1)[0]
    for word in ("--dataset", "shapes", "dsprites", "sbd_vae/datasets.py", "DATASETS"):
        assert word in section, word
