"""Latent onsets (trainviz.latent_onsets) and scripts/training_budget.py on synthetic histories
whose answer is known: which latent opened when, and which closed again."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from sbd_vae import rundir, trainviz

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("training_budget", ROOT / "scripts" /
                                                  "training_budget.py")  # fmt: skip
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _history(kls: dict[int, list[float]], log_every: int = 100) -> list[dict]:
    """history rows whose kl_d column is kls[d] (rows at log_every, 2·log_every, …)."""
    n = len(next(iter(kls.values())))
    rows = []
    for i in range(n):
        kl = {f"kl_{d}": v[i] for d, v in kls.items()}
        rows.append(dict(step=(i + 1) * log_every, loss=100.0 - i, recon=90.0 - i,
                         kl=sum(kl.values()), **kl))  # fmt: skip
    return rows


def _run(tmp_path, name, beta, rows) -> Path:
    run = tmp_path / name
    run.mkdir()
    (run / "config.json").write_text(json.dumps(dict(beta=beta, batch_size=16)))
    rundir.write_history(run, rows)
    return run


KLS = {
    0: [0.1, 2.0, 3.0, 4.0, 5.0],  # opens at 200 and stays open
    1: [0.0, 0.0, 0.5, 1.5, 2.0],  # opens at 400
    2: [2.0, 2.0, 0.2, 0.1, 0.0],  # opened, then closed: no onset
    3: [0.0, 1.2, 0.3, 1.1, 1.3],  # dipped below once: its onset is the last stretch's start, 400
    4: [0.0, 0.0, 0.0, 0.0, 0.0],  # never
}


def test_latent_onsets_follow_the_last_stretch_above_the_threshold():
    onsets = trainviz.latent_onsets(_history(KLS))
    assert onsets == {0: 200, 1: 400, 2: None, 3: 400, 4: None}
    assert trainviz.latent_onsets(_history(KLS), nats=4.5) == {0: 500, 1: None, 2: None,
                                                                 3: None, 4: None}  # fmt: skip
    assert trainviz.latent_onsets([]) == {}


def test_budget_table_and_figures(tmp_path):
    run = _run(tmp_path, "beta4_seed0", 4.0, _history(KLS))
    mod = _script()
    text = mod.budget_table([run], [100, 300, 500, 700])  # 700: not logged, left out
    rows = [line for line in text.splitlines() if line.startswith("| beta4_seed0 | 4 |")]
    assert [r.split(" | ")[2] for r in rows] == ["100", "300", "500"]
    assert "| 300 | 4,800 |" in rows[1]  # images seen = step × batch
    assert rows[0].endswith("| 1: z2 2.0 |")  # only z2 is above 1 nat at step 100
    assert rows[2].endswith("| 3: z0 5.0, z1 2.0, z3 1.3 |")  # sorted by KL
    assert "| beta4_seed0 | 500 | z0: 200, z1: 400, z3: 400 |" in text

    out = tmp_path / "out"
    assert mod.main([str(run), "--steps", "300", "500", "--out", str(out)]) == 0
    assert {p.name for p in out.iterdir()} == {"budget.md", "curves.png", "kl_beta4_seed0.png"}
    assert (out / "budget.md").read_text().startswith("# Loss and KL per latent")


def test_a_folder_that_is_no_run_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        _script().main([str(tmp_path), "--steps", "100", "--out", str(tmp_path / "o")])
    assert e.value.code == 2
    assert "is not a run directory (no config.json)" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # nothing written
