"""img/explorer.png: the latent explorer drawn by JupyterLab under headless Chromium.

    python scripts/explorer_screenshot.py [--run results/study/beta1_seed0] [--sweep results/study]
        [--out img/explorer.png]

Writes a two-cell notebook that opens the run in the explorer (``sbd_vae.explorer``), runs it in
JupyterLab in a headless Chromium (``sbd_vae.browser``) and saves the cell as a PNG. Needs
Chromium (Debian: ``apt-get install -y chromium``) and the run's data (data/shapes.npz for the
committed study: ``make data``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main(argv=None) -> int:
    from sbd_vae import browser
    from sbd_vae.explorer import write_demo_notebook

    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--run", default="results/study/beta1_seed0", help="a finished run [default %(default)s]"
    )
    p.add_argument(
        "--sweep", default="results/study", help="its sweep, for the dropdown [default %(default)s]"
    )
    p.add_argument(
        "--out", default="img/explorer.png", help="the PNG written [default %(default)s]"
    )
    p.add_argument(
        "--timeout", type=float, default=300, help="seconds before giving up [default %(default)s]"
    )
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="explorer_nb_") as tmp:
        nb = write_demo_notebook(Path(tmp) / "explorer.ipynb", args.run, args.sweep, REPO)
        try:
            got = browser.run_and_screenshot(nb, args.out, timeout=args.timeout)
        except (FileNotFoundError, RuntimeError, TimeoutError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    print(f"{args.out}: {got['count']} sliders drawn in {got['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
