"""The JAX backend, run where TensorFlow cannot be imported, checked against TensorFlow.

One subprocess (``KERAS_BACKEND=jax``, ``tests/no_tensorflow`` first on PYTHONPATH so that
``import tensorflow`` fails, two virtual CPU devices) trains the test preset on the real small
render: an uninterrupted run, the same run stopped at step 40 and resumed, a one-device and a
two-device (keras.distribution.DataParallel) run on the same batches; it scores the first with
the quick protocol and encodes a fixed batch. This process (TensorFlow) then checks:
- the JAX run trained (its reconstruction fell), was scored, and never imported TensorFlow;
- resume is bit-exact within JAX (history and every checkpointed variable);
- two devices give the one-device step, within 1e-5 (relative, on losses of ~700 nats);
- its model.keras loads under TensorFlow and gives the same posterior means within 1e-4;
- config.json records the backend, and resuming the run under TensorFlow is refused, by name.
A second subprocess runs ``scripts/gpu_study.py --smoke`` the same way.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import training

REPO = Path(__file__).resolve().parents[1]
NO_TF = REPO / "tests" / "no_tensorflow"
RTOL = 1e-5

SCRIPT = r"""
import json, sys
from pathlib import Path
import numpy as np
import jax
import latentSpace, training
from sbd_vae import encoding

data, out = sys.argv[1], Path(sys.argv[2])
cfg = training.preset_config("test", beta=4.0, seed=0, data_path=data)
training.train(cfg, out / "full", progress=False)
training.train(cfg, out / "resumed", progress=False, stop_at=40)
training.train(cfg, out / "resumed", progress=False)
short = dict(steps=30, beta=4.0, data_path=data)
training.train(training.preset_config("test", distribute="off", **short), out / "one", progress=False)
training.train(training.preset_config("test", distribute="mirrored", **short), out / "two",
               progress=False)
latentSpace.evaluate(out / "full", protocol="quick", progress=False, figures=False)
model, _, _ = latentSpace.load_run(out / "full")
x = np.random.RandomState(7).rand(16, 32, 32, 1).astype("float32")
np.save(out / "x.npy", x)
np.save(out / "mean_jax.npy", encoding.encode(model, x)[0])
print(json.dumps({"devices": len(jax.devices()), "tensorflow": sys.modules.get("tensorflow")
                  is not None}))
