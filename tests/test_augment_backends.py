"""The keras.ops warp on TensorFlow and JAX (issue 13): the parameter stream, bit-identity with
the earlier raw-op implementation on TF, the same pixels on JAX within 1/255, and no tensorflow
import on JAX.

The JAX side runs once, in one subprocess (KERAS_BACKEND=jax, with every attempt to import
tensorflow recorded and refused), and writes what it rendered to an npz that the tests here
compare with the TF process's own renders."""

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import dataset
from dataset import WARP_KEYS, ShapesDataset

ROOT = Path(__file__).resolve().parents[1]
N_FACTORS, STREAM_B, EXPORT_N = 40, 16, 20


def _fixed_factors(ds):
    return ds.sample_factors(N_FACTORS, np.random.RandomState(0))  # (40, 6)


# ---------------------------------------------------------------------------- param stream
def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_param_stream_is_deterministic_and_resumes(tiny_dataset):
    ds = tiny_dataset
    head = [p for p, _ in zip(ds.param_stream(8, seed=5), range(4))]
    again = [p for p, _ in zip(ds.param_stream(8, seed=5), range(4))]
    tail = [p for p, _ in zip(ds.param_stream(8, seed=5, start=2), range(2))]
    assert all(_same(a, b) for a, b in zip(head, again))
    assert all(_same(a, b) for a, b in zip(head[2:], tail))  # start=2: exactly batches 2, 3
    assert _same(ds.param_batch(8, 5, 3), head[3])  # batch k needs no predecessor
    assert not np.array_equal(head[0]["factors"], head[1]["factors"])
    assert not np.array_equal(head[0]["factors"], ds.param_batch(8, 6, 0)["factors"])
    p = ds.param_batch(256, seed=0, k=0)
    assert p["base_idx"].dtype == np.int32 and p["base_idx"].shape == (256,)
    assert all(p[k].dtype == np.float32 and p[k].shape == (256,) for k in WARP_KEYS[1:])
    f = p["factors"]
    assert f.dtype == np.float32 and f.shape == (256, 6)
    np.testing.assert_array_equal(f[:, 3:], np.stack([p["scale"], p["pos_x"], p["pos_y"]], 1))
    assert 0.35 <= f[:, 3].min() and f[:, 3].max() <= 0.7 and len(np.unique(f[:, 3])) > 200
    assert -0.2 <= f[:, 4:].min() and f[:, 4:].max() <= 0.2
    flat = np.ravel_multi_index(f[:, :3].astype(int).T, ds.rendered_sizes)
    np.testing.assert_array_equal(flat, p["base_idx"])  # the factors name the base render


def test_discrete_params_reproduce_images_from_factors(tiny_dataset):
    ds = tiny_dataset
    p = ds.param_batch(32, seed=1, k=4, discrete=True)
    f = p["factors"]
    assert np.all(f == np.round(f)) and np.all(f.max(0) < np.array(ds.factor_sizes))
    x = np.asarray(ds.warp(*[p[k] for k in WARP_KEYS]))  # eager
    np.testing.assert_array_equal(ds.images_from_factors(f.astype(int)), x)
    images, factors = next(ds.image_stream(32, seed=1, start=4, discrete=True))  # compiled
    np.testing.assert_array_equal(images, x)
    np.testing.assert_array_equal(factors, f)


@pytest.mark.parametrize(
    "call, word",
    [
        (lambda ds: ds.param_batch(0, 0, 0), "batch_size"),
        (lambda ds: ds.param_batch(4, -1, 0), "seed"),
        (lambda ds: ds.param_batch(4, 0, 1.5), "k"),
        (lambda ds: ds.param_stream(4, 0, start=-1), "start"),
        (lambda ds: ds.param_stream(True, 0), "batch_size"),
        (lambda ds: ds.image_stream(4, "0"), "seed"),
        (lambda ds: ds.warp([[0]], [0.5], [0.0], [0.0]), "base_idx"),
        (lambda ds: ds.warp([0, 1], [0.5], [0.0, 0.0], [0.0, 0.0]), "one length"),
        (lambda ds: ds.images_from_factors(np.zeros((2, 6), int), chunk=0), "chunk"),
    ],
)
def test_bad_stream_and_warp_arguments_name_themselves(tiny_dataset, call, word):
    with pytest.raises(ValueError, match=word):
        call(tiny_dataset)


