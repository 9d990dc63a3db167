"""sbd_vae.dsprites: the dSprites grid, exact rasterisation, geometry, symmetries, the contract."""

import json

import numpy as np
import pytest

from sbd_vae import dsprites
from sbd_vae.dsprites import DSpritesDataset, render_direct

SQUARE, ELLIPSE, HEART = 0, 1, 2


@pytest.fixture(scope="module")
def ds():
    return DSpritesDataset()


def _img(ds, shape=SQUARE, scale=5, orient=0, px=15, py=15):
    return ds.images_from_factors([[shape, scale, orient, px, py]])[0, ..., 0]


def _extent(img):
    """(width in columns, height in rows) of the nonzero pixels."""
    rows, cols = np.nonzero(img.any(1))[0], np.nonzero(img.any(0))[0]
    return cols[-1] - cols[0] + 1, rows[-1] - rows[0] + 1


def _centre(img):
    """(row, col) of the bounding-box centre of the nonzero pixels."""
    rows, cols = np.nonzero(img.any(1))[0], np.nonzero(img.any(0))[0]
    return (rows[0] + rows[-1]) / 2, (cols[0] + cols[-1]) / 2


def _extremes():
    """Every (shape, scale, orientation) at the four corner positions and the middle one."""
    sprites = np.indices(dsprites.FACTOR_SIZES[:3]).reshape(3, -1).T  # (720, 3)
    pos = [(0, 0), (0, 31), (31, 0), (31, 31), (15, 16)]
    return np.array([[*s, px, py] for s in sprites for px, py in pos])


def test_grid_sizes_values_and_contract_members(ds):
    assert ds.factor_names == ["shape", "scale", "orientation", "pos_x", "pos_y"]
    assert ds.factor_sizes == [3, 6, 40, 32, 32] and ds.num_factors == 5
    assert ds.num_points == 737_280 == int(np.prod(ds.factor_sizes))
    assert ds.image_size == 64
    assert list(ds.values["shape"]) == ["square", "ellipse", "heart"]
    np.testing.assert_array_equal(ds.values["scale"], np.linspace(0.5, 1, 6))
    np.testing.assert_allclose(ds.values["scale"], [0.5, 0.6, 0.7, 0.8, 0.9, 1.0], atol=1e-12)
    np.testing.assert_array_equal(ds.values["orientation"], np.linspace(0, 2 * np.pi, 40))
    assert ds.values["orientation"][-1] == 2 * np.pi
    for name in ("pos_x", "pos_y"):
        np.testing.assert_array_equal(ds.values[name], np.linspace(0, 1, 32))
    assert ds.circular_factors == ("orientation",) and ds.categorical_factors == ("shape",)
    assert ds.display_name == dsprites.DISPLAY_NAME == "dSprites-like (procedural)"
    cfg = ds.config()
    assert json.loads(json.dumps(cfg)) == cfg  # JSON-serialisable
    assert cfg["name"] == "dsprites" and cfg["image_size"] == 64
    assert cfg["factor_sizes"] == [3, 6, 40, 32, 32] and cfg["generator_version"]
    v = ds.factor_values([[2, 5, 39, 31, 0]])[0]
    np.testing.assert_allclose(v, [2, 1.0, 2 * np.pi, 1.0, 0.0])


def test_sample_factors_range_and_dtype(ds):
    f = ds.sample_factors(20_000, np.random.RandomState(0))
    assert f.dtype == np.int64 and f.shape == (20_000, 5)
    assert np.all(f.min(0) == 0) and np.all(f.max(0) == np.array(ds.factor_sizes) - 1)
    g = ds.sample_factors(100, np.random.default_rng(1))  # a Generator works too
    assert g.dtype == np.int64 and np.all((g >= 0) & (g < np.array(ds.factor_sizes)))
    a, b = (ds.sample_factors(50, np.random.RandomState(3)) for _ in range(2))
    np.testing.assert_array_equal(a, b)


