"""Renderer tests: real bpy renders (the session fixture, plus tiny in-process ones)."""

import json
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest

from blender import render_shapes as rs

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(shapes=("cube", "torus"), num_azimuths=2, tilts=(35.0,), resolution=32, samples=4)


def _load(path):
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def small(shapes_npz):
    z = _load(shapes_npz)
    z["grid"] = z["images"][..., 0].reshape(6, 4, 2, 128, 128)  # (shape, azimuth, tilt, H, W)
    return z


def _dist_from_centre(r=128):
    yy, xx = np.mgrid[:r, :r]
    c = (r - 1) / 2
    return np.hypot(xx - c, yy - c)


def test_output_contents(small):
    assert small["images"].shape == (48, 128, 128, 1) and small["images"].dtype == np.uint8
    assert list(small["factor_names"]) == ["shape", "azimuth", "tilt"]
    assert list(small["values_shape"]) == list(rs.SHAPES)
    np.testing.assert_allclose(small["values_azimuth"], [0, 90, 180, 270])
    np.testing.assert_allclose(small["values_tilt"], [15, 55])
    f = small["factors"]
    assert f.shape == (48, 3) and np.issubdtype(f.dtype, np.integer)
    assert len({tuple(r) for r in f}) == 48  # the full grid, each view once
    meta = json.loads(str(small["meta"]))
    assert meta["bpy_version"] == version("bpy") and meta["engine"] == "CYCLES"
    assert meta["samples"] == 8 and meta["resolution"] == 128
    assert meta["render_settings"]["view_transform"] == "Standard"
    assert meta["render_settings"]["film_transparent"] is True
    assert len(meta["config_hash"]) == 16


def test_objects_nonempty_centred_inside_the_disc(small):
    d = _dist_from_centre()
    disc = rs.DISC_FRACTION * 128  # bounding sphere -> disc of radius 0.4 W
    for img in small["images"][..., 0]:
        on = img > 0
        assert on.sum() > 500
        assert d[on].max() < disc + 2  # the whole object inside its bounding disc
        yy, xx = np.nonzero(on)
        w = img[on].astype(float)
        cy, cx = (yy * w).sum() / w.sum(), (xx * w).sum() / w.sum()
        assert abs(cx - 63.5) < 0.2 * 128 and abs(cy - 63.5) < 0.2 * 128  # cones are bottom-heavy
    for s, name in enumerate(rs.SHAPES):  # the bounding sphere is tight: some view reaches it
        reach = max(d[img > 0].max() for img in small["grid"][s].reshape(-1, 128, 128))
        assert reach > disc - 2, (name, reach, disc)
    for sphere in small["grid"][1].reshape(-1, 128, 128):  # a ball less a cap: nearly the disc
        assert 0.8 * disc < np.sqrt((sphere > 0).sum() / np.pi) < disc


def test_background_exactly_zero_and_object_shaded(small):
    outside = _dist_from_centre() > rs.DISC_FRACTION * 128 + 2
    assert np.all(small["images"][..., 0][:, outside] == 0)
    yy, xx = np.mgrid[:128, :128]
    for sphere in small["grid"][1].reshape(-1, 128, 128):
        on = sphere > 0
        inner = sphere[np.hypot(yy - yy[on].mean(), xx - xx[on].mean()) < 0.25 * 128]
        assert inner.min() > 20  # no black holes on the object (the cut face is lit too)
        assert len(np.unique(inner)) > 40  # grey levels, not a flat silhouette


def test_different_shapes_differ_and_azimuth_is_visible(small):
    g = small["grid"].astype(np.float64)
    for a in range(4):
        for t in range(2):
            for i in range(6):
                for j in range(i + 1, 6):
                    assert np.abs(g[i, a, t] - g[j, a, t]).mean() > 5, (i, j, a, t)
    for s, name in enumerate(rs.SHAPES):
        change = np.abs(g[s, 0] - g[s, 1]).mean()  # azimuth 0 vs 90 degrees
        # the tilt makes cylinder, cone, torus turn visibly; the sphere's cut face turns too
        assert change > 3, name


