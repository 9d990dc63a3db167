"""Runs every benchmark and writes BENCHMARKS.md (atomically).

python bench/run_all.py --out BENCHMARKS.md [--quick] [--only data train objectives metrics explorer latent]

Each section sits between ``<!-- bench:NAME -->`` markers, so ``--only`` re-measures some sections
and keeps the others of the existing file as they were (each section names its own command,
machine and date).
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import re
import sys
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO, machine  # noqa: E402

SECTIONS = ["bench_data", "bench_train", "bench_bf16", "bench_backends", "bench_precision", "bench_objectives",
            "bench_metrics", "bench_explorer", "bench_latent"]  # fmt: skip


def _sections(text: str) -> dict[str, str]:
    """{bench module: its section} of an existing BENCHMARKS.md (between the markers)."""
    pat = re.compile(r"<!-- bench:(\w+) -->\n(.*?)\n<!-- /bench:\1 -->", re.S)
    return {m.group(1): m.group(2) for m in pat.finditer(text)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default=str(REPO / "BENCHMARKS.md"))
    p.add_argument("--quick", action="store_true", help="fewer repetitions")
    p.add_argument("--only", nargs="*", default=None, help="subset, e.g. data train")
    args = p.parse_args(argv)
    sys.path.insert(0, str(REPO))
    from sbd_vae import rundir

    names = [s for s in SECTIONS if not args.only or s.removeprefix("bench_") in args.only]
    unknown = sorted(set(args.only or []) - {s.removeprefix("bench_") for s in SECTIONS})
    if unknown:
        p.error(f"--only {' '.join(unknown)}: choose among "
                f"{' '.join(s.removeprefix('bench_') for s in SECTIONS)}")  # fmt: skip
    kept = _sections(Path(args.out).read_text()) if Path(args.out).exists() else {}
    today = datetime.date.today()
    header = [
        "# Benchmarks",
        "",
        f"Written by `make bench` (`python bench/run_all.py`); last run {today}"
        + (
            f" (sections: {', '.join(n.removeprefix('bench_') for n in names)})"
            if args.only
            else ""
        )
        + ".",
        f"Machine of the last run: {machine()}. Each section names the machine it was measured on.",
        "Every figure is measured in one run of the command; compare ratios, not absolute rates.",
        "",
    ]
    sections, failed = {}, 0
    for name in names:
        print(f"[bench] {name} ...", flush=True)
        try:
            title, _, rest = importlib.import_module(name).run(quick=args.quick).partition("\n")
            sections[name] = f"{title}\n\n_Measured {today}._\n{rest}"
        except Exception:  # one broken benchmark must not hide the others
            failed += 1
            sections[name] = f"## {name}\n\nFAILED:\n```\n{traceback.format_exc()}\n```\n"
    parts = list(header)
    for name in SECTIONS:
        body = sections.get(name, kept.get(name))
        if body is not None:
            parts += [f"<!-- bench:{name} -->", body.strip("\n"), f"<!-- /bench:{name} -->", ""]
    rundir.write_text(args.out, "\n".join(parts))
    print(f"[bench] wrote {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
