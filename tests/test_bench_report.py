"""bench/run_all.py: re-measuring some sections keeps the others of BENCHMARKS.md intact."""

from __future__ import annotations

import types
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture
def run_all(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import run_all

    calls = []

    def fake_import(name):  # each section's run() returns a heading, a counter and its name
        def run(quick=False):
            calls.append(name)
            return f"## {name}\n\nrun {len(calls)} of {name}, quick={quick}\n"

        return types.SimpleNamespace(run=run)

    monkeypatch.setattr(run_all.importlib, "import_module", fake_import)
    return run_all, calls


def test_only_replaces_the_named_sections(run_all, tmp_path):
    mod, calls = run_all
    out = tmp_path / "BENCHMARKS.md"
    assert mod.main(["--out", str(out)]) == 0
    first = mod._sections(out.read_text())
    assert list(first) == mod.SECTIONS and calls == mod.SECTIONS

    assert mod.main(["--out", str(out), "--only", "latent", "--quick"]) == 0
    second = mod._sections(out.read_text())
    assert list(second) == mod.SECTIONS  # order kept, nothing lost
    for name in mod.SECTIONS[:-1]:
        assert second[name] == first[name]
    n = len(mod.SECTIONS) + 1  # one call per section, then the re-measured one
    assert f"run {n} of bench_latent, quick=True" in second["bench_latent"]
    assert "_Measured " in second["bench_latent"].splitlines()[2]


def test_unknown_section_is_refused(run_all, tmp_path, capsys):
    mod, calls = run_all
    with pytest.raises(SystemExit) as e:
        mod.main(["--out", str(tmp_path / "B.md"), "--only", "lattent"])
    assert e.value.code == 2 and calls == []
    assert "lattent" in capsys.readouterr().err
    assert not (tmp_path / "B.md").exists()


def test_a_failing_section_is_reported_and_the_rest_written(run_all, tmp_path, monkeypatch):
    mod, _ = run_all

    def broken(name):
        if name == "bench_train":
            raise RuntimeError("boom")
        return types.SimpleNamespace(run=lambda quick=False: f"## {name}\n\nok\n")

    monkeypatch.setattr(mod.importlib, "import_module", broken)
    out = tmp_path / "BENCHMARKS.md"
    assert mod.main(["--out", str(out)]) == 1
    sections = mod._sections(out.read_text())
    assert "FAILED" in sections["bench_train"] and "boom" in sections["bench_train"]
    assert sections["bench_data"].endswith("ok")