def test_same_config_same_pixels_any_worker_count():
    cfg = rs.RenderConfig(**TINY)
    a = rs.render_images(cfg, progress=False)
    b = rs.render_images(cfg, progress=False)
    np.testing.assert_array_equal(a, b)
    c = rs.render_images(rs.RenderConfig(**TINY, workers=2), progress=False)
    np.testing.assert_array_equal(a, c)
    assert a.shape == (4, 32, 32, 1) and a.max() > 0


def test_cache_reuse_and_invalidation(tmp_path, monkeypatch, capsys):
    out = str(tmp_path / "s.npz")
    calls = []
    real = rs.render_images

    def counting(cfg, progress=True, **kw):
        calls.append(cfg.samples)
        return real(cfg, progress, **kw)

    monkeypatch.setattr(rs, "render_images", counting)
    assert rs.render_dataset(rs.RenderConfig(**TINY), out, progress=False) == out
    mtime = os.stat(out).st_mtime_ns
    rs.render_dataset(rs.RenderConfig(**TINY), out, progress=False)
    assert calls == [4] and os.stat(out).st_mtime_ns == mtime
    assert "reusing" in capsys.readouterr().out
    rs.render_dataset(rs.RenderConfig(**dict(TINY, samples=2)), out, progress=False)
    assert calls == [4, 2]  # another config hash: re-rendered
    rs.render_dataset(rs.RenderConfig(**dict(TINY, samples=2)), out, progress=False, force=True)
    assert calls == [4, 2, 2]
    data = bytearray(open(out, "rb").read())  # a render of ours with damaged pixels:
    data[data.find(b"images.npy") + 2000] ^= 0xFF  # re-rendered, not trusted
    open(out, "wb").write(bytes(data))
    assert rs.dataset_meta(out) is not None  # still recognised as ours (its meta is intact)
    rs.render_dataset(rs.RenderConfig(**TINY), out, progress=False)
    assert calls == [4, 2, 2, 4]
    assert _load(out)["images"].shape == (4, 32, 32, 1)


