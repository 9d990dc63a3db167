"""Runs every benchmark and writes BENCHMARKS.md (atomically).

python bench/run_all.py --out BENCHMARKS.md [--quick] [--only data train metrics latent]
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import sys
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO, machine  # noqa: E402

SECTIONS = ["bench_data", "bench_train", "bench_metrics", "bench_latent"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default=str(REPO / "BENCHMARKS.md"))
    p.add_argument("--quick", action="store_true", help="fewer repetitions")
    p.add_argument("--only", nargs="*", default=None, help="subset, e.g. data train")
    args = p.parse_args(argv)
    sys.path.insert(0, str(REPO))
    import rundir

    names = [s for s in SECTIONS if not args.only or s.removeprefix("bench_") in args.only]
    parts = [
        "# Benchmarks",
        "",
        f"Written by `make bench` (`python bench/run_all.py`) on {datetime.date.today()}.",
        f"Machine: {machine()}.",
        "Every figure is measured in one run of the command; compare ratios, not absolute rates.",
        "",
    ]
    failed = 0
    for name in names:
        print(f"[bench] {name} ...", flush=True)
        try:
            parts.append(importlib.import_module(name).run(quick=args.quick))
        except Exception:  # one broken benchmark must not hide the others
            failed += 1
            parts.append(f"## {name}\n\nFAILED:\n```\n{traceback.format_exc()}\n```\n")
    rundir.write_text(args.out, "\n".join(parts))
    print(f"[bench] wrote {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
