"""ShapesDataset: on-the-fly transforms, the sampler contract, stream resumability, bad input."""

import json
import os
import shutil

import numpy as np
import pytest

import dataset
from dataset import DatasetError, ShapesDataset

SPHERE, CUBE = 1, 0  # shape indices in the fixture


@pytest.fixture(scope="module")
def ds64(shapes_npz):
    return ShapesDataset(shapes_npz, image_size=64, num_scales=8, num_positions=16)


def _centroid(img):  # img (H, W) -> (row, col), intensity-weighted
    yy, xx = np.mgrid[: img.shape[0], : img.shape[1]]
    return (yy * img).sum() / img.sum(), (xx * img).sum() / img.sum()


def _extremes(ds):
    """Largest scale at the four corner positions plus a central one, for every rendered view."""
    views = np.indices(ds.factor_sizes[:3]).reshape(3, -1).T  # (V, 3)
    pos = [(0, 0), (0, 15), (15, 0), (15, 15), (7, 7)]
    return np.array([[*v, 7, px, py] for v in views for px, py in pos])


def _factors(ds, shape=SPHERE, az=0, tilt=0, scale=4, px=7, py=7):
    return np.array([[shape, az, tilt, scale, px, py]], np.int64)


def test_factor_grid_names_and_ordering(tiny_dataset):
    ds = tiny_dataset
    assert ds.factor_names == ["shape", "azimuth", "tilt", "scale", "pos_x", "pos_y"]
    assert ds.factor_sizes == [6, 4, 2, 8, 16, 16] and ds.num_factors == 6  # explicit grid
    np.testing.assert_allclose(ds.values["scale"], np.linspace(0.35, 0.7, 8), rtol=1e-6)
    np.testing.assert_allclose(ds.values["pos_x"], np.linspace(-0.2, 0.2, 16), rtol=1e-6)
    grid = np.array([[0, 0, 0, i, i, i] for i in range(8)])
    v = ds.factor_values(grid)
    assert np.all(np.diff(v[:, 3:], axis=0) > 0)  # index 0 is the smallest, values increase
    v = ds.factor_values([[3, 1, 1, 0, 15, 0]])[0]
    np.testing.assert_allclose(v, [3, 90, 55, 0.35, 0.2, -0.2], rtol=1e-6)


def test_pos_x_moves_right_pos_y_moves_down_by_the_expected_pixels(ds64):
    s = 64
    p = ds64.values["pos_x"]
    for shape in range(6):
        f = np.repeat(_factors(ds64, shape=shape, scale=3), 3, axis=0)
        f[1, 4], f[2, 5] = 15, 15  # pos_x -> largest; pos_y -> largest
        f[0, 4] = f[0, 5] = 0
        f[1, 5] = 0
        f[2, 4] = 0
        img = ds64.images_from_factors(f)[..., 0]
        r0, c0 = _centroid(img[0])
        r1, c1 = _centroid(img[1])
        r2, c2 = _centroid(img[2])
        shift = (p[15] - p[0]) * s  # 25.6 px
        assert abs((c1 - c0) - shift) <= 1 and abs(r1 - r0) <= 1, shape  # right
        assert abs((r2 - r0) - shift) <= 1 and abs(c2 - c0) <= 1, shape  # down


def test_zoom_scales_area_by_scale_squared_about_the_centre(shapes_npz):
    ds = ShapesDataset(shapes_npz, image_size=128, num_positions=3)  # positions -0.2, 0, 0.2
    for shape in range(6):
        f = np.array([[shape, 1, 1, i, 1, 1] for i in range(8)])
        img = ds.images_from_factors(f)[..., 0]
        area = (img > 0.1).sum(axis=(1, 2))
        expected = (ds.values["scale"] / ds.values["scale"][-1]) ** 2
        np.testing.assert_allclose(area / area[-1], expected, rtol=0.1, err_msg=str(shape))
    sphere = ds.images_from_factors(np.array([[SPHERE, 0, 0, i, 1, 1] for i in range(8)]))
    # zoom about the image centre c: a point at c + d moves to c + scale·d, so the silhouette's
    # centroid offset (the cut sphere is not symmetric) is proportional to the scale
    offsets = np.array([_centroid((x > 0.05).astype(float)) for x in sphere[..., 0]]) - 63.5
    per_scale = offsets / ds.values["scale"][:, None]  # (8, 2) px per unit scale
    np.testing.assert_allclose(per_scale, np.repeat(per_scale[-1:], 8, 0), atol=1.0)
    # and its bounding disc (the unit sphere, radius 0.4 W at scale 1) scales with it
    yy, xx = np.mgrid[:128, :128]
    far = [np.hypot(yy - 63.5, xx - 63.5)[x > 0.5].max() for x in sphere[..., 0]]
    np.testing.assert_allclose(far, 0.4 * 128 * ds.values["scale"], rtol=0.05)