def _not_datasets(tmp_path, shapes_npz):
    """Existing files that render_shapes.py did not write (or cannot recognise): name -> path."""
    files = {"README.md": b"# my notes\n", "empty.npz": b"", "fake.npz": b"PK\x03\x04 not a zip"}
    render = open(shapes_npz, "rb").read()
    files["truncated.npz"] = render[: len(render) // 2]  # no zip directory left: not recognisable
    paths = {}
    for name, blob in files.items():
        (tmp_path / name).write_bytes(blob)
        paths[name] = tmp_path / name
    np.savez(tmp_path / "arrays.npz", images=np.zeros((2, 8, 8, 1), np.uint8))
    np.savez(tmp_path / "export.npz", meta=np.array(json.dumps({"render_config_hash": "ab"})))
    paths.update(arrays=tmp_path / "arrays.npz", export=tmp_path / "export.npz")
    return paths


def test_refuses_to_overwrite_a_file_that_is_not_a_dataset(shapes_npz, tmp_path, capsys):
    for name, path in _not_datasets(tmp_path, shapes_npz).items():
        before = path.read_bytes()
        with pytest.raises(SystemExit) as e:
            rs.main(
                ["--out", str(path), "--shapes", "cube", "--num_azimuths", "1", "--no_progress"]
            )
        err = capsys.readouterr().err
        assert e.value.code == 2, name
        assert str(path) in err and "--force" in err and "not a dataset" in err, (name, err)
        assert path.read_bytes() == before, name
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    (tmp_path / "dir.npz").mkdir()
    with pytest.raises(rs.NotADatasetError, match="directory"):
        rs.render_dataset(rs.RenderConfig(**TINY), str(tmp_path / "dir.npz"), force=True)


def test_force_overwrites_a_file_that_is_not_a_dataset(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not a dataset")
    tiny = ["--shapes", "cube", "--num_azimuths", "1", "--tilts", "35", "--resolution", "32"]
    assert rs.main(["--out", str(path), *tiny, "--samples", "2", "--no_progress", "--force"])
    assert rs.dataset_meta(str(path)) is not None and _load(path)["images"].shape == (1, 32, 32, 1)


def test_failed_render_leaves_no_file(tmp_path, monkeypatch):
    out = tmp_path / "s.npz"
    real, n = rs.render_view, []

    def flaky(*args):
        n.append(1)
        if len(n) == 3:
            raise RuntimeError("render died")
        return real(*args)

    monkeypatch.setattr(rs, "render_view", flaky)
    with pytest.raises(RuntimeError, match="render died"):
        rs.render_dataset(rs.RenderConfig(**TINY), str(out), progress=False)
    assert os.listdir(tmp_path) == []  # neither `out` nor a temporary file
    leftovers = [f for f in os.listdir("/dev/shm") if f.startswith(f"render_shapes_{os.getpid()}_")]
    assert leftovers == []

    def bad_save(*a, **k):  # an interrupted write: the temporary file is removed, no `out`
        raise KeyboardInterrupt

    monkeypatch.setattr(rs, "render_view", real)
    monkeypatch.setattr(np, "savez", bad_save)
    with pytest.raises(KeyboardInterrupt):
        rs.render_dataset(rs.RenderConfig(**TINY), str(out), progress=False)
    assert os.listdir(tmp_path) == []


def test_unknown_shape_lists_the_valid_ones(tmp_path, capsys):
    with pytest.raises(ValueError, match="pyramid") as e:
        rs.RenderConfig(shapes=("cube", "pyramid")).validate()
    assert all(s in str(e.value) for s in rs.SHAPES)
    with pytest.raises(SystemExit) as e:
        rs.main(["--out", str(tmp_path / "x.npz"), "--shapes", "pyramid"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "pyramid" in err and "monkey" in err
    assert not (tmp_path / "x.npz").exists()


def test_missing_bpy_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "bpy", None)  # makes `import bpy` raise ImportError
    with pytest.raises(ImportError) as e:
        rs.import_bpy()
    msg = str(e.value)
    assert "make setup" in msg and "pip install bpy==5.0.1" in msg and "libx11-6" in msg


def test_cli_reads_args_after_double_dash(monkeypatch, tmp_path):
    seen = {}
    monkeypatch.setattr(rs, "render_dataset", lambda cfg, out, **k: seen.update(cfg=cfg, out=out))
    out = str(tmp_path / "b.npz")
    argv = ["blender", "-b", "-P", "blender/render_shapes.py", "--", "--out", out]
    monkeypatch.setattr(sys, "argv", argv + ["--shapes", "cone", "--num_azimuths", "8"])
    rs.main()
    assert seen["out"] == out and seen["cfg"].shapes == ("cone",)
    assert seen["cfg"].num_azimuths == 8 and seen["cfg"].tilts == (15.0, 35.0, 55.0)


# ----------------------------------------------------------------------------- identifiability
BLUR_SIGMA = 2.0  # px at 128²: differences finer than this are noise, not a visible pose change
MIN_DIFFERENCE = 0.08  # blurred max |Δ| (pixels in [0, 1]) every pair of poses must exceed


def _render_cli(out, *args):
    """blender/render_shapes.py in a subprocess (bpy stays out of the test process)."""
    cmd = [sys.executable, str(ROOT / "blender" / "render_shapes.py"), "--out", str(out)]
    cmd += [*map(str, args), "--workers", "2", "--no_progress"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=ROOT)
    if r.returncode != 0:
        pytest.fail(f"render failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    z = _load(out)
    return _grid(z), z


def _blur(images):
    """Gaussian blur (sigma BLUR_SIGMA at 128², scaled with the resolution) over the last 2 axes."""
    from scipy.ndimage import gaussian_filter

    sigma = BLUR_SIGMA * images.shape[-1] / 128
    return gaussian_filter(images, sigma=[0] * (images.ndim - 2) + [sigma, sigma])


def _grid(z):
    sizes = [len(z["values_shape"]), len(z["values_azimuth"]), len(z["values_tilt"])]
    grid = np.empty((*sizes, *z["images"].shape[1:3]), np.float64)  # (shape, az, tilt, H, W)
    grid[tuple(z["factors"].T)] = z["images"][..., 0] / 255.0
    return grid


@pytest.fixture(scope="module")
def default_render(default_npz, tmp_path_factory):
    """The DEFAULT RenderConfig (6 shapes × 16 azimuths × 3 tilts; the session's `default_npz`,
    rendered once by the CLI), blurred; and the render-noise floor: the same views (azimuths 0°
    and 180°, tilt 35°) rendered with another --seed."""
    z = _load(default_npz)
    assert json.loads(str(z["meta"]))["config_hash"] == rs.RenderConfig().config_hash()
    grid, cfg = _grid(z), rs.RenderConfig()
    assert grid.shape == (len(cfg.shapes), cfg.num_azimuths, len(cfg.tilts), 128, 128)
    d = tmp_path_factory.mktemp("reseeded")
    again, _ = _render_cli(d / "reseeded.npz", "--seed", "1", "--num_azimuths", "2", "--tilts", 35)
    same = grid[:, :: cfg.num_azimuths // 2, list(cfg.tilts).index(35.0)]  # (6, 2, H, W)
    floor = float(np.abs(_blur(same) - _blur(again[:, :, 0])).max())
    return dict(blurred=_blur(grid), floor=floor, names=list(z["values_shape"]),
                azimuths=z["values_azimuth"], tilts=z["values_tilt"])  # fmt: skip


@pytest.mark.slow
def test_every_pose_of_every_shape_is_identifiable(default_render):
    """Issue 11: a factor value that leaves the pixels unchanged cannot be read by any model, so
    its labels would be noise for every metric. For every shape, every rendered factor and every
    pair of its values (the other factor fixed), the two blurred images must differ by clearly
    more than the render noise. Azimuth is circular (0° and 337.5° are neighbours): all pairs are
    compared, so near-symmetries (the cube's 90°, a cylinder's 180°) are caught too."""
    r = default_render
    blurred, floor = r["blurred"], r["floor"]  # (S, A, T, H, W)
    assert floor > 0, "another --seed rendered the same pixels: the noise floor is not measured"
    threshold = max(3 * floor, MIN_DIFFERENCE)
    bad, smallest = [], {}
    for s, shape in enumerate(r["names"]):
        for factor, axis, values in (("azimuth", 1, r["azimuths"]), ("tilt", 2, r["tilts"])):
            imgs = np.moveaxis(blurred[s], axis - 1, 0)  # (n_values, n_other, H, W)
            for i in range(len(values)):
                for j in range(i + 1, len(values)):
                    diff = np.abs(imgs[i] - imgs[j]).max(axis=(-2, -1))  # (n_other,)
                    k = int(diff.argmin())
                    key = (shape, factor)
                    smallest[key] = min(smallest.get(key, np.inf), float(diff[k]))
                    if diff[k] <= threshold:
                        other = "tilt" if factor == "azimuth" else "azimuth"
                        other_v = (r["tilts"] if factor == "azimuth" else r["azimuths"])[k]
                        bad.append(f"{shape} {factor} {values[i]:g}° vs {values[j]:g}° "
                                   f"({other} {other_v:g}°): {diff[k]:.3f}")  # fmt: skip
    summary = ", ".join(f"{s} {f} {v:.3f}" for (s, f), v in smallest.items())
    assert not bad, (
        f"{len(bad)} pose pairs are not identifiable (blurred max |Δ| ≤ {threshold:.3f}, noise "
        f"floor {floor:.3f}):\n" + "\n".join(bad[:50]) + f"\nsmallest per factor: {summary}"
    )
