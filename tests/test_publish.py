"""`sweep(..., publish=DIR)`: finished runs are copied into a results folder without their
checkpoints, runs already there are skipped, and a larger --steps extends them (make study)."""

import json

import training


def test_publish_skips_published_runs_and_extends_shorter_ones(shapes_npz, tmp_path):
    cfg = training.preset_config("test", data_path=str(shapes_npz), steps=20)
    pub = tmp_path / "results"
    index = training.sweep(cfg, [1.0, 4.0], [0, 1], tmp_path / "a", progress=False, publish=pub)
    # seed-major: every β of seed 0 before seed 1, so a stopped study has whole β grids
    assert [r["name"] for r in index["runs"]] == [
        "beta1_seed0", "beta4_seed0", "beta1_seed1", "beta4_seed1",
    ]  # fmt: skip
    for r in index["runs"]:
        run = pub / r["name"]
        assert sorted(p.name for p in run.iterdir()) == sorted(training.PUBLISHED_FILES)
    assert json.loads((pub / "sweep.json").read_text())["runs"][0]["status"] == "done"
    assert not [p for p in pub.iterdir() if p.name.startswith(".")]  # no temporary folder left
    # the published model is the trained one without Adam's moments: smaller, same encoder
    import keras
    import numpy as np

    src, dst = tmp_path / "a" / "beta1_seed0" / "model.keras", pub / "beta1_seed0" / "model.keras"
    assert dst.stat().st_size < 0.6 * src.stat().st_size
    x = np.random.RandomState(0).rand(4, 32, 32, 1).astype("float32")
    a, b = (keras.models.load_model(p, compile=False) for p in (src, dst))
    np.testing.assert_array_equal(np.asarray(a.encoder(x)[0]), np.asarray(b.encoder(x)[0]))

    # another machine, another scratch folder: what is published is not trained again
    again = training.sweep(cfg, [1.0, 4.0], [0, 1], tmp_path / "b", progress=False, publish=pub)
    assert all(r["status"] == "done" for r in again["runs"])
    assert not (tmp_path / "b" / "beta1_seed0").exists()

    # a longer study extends the runs (resuming the scratch checkpoints) and republishes them
    longer = training.preset_config("test", data_path=str(shapes_npz), steps=40)
    training.sweep(longer, [1.0], [0], tmp_path / "a", progress=False, publish=pub)
    summary = json.loads((pub / "beta1_seed0" / "summary.json").read_text())
    history = (pub / "beta1_seed0" / "history.csv").read_text().splitlines()
    assert summary["step"] == 40 and history[-1].startswith("40,")
    assert json.loads((pub / "beta4_seed0" / "summary.json").read_text())["step"] == 20
