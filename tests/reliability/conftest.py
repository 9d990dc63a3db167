"""Fixtures of the fault-injection suite and the summary table it prints.

``STRESS=1`` (``make stress``) switches the heavy variants on: 10 kill points instead of 3.
Every try of a scenario is recorded through the ``record`` fixture; the table has one row per
scenario: tries, survived, data lost. ``pytest_terminal_summary`` prints it after the run (in
``make test`` as well) and, with ``RELIABILITY_TABLE=path``, also writes it there as Markdown.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from reliability_helpers import CLI_ENV, KILL_POINTS, ROOT, STRESS, train_cmd

_RECORDS: list[dict] = []


def add_record(scenario: str, survived: bool, lost: str = "none", redone: int | None = None):
    """One try of a scenario: did it survive, what was lost beyond the promise, and how many
    training steps had to be recomputed (the promise: at most one checkpoint interval)."""
    _RECORDS.append(dict(scenario=scenario, survived=bool(survived), lost=lost, redone=redone))


@pytest.fixture
def record():
    """record(scenario, survived, lost="none", redone=None): one try, for the summary table."""
    return add_record


def summarize(records: list[dict]) -> list[dict]:
    """Rows of the table: one per scenario, in first-seen order."""
    rows: dict[str, dict] = {}
    for r in records:
        row = rows.setdefault(r["scenario"], dict(tries=0, survived=0, lost=[], redone=[]))
        row["tries"] += 1
        row["survived"] += r["survived"]
        if r["lost"] != "none" and r["lost"] not in row["lost"]:
            row["lost"].append(r["lost"])
        if r["redone"] is not None:
            row["redone"].append(r["redone"])
    out = []
    for name, row in rows.items():
        lost = "; ".join(row["lost"]) or "none"
        if row["redone"]:
            lost += f" (≤ {max(row['redone'])} steps recomputed)"
        out.append(dict(scenario=name, tries=row["tries"], survived=row["survived"], lost=lost))
    return out


def format_table(records: list[dict]) -> str:
    head = ["scenario", "tries", "survived", "data lost"]
    rows = [
        [r["scenario"], str(r["tries"]), str(r["survived"]), r["lost"]] for r in summarize(records)
    ]
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(head, widths)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |" for row in rows]
    return "\n".join([line, sep, *body])


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not _RECORDS:
        return
    mode = f"STRESS=1, {KILL_POINTS} kill points" if STRESS else f"{KILL_POINTS} kill points"
    tr = terminalreporter
    tr.section(f"reliability summary ({mode})")
    table = format_table(_RECORDS)
    tr.write_line(table)
    out = os.environ.get("RELIABILITY_TABLE")
    if out:
        Path(out).write_text(f"<!-- {mode}, {time.strftime('%Y-%m-%d %H:%M')} -->\n{table}\n")


@pytest.fixture(scope="session")
def ref_run(shapes_npz, tmp_path_factory):
    """An uninterrupted `training.py train --preset test` run made by the CLI in a subprocess:
    the reference that every killed, resumed or disk-full run must end up equal to.
    Returns dict(out, cmd_args, seconds)."""
    out = tmp_path_factory.mktemp("ref") / "run"
    t0 = time.time()
    r = subprocess.run(
        train_cmd(shapes_npz, out), cwd=ROOT, env=CLI_ENV, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    if r.returncode != 0:
        pytest.fail(f"reference training run failed ({r.returncode}):\n{r.stderr[-3000:]}")
    return dict(out=out, seconds=time.time() - t0)


@pytest.fixture(scope="session")
def mid_run(shapes_npz, tmp_path_factory):
    """A `test`-preset run stopped (checkpointed) at step 60 in-process: checkpoints 40 and 60.
    Tests copy it before changing anything."""
    import training

    out = tmp_path_factory.mktemp("mid") / "run"
    cfg = training.preset_config("test", data_path=str(shapes_npz))
    training.train(cfg, out, progress=False, stop_at=60)
    return out


@pytest.fixture(scope="session")
def ref_weights(ref_run):
    from reliability_helpers import model_weights

    return model_weights(ref_run["out"] / "model.keras")


if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
