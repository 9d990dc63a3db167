"""Damaged files: each gives a clear error that names the file and the fix (no traceback from deep
inside numpy/TF/zipfile on a CLI; a library exception whose message names the file) and changes
no other file. Damage = truncation, single bit flips (seeded), and wrong-but-valid content."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from reliability_helpers import (
    STRESS,
    assert_clean_error,
    flip_bit,
    history_steps,
    model_weights,
    npy_header_len_offsets,
    run_cli,
    train_cmd,
    tree_hash,
    truncate,
    weights_equal,
    zip_directory_offsets,
)

import training
from sbd_vae import rundir

pytestmark = pytest.mark.slow
FUZZ_FLIPS = 300  # bit flips per file in make test (every header/directory byte with STRESS=1)


@pytest.fixture
def run(mid_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(mid_run, out)
    return out


# ----------------------------------------------------------------------------- fuzzing helpers
def _same(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    return a == b


def _fuzz(src, loader, error_type, tmp_path, positions, seed=0):
    """Flips one seeded random bit at each position; returns (leaks, unnamed, silent):
    exceptions of another type, messages without the file name, loads with changed content."""
    raw, ref = src.read_bytes(), loader(str(src))
    rng = np.random.RandomState(seed)
    path = tmp_path / f"damaged_{src.name}"
    leaks, unnamed, silent = [], [], []
    for pos in positions:
        path.write_bytes(raw)
        flip_bit(path, int(pos), int(rng.randint(8)))
        try:
            got = loader(str(path))
        except error_type as e:
            if str(path) not in str(e):
                unnamed.append((int(pos), str(e)[:120]))
            continue
        except Exception as e:  # noqa: BLE001
            leaks.append((int(pos), f"{type(e).__name__}: {str(e)[:120]}"))
            continue
        if not _same(got, ref):
            silent.append(int(pos))
    return leaks, unnamed, silent


def _positions(src, n_random=40, seed=1):
    """Every byte of the zip directory and of each member's local header, plus random bytes."""
    raw = src.read_bytes()
    heads = [range(i, i + 120) for i in range(len(raw)) if raw.startswith(b"PK\x03\x04", i)]
    rng = np.random.RandomState(seed)
    pos = set(zip_directory_offsets(raw)) | {p for r in heads for p in r}
    pos = sorted(p for p in pos | set(rng.randint(0, len(raw), n_random).tolist()) if p < len(raw))
    if not STRESS and len(pos) > FUZZ_FLIPS:  # make test: a seeded sample; make stress: all
        pos = sorted(rng.choice(pos, FUZZ_FLIPS, replace=False).tolist())
    return pos


def _load_renders(path):
    import dataset

    return dataset.load_renders(path)


def _load_export(path):
    import data

    return data.load_arrays(path)


@pytest.fixture(scope="module")
def export_npz(shapes_npz, tmp_path_factory):
    import dataset

    out = tmp_path_factory.mktemp("export") / "export.npz"
    dataset.export(dataset.ShapesDataset(shapes_npz, image_size=32), str(out), n=40,
                   progress=False)  # fmt: skip
    return out


@pytest.fixture
def damaged_inputs(shapes_npz, export_npz, mid_run):
    import dataset

    return {
        "data npz": (shapes_npz, _load_renders, dataset.DatasetError),
        "exported npz": (export_npz, _load_export, ValueError),
        "checkpoint": (
            rundir.list_checkpoints(mid_run)[-1],
            rundir.read_checkpoint,
            rundir.RunDirError,
        ),  # fmt: skip
    }


# ----------------------------------------------------------------------------- npz files
@pytest.mark.parametrize("kind", ["data npz", "exported npz", "checkpoint"])
def test_bit_flips_give_a_named_error_or_identical_data(kind, damaged_inputs, tmp_path, record):
    """Bit flips over the zip headers/directory and random bytes: the loader raises its own
    error type naming the file, or (a flip in a field nobody reads) returns identical arrays."""
    from pathlib import Path

    src, loader, error_type = damaged_inputs[kind]
    positions = _positions(Path(src))
    npy_heads = set(npy_header_len_offsets(Path(src).read_bytes()))
    positions = [p for p in positions if p not in npy_heads]  # those: the test below
    leaks, unnamed, silent = _fuzz(Path(src), loader, error_type, tmp_path, positions)
    ok = not leaks and not unnamed and not silent
    record(f"bit-flipped {kind} (zip headers/directory)", ok,
           "none" if not silent else f"{len(silent)}/{len(positions)} flips: silent change")  # fmt: skip
    assert not leaks, f"{len(leaks)} raw exceptions escaped, e.g. {leaks[:3]}"
    assert not unnamed, f"errors that do not name the file: {unnamed[:3]}"
    assert not silent, f"{len(silent)} flips loaded different data silently: {silent[:5]}"


