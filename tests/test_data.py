"""data.py: export -> load round trip, labels kept, bad files."""

import os

import numpy as np
import pytest

import dataset
from data import load_arrays, load_dataset


@pytest.fixture(scope="module")
def exported(tiny_dataset, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("export") / "export.npz")
    dataset.export(tiny_dataset, out, n=50, seed=1, chunk=16, progress=False)
    return out


def _stream(ds, n, seed, chunk, discrete=False):
    xs, fs = zip(
        *[
            (x.numpy(), f.numpy())
            for x, f in ds.tf_dataset(chunk, seed, discrete=discrete).take(-(-n // chunk))
        ]
    )
    return np.concatenate(xs)[:n], np.concatenate(fs)[:n]


def test_export_matches_the_stream(tiny_dataset, exported):
    a = load_arrays(exported)
    x, f = _stream(tiny_dataset, 50, seed=1, chunk=16)
    assert a["images"].dtype == np.uint8 and a["images"].shape == (50, 32, 32, 1)
    np.testing.assert_array_equal(a["images"], np.round(x * 255).astype(np.uint8))
    np.testing.assert_array_equal(a["factors"], f)
    assert a["factor_names"] == tiny_dataset.factor_names
    assert a["factor_sizes"] == tiny_dataset.factor_sizes
    assert a["meta"]["n"] == 50 and a["meta"]["image_size"] == 32 and a["meta"]["seed"] == 1
    assert [p for p in os.listdir(os.path.dirname(exported)) if p != "export.npz"] == []


def test_load_dataset_round_trip_keeps_labels(exported):
    a = load_arrays(exported)
    batches = list(load_dataset(exported, batch_size=16, shuffle=False))
    assert [len(b[0]) for b in batches] == [16, 16, 16, 2]  # one epoch, last batch partial
    x = np.concatenate([b[0].numpy() for b in batches])
    f = np.concatenate([b[1].numpy() for b in batches])
    assert x.dtype == np.float32 and x.min() >= 0 and x.max() <= 1
    np.testing.assert_allclose(x, a["images"] / 255.0, atol=1e-6)
    np.testing.assert_array_equal(f, a["factors"])

    ds = load_dataset(exported, batch_size=8, shuffle=True, seed=3)
    e1 = np.concatenate([f.numpy() for _, f in ds])
    e2 = np.concatenate([f.numpy() for _, f in ds])
    assert not np.array_equal(e1, a["factors"]) and not np.array_equal(e1, e2)  # reshuffled
    for xs, fs in ds:  # every image still carries its own label
        for img, lab in zip(xs.numpy(), fs.numpy()):
            i = int(np.nonzero((a["factors"] == lab).all(1))[0][0])
            np.testing.assert_allclose(img, a["images"][i] / 255.0, atol=1e-6)


def test_discrete_float16_export_reproducible_from_factors(tiny_dataset, tmp_path, capsys):
    out = str(tmp_path / "d.npz")
    dataset.main(
        [
            "export",
            "--n",
            "20",
            "--out",
            out,
            "--data",
            tiny_dataset.path,
            "--image_size",
            "32",
            "--dtype",
            "float16",
            "--discrete",
        ]
    )
    assert "wrote" in capsys.readouterr().out
    a = load_arrays(out)
    assert a["images"].dtype == np.float16 and a["meta"]["discrete"] is True
    # the CLI's sampler: the default grid, sized to the image (tiny_dataset has the 128² grid)
    cli = dataset.ShapesDataset(tiny_dataset.path, image_size=32)
    y = cli.images_from_factors(a["factors"].astype(int))
    np.testing.assert_allclose(a["images"].astype(np.float32), y, atol=1e-3)
    ((x, _),) = load_dataset(out, batch_size=20, shuffle=False)
    assert x.dtype == np.float32


def test_failed_export_leaves_no_file(tiny_dataset, tmp_path, monkeypatch):
    real = tiny_dataset.tf_dataset

    def dying(*a, **k):
        for i, item in enumerate(real(*a, **k)):
            if i == 1:
                raise RuntimeError("killed")
            yield item

    monkeypatch.setattr(tiny_dataset, "tf_dataset", dying)
    with pytest.raises(RuntimeError):
        dataset.export(tiny_dataset, str(tmp_path / "e.npz"), n=40, chunk=16, progress=False)
    assert os.listdir(tmp_path) == []


def test_bad_files_name_the_file_and_the_fix(exported, tmp_path):
    missing = str(tmp_path / "none.npz")
    with pytest.raises(FileNotFoundError, match="dataset.py export") as e:
        load_dataset(missing, 8)
    assert missing in str(e.value)
    cut = tmp_path / "cut.npz"
    data = open(exported, "rb").read()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut.npz") as e:
        load_arrays(str(cut))
    assert "dataset.py export" in str(e.value)
    keys = str(tmp_path / "keys.npz")
    np.savez(keys, images=np.zeros((2, 8, 8, 1), np.uint8))
    with pytest.raises(ValueError, match="missing arrays"):
        load_arrays(keys)
    shape = str(tmp_path / "shape.npz")
    a = load_arrays(exported)
    np.savez(
        shape,
        images=a["images"][..., 0],
        factors=a["factors"],
        factor_names=np.array(a["factor_names"]),
        meta=np.array("{}"),
    )
    with pytest.raises(ValueError, match="shape.npz"):
        load_arrays(shape)
