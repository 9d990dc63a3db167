"""Shared fixtures. `shapes_npz` renders a small REAL dataset with bpy once per test session."""

import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before anything imports tensorflow

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# all 6 shapes x 4 azimuths (0, 90, 180, 270) x 2 tilts at 128 px: 48 images, ~5 s on 2 cores
SMALL_RENDER = dict(num_azimuths=4, tilts=(15.0, 55.0), samples=8)


@pytest.fixture(scope="session")
def shapes_npz(tmp_path_factory) -> str:
    """Path of a small real render (blender/render_shapes.py CLI, in a subprocess so that bpy
    stays out of the test process): factors shape (6) x azimuth (4) x tilt (2), 128x128x1."""
    out = tmp_path_factory.mktemp("shapes") / "shapes.npz"
    cmd = [
        sys.executable,
        str(ROOT / "blender" / "render_shapes.py"),
        "--out",
        str(out),
        "--num_azimuths",
        str(SMALL_RENDER["num_azimuths"]),
        "--tilts",
        *[str(t) for t in SMALL_RENDER["tilts"]],
        "--samples",
        str(SMALL_RENDER["samples"]),
        "--no_progress",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    if r.returncode != 0 or not out.exists():
        pytest.fail(f"rendering the test dataset failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return str(out)


@pytest.fixture(scope="session")
def default_npz() -> str:
    """The DEFAULT render at its default path, data/shapes.npz (its time: README.md, step 1; reused when
    the file already holds it, as `make demo` and `make study` leave it): the data of the
    committed study in results/."""
    out = ROOT / "data" / "shapes.npz"
    cmd = [sys.executable, str(ROOT / "blender" / "render_shapes.py"), "--out", str(out),
           "--workers", "2", "--no_progress"]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=ROOT)
    if r.returncode != 0 or not out.exists():
        pytest.fail(
            f"rendering the default dataset failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
        )
    return str(out)


@pytest.fixture(scope="session")
def tiny_dataset(shapes_npz):
    """ShapesDataset over `shapes_npz` at 32x32 with the default ranges and the 128² grid
    (8 scales, 16 positions, given explicitly: the tests index it)."""
    import dataset

    return dataset.ShapesDataset(shapes_npz, image_size=32, num_scales=8, num_positions=16)


class NaNAfter:
    """Wraps a ShapesDataset so that batches from step ``k`` on contain a NaN pixel."""

    def __init__(self, data, k):
        self.data, self.k = data, k

    def __getattr__(self, name):
        return getattr(self.data, name)

    def tf_dataset(self, batch_size, seed, start=0, **kw):
        import numpy as np
        import tensorflow as tf

        ds = self.data.tf_dataset(batch_size, seed, start=start, **kw)
        steps = tf.data.Dataset.range(start, 2**62)

        def poison(step, batch):
            x, y = batch
            value = tf.where(step >= self.k, np.float32(np.nan), x[0, 0, 0, 0])
            return tf.tensor_scatter_nd_update(x, [[0, 0, 0, 0]], [value]), y

        return tf.data.Dataset.zip((steps, ds)).map(poison)

    def param_stream(self, batch_size, seed, start=0, **kw):
        """The JAX training stream: a NaN scale from step k on makes the warp's pixels NaN."""
        import numpy as np

        for k, batch in enumerate(self.data.param_stream(batch_size, seed, start, **kw), start):
            if k >= self.k:
                batch = dict(batch, scale=np.full_like(batch["scale"], np.nan))
            yield batch


@pytest.fixture
def nan_after():
    """``nan_after(dataset, k)``: the dataset with a NaN pixel in every batch from step k on."""
    return NaNAfter