def test_downsampling_keeps_the_mass(shapes_npz, ds64, tiny_dataset):
    big = ShapesDataset(shapes_npz, image_size=128)
    f = np.array([[s, 1, 0, 7, 3, 12] for s in range(6)] + [[s, 2, 1, 0, 9, 4] for s in range(6)])
    means = [d.images_from_factors(f).mean(axis=(1, 2, 3)) for d in (big, ds64, tiny_dataset)]
    np.testing.assert_allclose(means[1], means[0], rtol=0.03)
    np.testing.assert_allclose(means[2], means[0], rtol=0.05)


def test_images_are_deterministic_in_range_with_black_background(tiny_dataset):
    f = tiny_dataset.sample_factors(40, np.random.RandomState(0))
    a, b = tiny_dataset.images_from_factors(f), tiny_dataset.images_from_factors(f, chunk=7)
    assert a.shape == (40, 32, 32, 1) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert a.min() >= 0 and a.max() <= 1 and np.all(a.max(axis=(1, 2, 3)) > 0.3)


@pytest.mark.parametrize("size", [32, 128])
def test_objects_stay_inside_the_frame_at_the_extremes(shapes_npz, size):
    ds = ShapesDataset(shapes_npz, image_size=size, num_scales=8, num_positions=16)
    x = ds.images_from_factors(_extremes(ds))[..., 0].reshape(-1, 5, size, size)
    mass = x.sum(axis=(2, 3))  # (V, 5): no mass is cut off at the corners
    np.testing.assert_allclose(mass[:, :4], np.repeat(mass[:, 4:], 4, 1), rtol=0.02)
    border = np.concatenate([x[..., 0, :], x[..., -1, :], x[..., 0], x[..., -1]], -1)
    if size == 128:  # one base pixel of margin: the outermost pixels stay exactly 0
        assert border.max() == 0
    else:  # at 32 px the antialiased edge may graze the outermost pixel (see ShapesDataset)
        assert border.max() < 0.5


def test_sample_factors(tiny_dataset):
    f = tiny_dataset.sample_factors(5000, np.random.RandomState(3))
    assert f.dtype == np.int64 and f.shape == (5000, 6)
    for j, k in enumerate(tiny_dataset.factor_sizes):
        assert set(np.unique(f[:, j])) == set(range(k))
    np.testing.assert_array_equal(f, tiny_dataset.sample_factors(5000, np.random.RandomState(3)))


def _take(ds, n):
    return [(x.numpy(), f.numpy()) for x, f in ds.take(n)]


def test_same_seed_same_stream_and_resume(tiny_dataset):
    a = _take(tiny_dataset.tf_dataset(8, seed=5), 4)
    b = _take(tiny_dataset.tf_dataset(8, seed=5), 4)
    c = _take(tiny_dataset.tf_dataset(8, seed=6), 1)
    r = _take(tiny_dataset.tf_dataset(8, seed=5, start=2), 2)
    for (x, f), (y, g) in zip(a, b):
        np.testing.assert_array_equal(x, y)
        np.testing.assert_array_equal(f, g)
    assert not np.array_equal(a[0][1], c[0][1])
    for (x, f), (y, g) in zip(a[2:], r):  # start=2 yields exactly batches 2, 3, ...
        np.testing.assert_array_equal(x, y)
        np.testing.assert_array_equal(f, g)
    assert not np.array_equal(a[0][1], a[1][1])