# ---------------------------------------------------------------------------- TF bit-identity
def _raw_op_warp(ds, base_idx, scale, pos_x, pos_y):
    """The implementation before issue 13, kept as the reference: tf.gather into the pyramid
    and tf.raw_ops.ImageProjectiveTransformV3, in a tf.function."""
    import tensorflow as tf

    pyramid = tf.constant(np.asarray(ds._pyramid))
    ratios = tf.constant(ds._ratios, tf.float32)
    s, n_base, n_levels = ds.image_size, ds._num_base, len(ds._ratios)
    c = (s - 1) / 2.0

    @tf.function
    def warp(base_idx, scale, pos_x, pos_y):
        level = tf.floor(-tf.math.log(scale) / math.log(2.0))
        level = tf.cast(tf.clip_by_value(level, 0.0, n_levels - 1.0), tf.int32)
        k = tf.gather(ratios, level)
        src = tf.gather(pyramid, level * n_base + base_idx)
        a = k / scale
        bx = ((-c - pos_x * s) / scale + c + 0.5) * k - 0.5
        by = ((-c - pos_y * s) / scale + c + 0.5) * k - 0.5
        zero = tf.zeros_like(a)
        return tf.raw_ops.ImageProjectiveTransformV3(
            images=src,
            transforms=tf.stack([a, zero, bx, zero, a, by, zero, zero], axis=1),
            output_shape=tf.constant([s, s], tf.int32),
            fill_value=tf.constant(0.0),
            interpolation="BILINEAR",
            fill_mode="CONSTANT",
        )

    return warp(base_idx, scale, pos_x, pos_y).numpy()


@pytest.mark.parametrize("size", [32, 128])
def test_warp_on_tf_is_bit_identical_to_the_raw_op(shapes_npz, size):
    ds = ShapesDataset(shapes_npz, image_size=size)
    p = ds.param_batch(48, seed=2, k=0)
    args = [p[k] for k in WARP_KEYS]
    ref = _raw_op_warp(ds, *args)
    np.testing.assert_array_equal(np.asarray(ds.warp(*args)), ref)  # eager keras.ops
    np.testing.assert_array_equal(np.asarray(ds._compiled_warp()(*args)), ref)  # tf.function
    assert ref.max() > 0.3


@pytest.mark.parametrize("size", [32, 48, 64, 200])
def test_numpy_pyramid_is_bit_identical_to_tf_image_resize(shapes_npz, size):
    """Area averaging down (integer and fractional ratios), bilinear + antialias up."""
    import tensorflow as tf

    with np.load(shapes_npz) as z:
        base = z["images"][:12]  # uint8 (12, 128, 128, 1)
    pyramid, ratios = dataset._pyramid(base, size, 0.35)
    x = tf.constant(base, tf.float32) / 255.0
    for lvl, ratio in enumerate(ratios):
        s_l = round(ratio * size)
        method = dict(method="area") if s_l < 128 else dict(method="bilinear", antialias=True)
        ref = x.numpy() if s_l == 128 else tf.image.resize(x, (s_l, s_l), **method).numpy()
        level = pyramid[lvl * 12 : (lvl + 1) * 12]
        np.testing.assert_array_equal(level[:, :s_l, :s_l], ref)
        assert not level[:, s_l:].any() and not level[:, :, s_l:].any()  # the zero canvas


# ---------------------------------------------------------------------------- JAX subprocess
JAX_SCRIPT = textwrap.dedent(
    """
    import importlib.abc, json, sys
    attempts = []

    class NoTensorFlow(importlib.abc.MetaPathFinder):
        # refuses tensorflow like a machine without it, and records who asked
        def find_spec(self, name, path=None, target=None):
            if name == "tensorflow" or name.startswith("tensorflow."):
                attempts.append(name)
                raise ImportError(f"{name} is not installed here (test)")

    sys.meta_path.insert(0, NoTensorFlow())
    import jax
    import numpy as np

    import data, dataset
    from sbd_vae import backend

    npz, out_dir = sys.argv[1], sys.argv[2]
    assert backend.name() == "jax", backend.name()
    ds = dataset.ShapesDataset(npz, image_size=32, num_scales=8, num_positions=16)
    out = {}
    f = ds.sample_factors(N_FACTORS, np.random.RandomState(0))
    out["iff"] = ds.images_from_factors(f)

    @jax.jit
    def step(p):  # what a train step does: warp on the device, inside the jitted function
        return ds.warp(*[p[k] for k in dataset.WARP_KEYS]).mean()

    p = ds.param_batch(STREAM_B, 3, 0)
    out["step_mean"] = np.float32(step({k: p[k] for k in dataset.WARP_KEYS}))
    images, factors = next(ds.image_stream(STREAM_B, 3))
    out["stream_images"], out["stream_factors"] = images, factors
    try:
        ds.tf_dataset(4, 0)
        out["tf_dataset_refused"] = False
    except RuntimeError as e:
        out["tf_dataset_refused"] = "param_stream" in str(e)
    dataset.write_sheet(ds, f"{out_dir}/sheet.png", n=9)
    dataset.export(ds, f"{out_dir}/export.npz", EXPORT_N, seed=1, chunk=8, progress=False)
    batches = list(data.load_dataset(f"{out_dir}/export.npz", batch_size=8, shuffle=False))
    out["loader_images"] = np.concatenate([b[0] for b in batches])
    out["loader_sizes"] = np.array([len(b[0]) for b in batches])
    np.savez(f"{out_dir}/jax.npz", **out)
    print(json.dumps({"tf_attempts": attempts, "tf_modules": sorted(
        m for m in sys.modules if m.split(".")[0] == "tensorflow" and sys.modules[m])}))
    """
)