"""


def jax_env(devices: int = 1) -> dict:
    env = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=f"{NO_TF}{os.pathsep}{REPO}")
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    return env


@pytest.fixture(scope="module")
def jax_runs(shapes_npz, tmp_path_factory):
    out = tmp_path_factory.mktemp("jax")
    r = subprocess.run([sys.executable, "-c", SCRIPT, shapes_npz, str(out)], env=jax_env(2),
                       capture_output=True, text=True, timeout=900, cwd=REPO)  # fmt: skip
    if r.returncode != 0:
        pytest.fail(f"the JAX subprocess failed ({r.returncode}):\n{r.stdout}\n{r.stderr[-6000:]}")
    info = json.loads(r.stdout.strip().splitlines()[-1])
    return out, info


def test_tensorflow_is_blocked_in_the_jax_subprocess():
    """The blocker works: without it this file would prove nothing about TensorFlow."""
    r = subprocess.run([sys.executable, "-c", "import tensorflow"], env=jax_env(),
                       capture_output=True, text=True, cwd=REPO)  # fmt: skip
    assert r.returncode != 0 and "tensorflow is blocked" in r.stderr


def test_jax_run_trains_and_is_scored_without_tensorflow(jax_runs):
    out, info = jax_runs
    assert info == {"devices": 2, "tensorflow": False}
    rows = training.rundir.read_history(out / "full")
    assert rows[-1]["step"] == 100 and rows[-1]["recon"] < rows[0]["recon"] - 50
    summary = json.loads((out / "full" / "summary.json").read_text())
    assert summary["backend"] == "jax" and "jax" in summary and "tf" not in summary
    metrics = json.loads((out / "full" / "metrics.json").read_text())
    assert 0.0 <= metrics["mig"] <= 1.0 and metrics["protocol"] == "quick"
    assert any((out / "full" / "tb").iterdir())  # TensorBoard without TensorFlow


def test_jax_resume_is_bit_exact(jax_runs):
    out, _ = jax_runs
    full, resumed = (training.rundir.read_history(out / n) for n in ("full", "resumed"))
    drop = ("img_per_s", "elapsed_s")
    assert [{k: v for k, v in r.items() if k not in drop} for r in full] == [
        {k: v for k, v in r.items() if k not in drop} for r in resumed
    ]
    a, b = (np.load(out / n / "checkpoints" / "ckpt-00000100.npz") for n in ("full", "resumed"))
    assert [k for k in a.files if k != "meta"] and all(
        np.array_equal(a[k], b[k]) for k in a.files if k != "meta"
    )


def test_two_jax_devices_equal_one(jax_runs):
    out, _ = jax_runs
    one, two = (training.rundir.read_history(out / n) for n in ("one", "two"))
    assert json.loads((out / "two" / "summary.json").read_text())["devices"] == 2
    assert json.loads((out / "one" / "summary.json").read_text())["devices"] == 1
    for key in ("loss", "recon", "kl", "kl_0"):
        np.testing.assert_allclose([r[key] for r in two], [r[key] for r in one], rtol=RTOL,
                                   atol=1e-6, err_msg=key)  # fmt: skip


def test_jax_model_loads_under_tensorflow_with_the_same_posterior_means(jax_runs):
    import keras

    import variationAutoEncoder  # noqa: F401  registers the classes
    from sbd_vae import encoding

    out, _ = jax_runs
    assert keras.backend.backend() == "tensorflow"
    model = keras.saving.load_model(out / "full" / "model.keras", compile=False)
    mean = encoding.encode(model, np.load(out / "x.npy"))[0]
    np.testing.assert_allclose(mean, np.load(out / "mean_jax.npy"), atol=1e-4)


def test_resuming_a_jax_run_under_tensorflow_is_refused(jax_runs, shapes_npz):
    out, _ = jax_runs
    assert json.loads((out / "resumed" / "config.json").read_text())["backend"] == "jax"
    cfg = training.preset_config("test", beta=4.0, seed=0, data_path=shapes_npz, steps=200)
    with pytest.raises(training.rundir.RunDirError, match="KERAS_BACKEND=jax"):
        training.train(cfg, out / "resumed", progress=False)
    assert json.loads((out / "resumed" / "config.json").read_text())["backend"] == "jax"


def test_a_run_asking_for_another_backend_is_refused(shapes_npz, tmp_path):
    cfg = training.preset_config("test", data_path=shapes_npz, backend="jax")
    with pytest.raises(ValueError, match="KERAS_BACKEND=jax python training.py"):
        training.train(cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "config.json").exists()


def test_gpu_study_smoke_under_jax_without_tensorflow(shapes_npz, tmp_path):
    cmd = [sys.executable, str(REPO / "scripts" / "gpu_study.py"), "--smoke", "--data",
           shapes_npz, "--out", str(tmp_path / "runs"), "--pack", str(tmp_path / "pack"),
           "--betas", "1", "102", "--archive_mib", "1"]  # fmt: skip
    r = subprocess.run(cmd, env=jax_env(), capture_output=True, text=True, timeout=900, cwd=REPO)
    assert r.returncode == 0, r.stderr[-6000:]
    manifest = json.loads((tmp_path / "pack" / "manifest.json").read_text())
    rows = json.loads((tmp_path / "pack" / "throughput.json").read_text())["rows"]
    assert {(r["batch_size"], r["precision"]) for r in rows} == {
        (b, p) for b in (8, 16) for p in ("float32", "mixed_bfloat16")
    } and all(r["img_per_s"] > 0 for r in rows)
    assert [r["status"] for r in manifest["runs"]] == ["done", "done"]
    packed = {m for a in manifest["archives"] for m in a["members"]}
    for run in ("beta1_seed0", "beta102_seed0"):
        assert {f"{run}/{n}" for n in ("model.keras", "config.json", "history.csv")} <= packed
    for a in manifest["archives"]:
        assert (tmp_path / "pack" / a["archive"]).stat().st_size <= 2**20
    assert len(manifest["archives"]) <= 2


def test_gpu_study_dsprites_smoke_under_jax_without_tensorflow(tmp_path):
    """``--dataset dsprites``: no --data (procedural images), the dsprites preset at 64² with
    disentanglement_lib's nets (the smoke run shrinks latents, batch and steps, not the image),
    every run labelled with its fraction of DLIB_STEPS, snapshots on a doubling grid packed
    last (the first left out when the archives are full), and a packed model that loads here
    (TensorFlow) and decodes 64² images."""
    import zipfile

    import keras

    import variationAutoEncoder  # noqa: F401  registers the classes
    from sbd_vae.config import DLIB_STEPS

    pack = tmp_path / "pack"
    cmd = [sys.executable, str(REPO / "scripts" / "gpu_study.py"), "--smoke", "--dataset",
           "dsprites", "--betas", "1", "4", "--out", str(tmp_path / "runs"), "--pack", str(pack),
           "--archive_mib", "8"]  # fmt: skip
    r = subprocess.run(cmd, env=jax_env(), capture_output=True, text=True, timeout=900, cwd=REPO)
    assert r.returncode == 0, r.stderr[-6000:]
    manifest = json.loads((pack / "manifest.json").read_text())
    runs = manifest["runs"]
    assert [(x["run"], x["status"], x["steps"]) for x in runs] == [
        ("beta1_seed0", "done", 20), ("beta4_seed0", "done", 20)]  # fmt: skip
    assert all(x["full_steps"] == DLIB_STEPS for x in runs)
    assert all(x["fraction_of_full"] == pytest.approx(20 / DLIB_STEPS, rel=1e-3) for x in runs)
    cfg = json.loads((tmp_path / "runs" / "beta4_seed0" / "config.json").read_text())
    assert (cfg["dataset"], cfg["preset"], cfg["image_size"], cfg["encoder"], cfg["decoder"]) == (
        "dsprites", "dsprites", 64, "dlib_conv", "dlib_deconv")  # fmt: skip
    assert cfg["snapshot_steps"] == [5, 10, 20] and cfg["backend"] == "jax"
    study = json.loads((pack / "study.json").read_text())
    assert (study["dataset"], study["full_steps"]) == ("dsprites", DLIB_STEPS)
    rows = json.loads((pack / "throughput.json").read_text())["rows"]
    assert {x["image_size"] for x in rows} == {64} and all(x["img_per_s"] > 0 for x in rows)
    # every model is packed; what the 2 × 8 MiB archives could not hold is snapshots only
    packed = {m for a in manifest["archives"] for m in a["members"]}
    for run in ("beta1_seed0", "beta4_seed0"):
        assert {f"{run}/{n}" for n in ("model.keras", "config.json", "summary.json")} <= packed
    snaps = {f"{run}/snapshots/snap-{s:08d}.npz" for run in ("beta1_seed0", "beta4_seed0")
             for s in (5, 10, 20)}  # fmt: skip
    assert set(manifest["left_out"]) and set(manifest["left_out"]) | (packed & snaps) == snaps
    for a in manifest["archives"]:
        assert (pack / a["archive"]).stat().st_size <= 8 * 2**20
    with zipfile.ZipFile(pack / manifest["archives"][0]["archive"]) as zf:
        zf.extract("beta4_seed0/model.keras", tmp_path / "unzipped")
    model = keras.saving.load_model(tmp_path / "unzipped" / "beta4_seed0" / "model.keras",
                                    compile=False)  # fmt: skip
    z = np.zeros((2, 4), "float32")
    assert tuple(keras.ops.convert_to_numpy(model.decoder(z)).shape) == (2, 64, 64, 1)