def test_continuous_stream_factors(tiny_dataset):
    (x, f), *_ = _take(tiny_dataset.tf_dataset(256, seed=0), 1)
    assert x.shape == (256, 32, 32, 1) and x.dtype == np.float32 and f.shape == (256, 6)
    assert f.dtype == np.float32
    for j, k in enumerate([6, 4, 2]):  # rendered factors: grid indices
        assert np.all(f[:, j] == np.round(f[:, j])) and f[:, j].min() >= 0 and f[:, j].max() < k
    assert 0.35 <= f[:, 3].min() and f[:, 3].max() <= 0.7
    assert len(np.unique(f[:, 3])) > 200  # continuous, not the 8-value grid
    assert -0.2 <= f[:, 4:].min() and f[:, 4:].max() <= 0.2
    # the reported position is where the object is: centroid column grows with pos_x
    cols = np.array([_centroid(img)[1] for img in x[..., 0]])
    assert np.corrcoef(cols, f[:, 4])[0, 1] > 0.9


def test_images_from_factors_matches_the_discrete_stream(tiny_dataset, ds64):
    for ds in (tiny_dataset, ds64):
        (x, f), *_ = _take(ds.tf_dataset(32, seed=1, discrete=True), 1)
        assert np.all(f == np.round(f))
        y = ds.images_from_factors(f.astype(int))
        np.testing.assert_array_equal(y, x)  # the same warp on the same float32 inputs


def test_config_is_json_and_names_the_render(tiny_dataset, shapes_npz):
    cfg = json.loads(json.dumps(tiny_dataset.config()))
    with np.load(shapes_npz) as z:
        meta = json.loads(str(z["meta"]))
    assert cfg["render_config_hash"] == meta["config_hash"]
    assert cfg["image_size"] == 32 and cfg["factor_sizes"] == [6, 4, 2, 8, 16, 16]
    assert cfg["scale_range"] == [0.35, 0.7] and cfg["pos_range"] == [-0.2, 0.2]


def test_off_frame_ranges_raise_with_the_largest_allowed_value(shapes_npz):
    with pytest.raises(ValueError, match="scale_range") as e:
        ShapesDataset(shapes_npz, image_size=32, scale_range=(0.35, 1.0))
    assert "Largest allowed scale_range high" in str(e.value)
    allowed = float(str(e.value).split("this pos_range: ")[1].split(";")[0])
    ShapesDataset(shapes_npz, image_size=32, scale_range=(0.35, allowed - 1e-3))
    with pytest.raises(ValueError, match="pos_range"):
        ShapesDataset(shapes_npz, image_size=32, pos_range=(-0.3, 0.1))


@pytest.mark.parametrize(
    "kwargs, word",
    [
        (dict(image_size=8), "image_size"),
        (dict(image_size=32.5), "image_size"),
        (dict(image_size="64"), "image_size"),
        (dict(image_size=True), "image_size"),
        (dict(scale_range=(0.7, 0.35)), "scale_range"),
        (dict(scale_range=(0.0, 0.5)), "scale_range"),
        (dict(pos_range=(0.1,)), "pos_range"),
        (dict(num_scales=0), "num_scales"),
        (dict(num_positions=2.5), "num_positions"),
    ],
)
def test_bad_arguments_name_themselves(shapes_npz, kwargs, word):
    with pytest.raises(ValueError, match=word):
        ShapesDataset(shapes_npz, **kwargs)


def test_missing_npz_says_how_to_render(tmp_path):
    path = str(tmp_path / "nope.npz")
    with pytest.raises(FileNotFoundError, match="render_shapes.py") as e:
        ShapesDataset(path)
    assert path in str(e.value)


def test_truncated_npz_names_the_file(shapes_npz, tmp_path):
    path = tmp_path / "cut.npz"
    data = open(shapes_npz, "rb").read()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match="truncated or corrupt") as e:
        ShapesDataset(str(path))
    assert str(path) in str(e.value) and "render_shapes.py" in str(e.value)
    path.write_bytes(b"")
    with pytest.raises(DatasetError, match="cut.npz"):
        ShapesDataset(str(path))