@pytest.fixture(scope="module")
def jax_run(shapes_npz, tmp_path_factory):
    """Runs JAX_SCRIPT once; returns (its json line, its npz arrays, its output folder)."""
    pytest.importorskip("jax")
    out = tmp_path_factory.mktemp("jax")
    consts = f"N_FACTORS, STREAM_B, EXPORT_N = {N_FACTORS}, {STREAM_B}, {EXPORT_N}\n"
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))
    r = subprocess.run(
        [sys.executable, "-c", consts + JAX_SCRIPT, shapes_npz, str(out)],
        capture_output=True, text=True, timeout=600, cwd=ROOT, env=env,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads(r.stdout.strip().splitlines()[-1])
    with np.load(out / "jax.npz") as z:
        arrays = {k: z[k] for k in z.files}
    return report, arrays, out


def test_jax_never_imports_tensorflow(jax_run):
    """ShapesDataset, images_from_factors, the streams, a jitted warp, write_sheet, export and
    data.load_dataset all ran with tensorflow unimportable, and none of them tried it."""
    report, arrays, out = jax_run
    assert report == {"tf_attempts": [], "tf_modules": []}
    assert bool(arrays["tf_dataset_refused"])  # a clear error pointing at param_stream
    assert (out / "sheet.png").stat().st_size > 1000


def test_same_factors_same_pixels_on_tf_and_jax(tiny_dataset, jax_run):
    _, arrays, _ = jax_run
    tf_images = tiny_dataset.images_from_factors(_fixed_factors(tiny_dataset))
    assert tf_images.max() > 0.3
    np.testing.assert_allclose(arrays["iff"], tf_images, rtol=0, atol=1 / 255)
    # the param stream is numpy: the same factors on both backends, pixels within 1/255
    images, factors = next(tiny_dataset.image_stream(STREAM_B, 3))
    np.testing.assert_array_equal(arrays["stream_factors"], factors)
    np.testing.assert_allclose(arrays["stream_images"], images, rtol=0, atol=1 / 255)
    p = tiny_dataset.param_batch(STREAM_B, 3, 0)
    np.testing.assert_allclose(arrays["step_mean"], images.mean(), rtol=0, atol=1e-5)
    assert _same(p, next(tiny_dataset.param_stream(STREAM_B, 3)))


def test_jax_export_and_loader(tiny_dataset, jax_run):
    """On JAX export streams image_stream, and data.load_dataset returns numpy batches equal to
    the exported pixels (what tf.data gives on TF, see tests/test_data.py)."""
    from data import load_arrays

    _, arrays, out = jax_run
    a = load_arrays(str(out / "export.npz"))
    stream = tiny_dataset.image_stream(8, seed=1)
    x, f = (np.concatenate(v)[:EXPORT_N] for v in zip(*[next(stream) for _ in range(3)]))
    np.testing.assert_array_equal(a["factors"], f)
    diff = np.abs(a["images"].astype(int) - np.round(x * 255).astype(int))
    assert diff.max() <= 1  # uint8 rounding of pixels within 1/255 of TF's
    assert arrays["loader_sizes"].tolist() == [8, 8, 4]
    np.testing.assert_array_equal(
        arrays["loader_images"], a["images"].astype(np.float32) * np.float32(1 / 255)
    )
