"""scripts/compare_studies.py: two synthetic studies with known scores, compared at one step."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import compare_studies  # noqa: E402


def _study(root: Path, values: dict, snapshot: bool) -> Path:
    """A published study: {β: [mig per seed]}; scores at step 8000 either as the final score of
    an 8 000-step run or as the step-8000 snapshot of a 32 000-step run (final score 0.99)."""
    for beta, migs in values.items():
        for seed, mig in enumerate(migs):
            run = root / f"beta{beta}_seed{seed}"
            run.mkdir(parents=True)
            m = {"beta": beta, "seed": seed, "step": 8000, "mig": mig, "dci_disentanglement": 0.5}
            if snapshot:
                m.update(step=32000, mig=0.99)
                m["snapshots"] = {"steps": {"8000": {"mig": mig, "dci_disentanglement": 0.5}}}
            (run / "metrics.json").write_text(json.dumps(m))
    return root


def test_compare_at_step_matches_welch_and_holm(tmp_path):
    a = _study(tmp_path / "narrow", {1: [0.1, 0.2, 0.15], 16: [0.02, 0.03, 0.025]}, False)
    b = _study(tmp_path / "wide", {1: [0.3, 0.25, 0.35], 16: [0.1, 0.2, 0.12], 4: [0.5] * 3}, True)
    rows = compare_studies.compare(a, b, 8000, keys=("mig",))
    assert [r["beta"] for r in rows] == [1.0, 16.0]  # β = 4 is in one study only
    r1 = rows[0]
    ref = stats.ttest_ind([0.3, 0.25, 0.35], [0.1, 0.2, 0.15], equal_var=False)
    assert r1["diff"] == pytest.approx(0.3 - 0.15)  # the snapshot, not the final 0.99
    assert r1["p"] == pytest.approx(ref.pvalue)
    ps = np.array([r["p"] for r in rows])
    holm = np.minimum(1, np.maximum.accumulate(np.sort(ps) * np.array([2, 1])))
    assert sorted(r["p_holm"] for r in rows) == pytest.approx(sorted(holm))
    assert r1["detectable"] > 0
    md = compare_studies.markdown(rows, a, b, 8000)
    assert "| mig | 1 | 3, 3 | 0.150 | 0.300 | +0.150 |" in md


def test_constant_scores_are_not_testable(tmp_path):
    a = _study(tmp_path / "a", {1: [0.5, 0.5, 0.5]}, False)
    b = _study(tmp_path / "b", {1: [0.5, 0.5, 0.5]}, False)
    (row,) = compare_studies.compare(a, b, 8000, keys=("mig",))
    assert np.isnan(row["p"]) and "not testable" in row["note"]


def test_empty_study_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    a = _study(tmp_path / "a", {1: [0.1, 0.2, 0.3]}, False)
    with pytest.raises(SystemExit):
        compare_studies.main([str(a), str(tmp_path / "empty")])
    assert "no scored runs" in capsys.readouterr().err
