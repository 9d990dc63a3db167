"""Both notebooks run headless (papermill) against a `test`-preset sweep trained in this session,
and against a 128² run and a dSprites-like run by their RUN_DIR parameter alone (no code change:
issue 20, point 5; issue 19)."""

from pathlib import Path

import pytest

import training

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]  # room for one retry (_execute)
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sweep_dir(shapes_npz, tmp_path_factory):
    out = tmp_path_factory.mktemp("nb") / "sweep"
    cfg = training.preset_config("test", data_path=str(shapes_npz), steps=40)
    index = training.sweep(cfg, [1.0, 8.0], [0], out, progress=False)
    assert all(r["status"] == "done" for r in index["runs"])
    return out


# A cell of these notebooks takes seconds (tens under load); a kernel that answers nothing for
# this long has hung (once in a fresh-clone CI run: 900 s in vae_viz, which runs in 6 s alone).
CELL_TIMEOUT_S = 300


def _execute(notebook, tmp_path, **parameters):
    """Runs ``notebook`` with papermill; a kernel that hangs or dies (not a cell that raises:
    PapermillExecutionError is never retried) gets one fresh kernel and a second run."""
    import nbformat
    import papermill
    from nbclient.exceptions import DeadKernelError

    out = tmp_path / notebook
    for attempt in (1, 2):
        try:
            papermill.execute_notebook(
                str(REPO / notebook),
                str(out),
                parameters=parameters,
                cwd=str(REPO),
                kernel_name="python3",
                progress_bar=False,
                execution_timeout=CELL_TIMEOUT_S,
                start_timeout=120,
            )  # raises PapermillExecutionError if any cell raises
            break
        except (TimeoutError, DeadKernelError) as e:
            if attempt == 2:
                raise
            print(f"{notebook}: the kernel hung or died ({type(e).__name__}); one retry")
    return nbformat.read(out, as_version=4)


def _has_image(nb) -> bool:
    return any(
        "image/png" in o.get("data", {}) or "image/gif" in o.get("data", {})
        for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )  # fmt: skip


def test_notebooks_are_committed_without_outputs():
    import nbformat

    for name in ("vae_viz.ipynb", "latent_space.ipynb"):
        nb = nbformat.read(REPO / name, as_version=4)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, f"{name}: exactly one cell tagged `parameters`"
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, name
                longest = max((len(b) for b in cell.source.split("\n\n")), default=0)
                assert cell.source.count("\n") < 15 or longest < 600, (
                    f"{name}: logic belongs in a module"
                )


def test_vae_viz_runs(sweep_dir, tmp_path):
    nb = _execute("vae_viz.ipynb", tmp_path, RUN_DIR=str(sweep_dir / "beta8_seed0"),
                  SWEEP_DIR=str(sweep_dir), REFRESHES=2, REFRESH_SECONDS=0)  # fmt: skip
    assert _has_image(nb)


def test_latent_space_runs(sweep_dir, tmp_path):
    nb = _execute("latent_space.ipynb", tmp_path, RUN_DIR=str(sweep_dir / "beta1_seed0"),
                  SWEEP_DIR=str(sweep_dir), PROTOCOL="quick", OUT=str(tmp_path / "fig"))  # fmt: skip
    assert _has_image(nb)
    for name in (
        "traversals.png",
        "traversals.gif",
        "factor_response.png",
        "geometry.png",
        "kl.png",
    ):
        assert (tmp_path / "fig" / name).stat().st_size > 0, name
    assert (sweep_dir / "report" / "scores.csv").exists()


@pytest.fixture(scope="module")
def run_128(shapes_npz, tmp_path_factory):
    """A `test`-preset run at 128² (the seed's resolution), 20 steps, scored with MIG only under
    the quick protocol, so latent_space.ipynb reads its metrics.json instead of spending minutes
    on the full suite at 128² (the notebook's plumbing is what this checks, not the scores)."""
    import latentSpace as ls

    out = tmp_path_factory.mktemp("nb128") / "beta1_seed0"
    cfg = training.preset_config("test", data_path=str(shapes_npz), image_size=128, steps=20)
    training.train(cfg, out, progress=False)
    ls.evaluate(out, protocol="quick", progress=False, figures=False,
                metric_options={"metrics": ["mig"]})  # fmt: skip
    return out


def test_both_notebooks_open_a_128px_run_by_parameter(run_128, tmp_path):
    nb = _execute("vae_viz.ipynb", tmp_path, RUN_DIR=str(run_128), SWEEP_DIR=None, REFRESHES=1,
                  REFRESH_SECONDS=0)  # fmt: skip
    assert _has_image(nb)
    nb = _execute("latent_space.ipynb", tmp_path, RUN_DIR=str(run_128), SWEEP_DIR=None,
                  PROTOCOL="quick", OUT=str(tmp_path / "fig"))  # fmt: skip
    assert _has_image(nb)
    assert "image=128²" in "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                                   for o in c.get("outputs", []))  # fmt: skip
    widget = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]  # fmt: skip
    assert widget, "the latent explorer cell displayed no widget"
    for name in ("traversals.png", "factor_response.png", "geometry.png", "kl.png"):
        assert (tmp_path / "fig" / name).stat().st_size > 0, name


@pytest.fixture(scope="module")
def run_dsprites(tmp_path_factory):
    """A `test`-preset run on the dSprites-like data with disentanglement_lib's nets (64², 20
    steps), scored with MIG only under the quick protocol, as run_128 is."""
    import latentSpace as ls

    out = tmp_path_factory.mktemp("nbdsprites") / "beta4_seed0"
    cfg = training.preset_config("test", dataset="dsprites", image_size=64, encoder="dlib_conv",
                                 decoder="dlib_deconv", likelihood="bernoulli", beta=4.0,
                                 steps=20)  # fmt: skip
    training.train(cfg, out, progress=False)
    ls.evaluate(out, protocol="quick", progress=False, figures=False,
                metric_options={"metrics": ["mig"]})  # fmt: skip
    return out


def test_both_notebooks_show_a_dsprites_run_by_parameter(run_dsprites, tmp_path):
    """Issue 19: the notebooks show a run of another dataset by RUN_DIR alone; its factor names
    (orientation, circular), its display name and the dlib nets reach the figures and the text."""
    nb = _execute("vae_viz.ipynb", tmp_path, RUN_DIR=str(run_dsprites), SWEEP_DIR=None,
                  REFRESHES=1, REFRESH_SECONDS=0)  # fmt: skip
    assert _has_image(nb)
    nb = _execute("latent_space.ipynb", tmp_path, RUN_DIR=str(run_dsprites), SWEEP_DIR=None,
                  PROTOCOL="quick", OUT=str(tmp_path / "fig"))  # fmt: skip
    assert _has_image(nb)
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                   for o in c.get("outputs", []))  # fmt: skip
    assert "dSprites-like (procedural)" in text and "image=64²" in text, text[:2000]
    for name in ("traversals.png", "factor_response.png", "geometry.png", "kl.png"):
        assert (tmp_path / "fig" / name).stat().st_size > 0, name
