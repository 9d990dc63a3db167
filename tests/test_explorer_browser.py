"""The latent explorer in a real browser: JupyterLab under headless Chromium opens a two-cell
notebook that shows a committed study run in the explorer, runs it, and ipywidgets' JavaScript
draws one slider per latent (sbd_vae/browser.py drives Chromium over the DevTools protocol).

Skips, saying why, only where no Chromium is installed (Debian: `apt-get install -y chromium`,
or `WITH_CHROMIUM=1 make setup`); the explorer's Python side is tested in tests/test_explorer.py.
Exclude it with `-m "not browser"`."""

from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest

from sbd_vae import browser
from sbd_vae.explorer import write_demo_notebook

pytestmark = [pytest.mark.slow, pytest.mark.browser]
REPO = Path(__file__).resolve().parents[1]
RUN, SWEEP = REPO / "results" / "study" / "beta8_seed0", REPO / "results" / "study"


def test_jupyterlab_draws_the_explorer(default_npz, tmp_path):
    if browser.find_chromium() is None:
        pytest.skip(f"no browser ({', '.join(browser.BROWSERS)}) on PATH: install one with "
                    "`apt-get install -y chromium` to run the explorer in JupyterLab")  # fmt: skip
    nb = write_demo_notebook(tmp_path / "explorer.ipynb", RUN, SWEEP, REPO)
    got = browser.run_and_screenshot(nb, tmp_path / "explorer.png", min_count=10)
    assert got["count"] == 10 + 5  # the run's 10 latents, the input's 5 factor sliders (not shape)
    shot = imageio.imread(got["png"])  # (H, W, 4): the cell, code and explorer
    assert shot.shape[0] > 400 and shot.shape[1] > 600, shot.shape
    assert np.asarray(shot[..., :3], np.float32).std() > 10  # drawn, not a blank page