def test_bit_flip_is_caught(shapes_npz, tmp_path):
    path = tmp_path / "flip.npz"
    shutil.copy(shapes_npz, path)
    data = bytearray(path.read_bytes())
    with np.load(shapes_npz) as z:
        assert "images" in z.files
    i = data.find(b"images.npy") + 200_000  # inside the images member's pixels
    data[i] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match="flip.npz"):
        ShapesDataset(str(path))


def test_wrong_image_shape_or_dtype(shapes_npz, tmp_path):
    with np.load(shapes_npz) as z:
        arrays = {k: z[k] for k in z.files}
    for name, images in [
        ("flat", arrays["images"][..., 0]),
        ("float", arrays["images"].astype(np.float32)),
        ("short", arrays["images"][:10]),
    ]:
        path = str(tmp_path / f"{name}.npz")
        np.savez(path, **dict(arrays, images=images))
        with pytest.raises(DatasetError) as e:
            ShapesDataset(path)
        assert path in str(e.value) and "render_shapes.py" in str(e.value)
        assert "images" in str(e.value) or "factors" in str(e.value)


def test_sheet_cli_writes_a_png(shapes_npz, tmp_path, capsys):
    import imageio.v3 as iio

    out = tmp_path / "img" / "sheet.png"
    dataset.main(
        ["sheet", "--data", shapes_npz, "--out", str(out), "--image_size", "32", "--n", "9"]
    )
    img = iio.imread(out)
    assert img.ndim == 3 and img.shape[0] > 300 and img.std() > 10
    assert os.listdir(out.parent) == ["sheet.png"]  # no temporary left behind
    with pytest.raises(SystemExit) as e:  # a bad dataset path: a message, exit 2
        dataset.main(["sheet", "--data", str(tmp_path / "none.npz"), "--out", str(out)])
    assert e.value.code == 2 and "render_shapes.py" in capsys.readouterr().err


def _proposed_out(message):
    """The --out of the render command an error message proposes."""
    import re

    return re.search(r"render_shapes\.py --out (\S+?)`", message).group(1)


def test_hint_never_renders_over_a_file_that_is_not_a_dataset(shapes_npz, tmp_path, monkeypatch):
    """A render of ours (or a missing path) is re-rendered in place; any other file is not: the
    hint proposes a new file and --data_path, because `render_shapes.py --out FILE` would
    refuse (and --force would destroy it)."""
    from blender import render_shapes

    monkeypatch.chdir(tmp_path)  # the hint's new file is data/shapes.npz under the cwd
    notes = tmp_path / "notes.md"
    notes.write_text("# my notes\n")
    render = open(shapes_npz, "rb").read()
    cut = tmp_path / "cut.npz"
    cut.write_bytes(render[: len(render) // 2])
    for path in (notes, cut):
        before = path.read_bytes()
        with pytest.raises(DatasetError) as e:
            ShapesDataset(str(path))
        msg = str(e.value)
        assert str(path) in msg and "render_shapes.py" in msg
        new = _proposed_out(msg)
        assert new == "data/shapes.npz" and f"--data_path {new}" in msg, msg
        assert render_shapes.overwrite_refusal(new) is None  # the proposed command would run
        assert path.read_bytes() == before
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "shapes.npz").write_text("also not a dataset")
    assert _proposed_out(dataset.render_fix(str(notes))) == "data/shapes_2.npz"
    # a missing path, and a render of ours with wrong arrays: re-render that very path
    assert _proposed_out(dataset.render_fix(str(tmp_path / "nope.npz"))) == str(
        tmp_path / "nope.npz"
    )
    with np.load(shapes_npz) as z:
        arrays = {k: z[k] for k in z.files}
    ours = str(tmp_path / "short.npz")
    np.savez(ours, **dict(arrays, images=arrays["images"][:10]))
    with pytest.raises(DatasetError) as e:
        ShapesDataset(ours)
    assert _proposed_out(str(e.value)) == ours
