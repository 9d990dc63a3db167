"""kill -9 of the renderer (blender/render_shapes.py) and of `dataset.py export`, then a re-run.

The promise: after a kill the output path either does not exist or holds a complete file (never
a truncated one under the final name), and the re-run completes and produces the same file.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from reliability_helpers import STRESS, kill9, popen, run_cli, temp_files, wait_until

pytestmark = pytest.mark.slow
SMALL = ["--num_azimuths", "4", "--tilts", "15", "55", "--samples", "8"]  # = the shapes_npz fixture
N_VIEWS = 6 * 4 * 2
LEFTOVERS: dict[str, list[str]] = {}  # temp files still there after each re-run


def _render_cmd(out):
    return ["blender/render_shapes.py", "--out", str(out), *SMALL, "--no_progress"]


def _shm_pngs(pid):
    try:
        return [f for f in os.listdir("/dev/shm") if f.startswith(f"render_shapes_{pid}_")]
    except FileNotFoundError:
        return []


def _render_plan():
    rng = np.random.RandomState(11)
    n_views = 1 if not STRESS else 3
    return [("view", int(k)) for k in rng.randint(1, N_VIEWS, n_views)] + [("write", 0)]


@pytest.mark.parametrize("kind, arg", _render_plan(), ids=lambda v: str(v))
def test_kill9_renderer_then_rerun(kind, arg, shapes_npz, tmp_path, record):
    import dataset

    out = tmp_path / "shapes.npz"
    scenario = f"kill -9 render_shapes.py ({'mid-render' if kind == 'view' else 'npz write'})"
    survived, lost = False, "none"
    try:
        proc = popen(_render_cmd(out)[0:], tmp_path / "killed.log")
        if kind == "view":  # each view is rendered to /dev/shm/render_shapes_<pid>_*.png
            seen = set()

            def nth_view():
                seen.update(_shm_pngs(proc.pid))
                return len(seen) >= arg

            hit = wait_until(proc, nth_view, poll=0.002)
        else:
            hit = wait_until(proc, lambda: bool(temp_files(tmp_path)), poll=0.0002)
        kill9(proc)
        assert hit or proc.returncode == 0, (tmp_path / "killed.log").read_text()[-3000:]
        if not hit:
            pytest.skip("the renderer finished before the kill point")
        if out.exists():  # a complete file or nothing: never a truncated one
            try:
                dataset.load_renders(str(out))
            except dataset.DatasetError:
                lost = "truncated npz under the final name"
                raise
        res = run_cli(_render_cmd(out))
        assert res.returncode == 0, res.stderr[-3000:]
        got, ref = dataset.load_renders(str(out)), dataset.load_renders(shapes_npz)
        assert got["meta"]["config_hash"] == ref["meta"]["config_hash"]
        assert got["images"].shape == ref["images"].shape
        # The re-run renders the same images as the fixture. Not always bit for bit: Cycles on
        # 2 threads under load has been seen to differ by one grey level in one pixel of 786k
        # (a float rounding at .5); anything beyond that is a real difference.
        diff = np.abs(got["images"].astype(int) - ref["images"].astype(int)).reshape(N_VIEWS, -1)
        bad = [(i, int(d.max()), int((d > 0).sum())) for i, d in enumerate(diff) if d.any()]
        assert diff.max() <= 1 and (diff > 0).sum() <= 10, f"views differ (view, max, n): {bad[:8]}"
        survived = True
    finally:
        record(scenario, survived, lost)
        LEFTOVERS[f"render {kind}"] = temp_files(tmp_path) + _shm_pngs(proc.pid)


def _export_cmd(data, out, n):
    return ["dataset.py", "export", "--data", str(data), "--n", str(n), "--out", str(out),
            "--image_size", "32", "--seed", "3"]  # fmt: skip


@pytest.fixture(scope="module")
def export_ref(shapes_npz, tmp_path_factory):
    """An uninterrupted export (the CLI), the reference for the killed ones."""
    out = tmp_path_factory.mktemp("export_ref") / "export.npz"
    res = run_cli(_export_cmd(shapes_npz, out, N_EXPORT))
    assert res.returncode == 0, res.stderr[-3000:]
    return out


N_EXPORT = 6000  # 6 MB at 32², streamed chunk by chunk into the zip: a few seconds


@pytest.mark.parametrize(
    "fraction", np.random.RandomState(5).uniform(0.05, 0.95, 3 if STRESS else 1).round(3)
)
def test_kill9_export_then_rerun(fraction, shapes_npz, export_ref, tmp_path, record):
    """Killed once the temporary file holds ``fraction`` of the images, then re-run."""
    import data

    out = tmp_path / "export.npz"
    survived, lost = False, "none"
    try:
        proc = popen(_export_cmd(shapes_npz, out, N_EXPORT), tmp_path / "killed.log")
        size = Path(export_ref).stat().st_size

        def progressed():
            for t in temp_files(tmp_path):
                try:
                    if (tmp_path / t).stat().st_size >= fraction * size:
                        return True
                except FileNotFoundError:  # renamed or removed meanwhile
                    pass
            return False

        hit = wait_until(proc, progressed, poll=0.001)
        kill9(proc)
        assert hit or proc.returncode == 0, (tmp_path / "killed.log").read_text()[-3000:]
        if not hit:
            pytest.skip("the export finished before the kill point")
        if out.exists():
            lost = "truncated export under the final name"
        assert not out.exists(), "a killed export left a file under the final name"
        res = run_cli(_export_cmd(shapes_npz, out, N_EXPORT))
        assert res.returncode == 0, res.stderr[-3000:]
        got, ref = data.load_arrays(str(out)), data.load_arrays(str(export_ref))
        np.testing.assert_array_equal(got["images"], ref["images"])
        np.testing.assert_array_equal(got["factors"], ref["factors"])
        survived = True
    finally:
        record("kill -9 dataset.py export (mid-stream)", survived, lost)
        LEFTOVERS["export"] = temp_files(tmp_path)


def test_reruns_remove_the_temporary_files_of_killed_writers():
    """Reads what the kill tests above left in their directories after the re-run."""
    if not LEFTOVERS:
        pytest.skip("run together with the kill tests above")
    assert not any(LEFTOVERS.values()), LEFTOVERS