def test_images_are_binary_float32_deterministic_and_exact(ds):
    f = np.concatenate([ds.sample_factors(300, np.random.RandomState(1)), _extremes()[::7]])
    x = ds.images_from_factors(f)
    assert x.dtype == np.float32 and x.shape == (len(f), 64, 64, 1)
    assert set(np.unique(x)) <= {0.0, 1.0} and np.all(x.sum((1, 2, 3)) > 0)
    np.testing.assert_array_equal(x, DSpritesDataset().images_from_factors(f))  # new instance
    np.testing.assert_array_equal(x[5:9], ds.images_from_factors(f[5:9]))  # batch-independent
    # the cache + integer placement equals rasterising every pixel of the image directly
    np.testing.assert_array_equal(x, render_direct(f))


def test_bad_factors_raise(ds):
    with pytest.raises(ValueError, match="out of range"):
        ds.images_from_factors([[3, 0, 0, 0, 0]])
    with pytest.raises(ValueError, match="out of range"):
        ds.images_from_factors([[0, 0, 40, 0, 0]])
    with pytest.raises(ValueError, match=r"\(n, 5\)"):
        ds.images_from_factors([[0, 0, 0, 0]])
    with pytest.raises(ValueError, match="integer"):
        ds.images_from_factors([[0, 0, 0.5, 0, 0]])
    assert ds.images_from_factors(np.zeros((0, 5), np.int64)).shape == (0, 64, 64, 1)


def test_sizes_at_scale_one(ds):
    assert _extent(_img(ds, SQUARE)) == (19, 19)
    assert _img(ds, SQUARE).sum() == 19 * 19
    w, h = _extent(_img(ds, ELLIPSE))
    assert abs(w - 26) <= 1 and abs(h - 15) <= 1, (w, h)
    w, h = _extent(_img(ds, HEART))
    assert abs(w - 19) <= 1 and abs(h - 19) <= 1, (w, h)


def test_heart_points_down_and_turns_counter_clockwise(ds):
    up = _img(ds, HEART)
    rows = np.nonzero(up.any(1))[0]  # lobes at the top, the point at the bottom
    assert up[rows[0]].sum() > 2 * up[rows[-1]].sum()
    assert up[rows[-1]].sum() == 1 and np.nonzero(up[rows[-1]])[0][0] == 31  # below the centre
    # a quarter turn counter-clockwise (index 10: 92.3°) brings the point to the right
    turned = _img(ds, HEART, orient=10)
    c = np.nonzero(turned.any(0))[0]
    assert turned[:, c[0]].sum() > 2 * turned[:, c[-1]].sum()
    # the ellipse is horizontal at 0; at index 5 (46.2°) its top row lies right of its bottom
    e = _img(ds, ELLIPSE, orient=5)
    r = np.nonzero(e.any(1))[0]
    assert np.nonzero(e[r[0]])[0].mean() > np.nonzero(e[r[-1]])[0].mean()


def test_centres_at_pos_0_and_1_and_pos_x_moves_columns_pos_y_rows(ds):
    for shape in (SQUARE, ELLIPSE):  # symmetric shapes: the box centre is the sprite centre
        assert _centre(_img(ds, shape, px=0, py=0)) == (16, 16)
        assert _centre(_img(ds, shape, px=31, py=31)) == (47, 47)
        assert _centre(_img(ds, shape, px=31, py=0)) == (16, 47)  # pos_x: columns
        assert _centre(_img(ds, shape, px=0, py=31)) == (47, 16)  # pos_y: rows
    for shape in range(3):
        base = _img(ds, shape, scale=3, orient=7, px=4, py=9)
        np.testing.assert_array_equal(np.roll(base, 5, axis=1), _img(ds, shape, 3, 7, 9, 9))
        np.testing.assert_array_equal(np.roll(base, 11, axis=0), _img(ds, shape, 3, 7, 4, 20))
    # pos 0 -> ~0.25 W, pos 1 -> ~0.75 W (pixel edges at integers: centre pixel + 0.5)
    assert abs((16 + 0.5) / 64 - 0.25) < 0.01 and abs((47 + 0.5) / 64 - 0.75) < 0.01


