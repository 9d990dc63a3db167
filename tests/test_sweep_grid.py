"""A sweep trains its own grid only: runs that ``sweep.json`` keeps from an earlier, wider grid (or
that another sweep process into the same folder is training) are listed, never trained here."""

import json
from dataclasses import replace

import training
from sbd_vae import rundir
from sbd_vae.config import check_or_write_config
from sbd_vae.sweep import grid_names, local_sweep


def _fake_train(seen):
    def train(cfg, out, fresh=False, progress=True):
        seen.append(out.name)
        out.mkdir(parents=True, exist_ok=True)
        rundir.write_json(out / "summary.json", {"step": cfg.steps, "loss": 1.0, "recon": 1.0,
                                                 "kl": 0.0})  # fmt: skip
        return {"loss": 1.0, "recon": 1.0, "kl": 0.0}

    return train


def test_sweep_leaves_other_grids_runs_alone(tmp_path):
    base = training.preset_config("test")
    seen = []
    # a first sweep process writes its grid (β 16, seed 2) as pending, then is still training it
    first = {"name": "beta16_seed2", "beta": 16.0, "seed": 2, "objective": "beta",
             "beta_norm": 0.1, "status": "running"}  # fmt: skip
    rundir.write_json(tmp_path / "sweep.json", {"preset": "test", "runs": [first]})
    index = local_sweep(base, [4], [0], tmp_path, train_fn=_fake_train(seen), progress=False)
    assert seen == ["beta4_seed0"]  # not beta16_seed2
    on_disk = {r["name"]: r for r in json.loads((tmp_path / "sweep.json").read_text())["runs"]}
    assert on_disk["beta4_seed0"]["status"] == "done"
    assert on_disk["beta16_seed2"]["status"] == "running"  # listed as it was, untouched
    assert {r["name"] for r in index["runs"]} == {"beta4_seed0", "beta16_seed2"}


def test_grid_names_cover_objectives_betas_seeds():
    base = training.preset_config("test")
    names = grid_names(base, [1, 4], [0, 2], objectives=["beta", "tcvae"])
    assert names == {"beta1_seed0", "beta4_seed0", "beta1_seed2", "beta4_seed2",
                     "tcvae_beta1_seed0", "tcvae_beta4_seed0", "tcvae_beta1_seed2",
                     "tcvae_beta4_seed2"}  # fmt: skip


def test_sweep_exit_status_counts_its_grid_only(tmp_path, monkeypatch):
    """`training.py sweep` exits 0 when its own grid is done, whatever else sweep.json lists."""
    other = {"name": "beta16_seed2", "beta": 16.0, "seed": 2, "objective": "beta",
             "beta_norm": 0.1, "status": "failed"}  # fmt: skip
    rundir.write_json(tmp_path / "sweep.json", {"preset": "test", "runs": [other]})
    monkeypatch.setattr(training, "train", _fake_train([]))
    rc = training.main(["sweep", "--preset", "test", "--betas", "4", "--seeds", "0",
                        "--out", str(tmp_path), "--quiet"])  # fmt: skip
    assert rc == 0


def test_a_grid_trained_before_the_sweep_gets_its_index(tmp_path):
    """Runs made one by one with `training.py train` into the sweep's folder: the sweep trains
    nothing and still writes sweep.json, which the report and the notebooks read."""
    base = training.preset_config("test")
    for beta in (1, 4):
        _fake_train([])(base, tmp_path / f"beta{beta}_seed0")
    seen = []
    local_sweep(base, [1, 4], [0], tmp_path, train_fn=_fake_train(seen), progress=False)
    assert seen == []
    runs = json.loads((tmp_path / "sweep.json").read_text())["runs"]
    assert [(r["name"], r["status"]) for r in runs] == [("beta1_seed0", "done"),
                                                        ("beta4_seed0", "done")]  # fmt: skip
    # the sweep table shows their losses, read from each run's summary.json
    assert [(r["loss"], r["recon"], r["kl"]) for r in runs] == [(1.0, 1.0, 0.0)] * 2


def test_a_finished_run_with_other_flags_is_not_adopted(tmp_path):
    """A run finished in the sweep's folder with another config (here --lr) is the wrong
    experiment: the sweep lists it as failed, naming the field (so it is neither published nor
    reported as the grid's), and does not retrain or rewrite it; a finished run with the grid's
    config is adopted."""
    base = training.preset_config("test")
    for beta, lr in ((1, base.lr), (4, base.lr * 10)):
        run = tmp_path / "sw" / f"beta{beta}_seed0"
        _fake_train([])(base, run)
        cfg = replace(base, beta=float(beta), lr=lr)
        check_or_write_config(cfg, run)
    before = (tmp_path / "sw" / "beta4_seed0" / "config.json").read_bytes()
    seen = []
    index = local_sweep(base, [1, 4], [0], tmp_path / "sw", train_fn=_fake_train(seen),
                        progress=False)  # fmt: skip
    status = {r["name"]: r for r in index["runs"]}
    assert seen == [] and status["beta1_seed0"]["status"] == "done"
    assert status["beta4_seed0"]["status"] == "failed" and "lr" in status["beta4_seed0"]["error"]
    assert (tmp_path / "sw" / "beta4_seed0" / "config.json").read_bytes() == before