# np.load checks a member's CRC-32 only when it reads it to the end, so every loader first runs
# rundir.check_zip_crc (zipfile.testzip): a flipped .npy header-length byte can't shift the data.
@pytest.mark.parametrize("kind", ["data npz", "exported npz", "checkpoint"])
def test_npy_header_flip_is_detected(kind, damaged_inputs, tmp_path, record):
    """Every .npy header-length byte, bits 0-7: never a silent shift of the data."""
    from pathlib import Path

    src, loader, error_type = damaged_inputs[kind]
    raw, ref = Path(src).read_bytes(), loader(str(src))
    path = tmp_path / "damaged.npz"
    silent = []
    for pos in npy_header_len_offsets(raw):
        for bit in range(8):
            path.write_bytes(raw)
            flip_bit(path, pos, bit)
            try:
                got = loader(str(path))
            except error_type:
                continue
            if not _same(got, ref):
                silent.append((pos, bit))
    record(f"bit-flipped {kind} (.npy header length)", not silent,
           "none" if not silent else f"{len(silent)} flips: data shifted silently")  # fmt: skip
    assert not silent, f"{len(silent)} flips shifted the data silently: {silent[:5]}"


@pytest.mark.parametrize(
    "damage", ["truncated", "bit flip in the images"] if STRESS else ["truncated"]
)
def test_damaged_data_npz_on_the_training_cli(damage, shapes_npz, run, tmp_path, record):
    """Resuming a run whose data file was damaged: exit 2, the file and the render command
    named, no traceback, the run directory unchanged."""
    bad = tmp_path / "shapes.npz"
    shutil.copy(shapes_npz, bad)
    if damage == "truncated":
        truncate(bad, 0.5)
    else:
        flip_bit(bad, bad.stat().st_size // 2, 3)
    cfg = json.loads((run / "config.json").read_text())
    cfg["data_path"] = str(bad)  # the run was made with this file, which was damaged since
    rundir.write_json(run / "config.json", cfg)
    before = tree_hash(run)
    res = run_cli(train_cmd(bad, run)[1:])
    ok = False
    try:
        assert_clean_error(res, str(bad), "render_shapes.py")
        assert tree_hash(run) == before
        ok = True
    finally:
        record(f"{damage} data npz (training CLI)", ok)


def test_damaged_exported_npz_names_the_file(export_npz, tmp_path, record):
    import data

    bad = tmp_path / "export.npz"
    ok = True
    for damage in ("truncate", "flip", "empty", "not a zip"):
        shutil.copy(export_npz, bad)
        if damage == "truncate":
            truncate(bad, 0.7)
        elif damage == "flip":
            flip_bit(bad, bad.stat().st_size // 3, 5)
        elif damage == "empty":
            bad.write_bytes(b"")
        else:
            bad.write_text("images,factors\n1,2\n")
        try:
            with pytest.raises(ValueError, match=r"export\.npz.*dataset\.py export"):
                data.load_dataset(str(bad), batch_size=8)
        except BaseException:
            ok = False
            raise
        finally:
            if damage == "not a zip":
                record("damaged exported npz (data.load_dataset)", ok)


# ----------------------------------------------------------------------------- checkpoints
def test_corrupt_newest_checkpoint_falls_back_to_the_previous(run, ref_run, ref_weights,
                                                               shapes_npz, record):  # fmt: skip
    """The newest checkpoint truncated: a warning names it, training resumes from the previous
    one (one interval recomputed), and the result equals the uninterrupted run."""
    ckpts = rundir.list_checkpoints(run)
    assert [p.name for p in ckpts] == ["ckpt-00000040.npz", "ckpt-00000060.npz"]
    truncate(ckpts[-1], 0.6)
    res = run_cli(train_cmd(shapes_npz, run)[1:])
    ok = False
    try:
        assert res.returncode == 0, res.stderr[-3000:]
        assert "skipping" in res.stderr and "ckpt-00000060.npz" in res.stderr
        assert history_steps(run) == list(range(10, 101, 10))
        assert weights_equal(model_weights(run / "model.keras"), ref_weights)
        ok = True
    finally:
        record("corrupt newest checkpoint (resume falls back)", ok, "none" if ok else "?", 20)


def test_all_checkpoints_corrupt_is_a_clear_error(run, shapes_npz, record):
    for p in rundir.list_checkpoints(run):
        flip_bit(p, p.stat().st_size // 2, 0)
    before = tree_hash(run)
    res = run_cli(train_cmd(shapes_npz, run)[1:])
    ok = False
    try:
        assert_clean_error(res, "no readable checkpoint", "--fresh", "checkpoints")
        assert tree_hash(run) == before
        ok = True
    finally:
        record("all checkpoints corrupt (clear error, --fresh)", ok)


# ----------------------------------------------------------------------------- config.json
@pytest.mark.parametrize("damage", ["truncated", "not an object", "wrong type"])
def test_corrupt_config_json(damage, run, shapes_npz, record):
    path = run / "config.json"
    if damage == "truncated":
        truncate(path, 0.5)
    elif damage == "not an object":
        path.write_text("[1, 2, 3]\n")
    else:
        path.write_text(path.read_text().replace('"beta": 1.0', '"beta": "one"'))
    before = tree_hash(run)
    ok = False
    try:
        res = run_cli(train_cmd(shapes_npz, run)[1:]) if damage == "truncated" else None
        if res is not None:
            assert_clean_error(res, str(path), "--fresh")
        else:  # the library calls the CLIs use; RunDirError is what they print as "error: ..."
            with pytest.raises(rundir.RunDirError, match=str(path)):
                training.load_config(run)
            cfg = training.preset_config("test", data_path=str(shapes_npz))
            with pytest.raises(rundir.RunDirError, match=str(run)):  # "not an object" / a diff
                training.train(cfg, run, progress=False)
        assert tree_hash(run) == before
        ok = True
    finally:
        record(f"config.json {damage}", ok)


# ----------------------------------------------------------------------------- model.keras
@pytest.fixture(scope="module")
def finished_run(ref_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("finished") / "run"
    shutil.copytree(ref_run["out"], out)
    return out


@pytest.mark.parametrize("damage", ["truncated", "bit flip"])
def test_corrupt_model_keras_on_evaluate(damage, finished_run, tmp_path, record):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    path = run / "model.keras"
    truncate(path, 0.5) if damage == "truncated" else flip_bit(path, path.stat().st_size // 2, 1)
    before = tree_hash(run)
    ok = False
    try:
        if damage == "truncated" or STRESS:  # the CLI once in make test, both with STRESS=1
            cmd = ["latentSpace.py", "evaluate", str(run), "--protocol", "quick", "--quiet"]
            assert_clean_error(run_cli(cmd), str(path), "training.py train")
            assert tree_hash(run) == before
        import latentSpace

        with pytest.raises(rundir.RunDirError, match=str(path)):
            latentSpace.load_run(run)
        assert tree_hash(run) == before
        ok = True
    finally:
        record(f"{damage} model.keras (latentSpace evaluate)", ok)


def test_corrupt_model_keras_is_rewritten_by_the_training_command(finished_run, ref_weights,
                                                                  shapes_npz, tmp_path, record):  # fmt: skip
    """A finished run whose model.keras is lost or damaged: re-running the training command
    rewrites it from the final checkpoint (instead of "already finished")."""
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    truncate(run / "model.keras", 0.3)
    summary = (run / "summary.json").read_text()
    ok = False
    try:
        res = run_cli(train_cmd(shapes_npz, run)[1:])
        assert res.returncode == 0, res.stderr[-3000:]
        assert "model.keras is missing or corrupt" in res.stderr
        assert weights_equal(model_weights(run / "model.keras"), ref_weights)
        assert (run / "summary.json").read_text() == summary
        ok = True
    finally:
        record("damaged model.keras (training re-run rewrites it)", ok)


# ----------------------------------------------------------------------------- metrics.json
def test_corrupt_metrics_json(finished_run, tmp_path, record):
    import latentSpace

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    ok = False
    try:
        for text in ('{"protocol": "quick", "scores": ', "[]", '{"protocol": "quick"}'):
            (run / "metrics.json").write_text(text)
            before = tree_hash(run)
            with pytest.raises(rundir.RunDirError, match=str(run / "metrics.json")):
                latentSpace.read_metrics(run)
            assert tree_hash(run) == before
        ok = True
    finally:
        record("corrupt metrics.json (read_metrics)", ok)