def test_no_sprite_touches_the_border_over_the_grid_extremes(ds):
    x = ds.images_from_factors(_extremes())[..., 0]  # 3600 images
    for margin in range(3):  # rows / columns 0, 1, 2 and 61, 62, 63 stay empty
        for edge in (x[:, margin], x[:, -1 - margin], x[:, :, margin], x[:, :, -1 - margin]):
            assert not edge.any(), margin
    assert x[:, 3].any() and x[:, 60].any()  # the square at 45° reaches row 3 and row 60


def test_area_scales_with_scale_squared(ds):
    sprites = dsprites.sprite_cache()  # (3, 6, 40, 31, 31)
    area = sprites.sum((3, 4)).mean(2)  # (3, 6): mean over orientations
    expected = ds.values["scale"] ** 2 / ds.values["scale"][-1] ** 2
    for shape in range(3):
        ratio = area[shape, -1] / area[shape, 0]
        assert abs(ratio - 4) < 0.2, (shape, ratio)
        np.testing.assert_allclose(area[shape] / area[shape, -1], expected, rtol=0.05)
    # the continuous areas at scale 1: square 19², ellipse π·13·7.5
    np.testing.assert_allclose(area[SQUARE, -1], 19**2, rtol=0.02)
    np.testing.assert_allclose(area[ELLIPSE, -1], np.pi * 13 * 7.5, rtol=0.02)


# the orientation indices with identical pixels, as in the module docstring: classes of size > 1
SQUARE_CLASSES = {
    0: [[0, 10, 29, 39], [3, 32], [5, 34], [7, 36], [8, 18], [21, 31]],
    1: [[0, 10, 29, 39], [3, 32], [4, 14, 24], [6, 16], [7, 36], [8, 18], [15, 25, 35], [21, 31],
        [23, 33]],
    2: [[0, 10, 29, 39], [5, 34]],
    3: [[0, 10, 29, 39], [3, 13], [4, 14], [5, 34], [7, 17], [22, 32], [25, 35], [26, 36]],
    4: [[0, 10, 29, 39]],
    5: [[0, 10, 29, 39], [5, 34]],
}  # fmt: skip


def _identical_classes(images):
    """images (40, H, W) -> sorted classes (lists of indices, size > 1) of identical images."""
    classes = {}
    for k, im in enumerate(images):
        classes.setdefault(im.tobytes(), []).append(k)
    return sorted(c for c in classes.values() if len(c) > 1)


def test_pixel_identical_orientations_are_exactly_the_documented_ones(ds):
    # the maths: θ_k = 2πk/39; a quarter turn is 9.75 steps and a half turn 19.5, so only
    # 39 | (j - k), i.e. (0, 39), is an exact symmetry within the grid, for every shape
    assert [d for d in range(1, 40) if 4 * d % 39 == 0] == [39]  # quarter turns
    assert [d for d in range(1, 40) if 2 * d % 39 == 0] == [39]  # half turns
    n_pairs = {}
    for shape in range(3):
        for scale in range(6):
            f = [[shape, scale, k, 20, 11] for k in range(40)]  # a fixed position
            x = ds.images_from_factors(f)[..., 0]
            classes = _identical_classes(x)
            want = SQUARE_CLASSES[scale] if shape == SQUARE else [[0, 39]]
            assert classes == want, (shape, scale, classes)
            n_pairs[shape, scale] = sum(len(c) * (len(c) - 1) // 2 for c in classes)
            for c in classes:  # every identical pair is a near-symmetry of the shape
                period = {SQUARE: 9.75, ELLIPSE: 19.5, HEART: 39}[shape]  # in steps
                for j in c:
                    for k in c:
                        r = (k - j) / period
                        assert abs(r - round(r)) * period * 360 / 39 < 4.7, (shape, j, k)
    assert [n_pairs[SQUARE, s] for s in range(6)] == [11, 18, 7, 13, 6, 7]
    assert all(n_pairs[s, c] == 1 for s in (ELLIPSE, HEART) for c in range(6))
    # 0 and 39 are bit-identical everywhere, at every position too
    f = _extremes()
    f0, f39 = f[f[:, 2] == 0], f[f[:, 2] == 39]
    np.testing.assert_array_equal(ds.images_from_factors(f0), ds.images_from_factors(f39))
