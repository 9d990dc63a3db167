"""The layout: five user modules at the root, the plumbing in sbd_vae/, imports one way, no cycles.

The import graph is read with ``ast`` from every module of the repository's code (the root
modules, sbd_vae/ and blender/), function-level (lazy) imports included: an edge A → B for every
``import``/``from … import`` in A that names B. A cycle anywhere fails, and so does a module of
the package that imports a root module (the package must receive such objects as arguments).
"""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
USER_MODULES = {"data", "dataset", "latentSpace", "training", "variationAutoEncoder"}
PACKAGE = "sbd_vae"


def _modules() -> dict[str, Path]:
    """{dotted module name: file} of the root modules and of every module under sbd_vae/, blender/."""
    mods = {p.stem: p for p in ROOT.glob("*.py")}
    for pkg in (PACKAGE, "blender"):
        for p in (ROOT / pkg).rglob("*.py"):
            parts = p.relative_to(ROOT).with_suffix("").parts
            mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return mods


def _resolve(name: str, mods) -> str | None:
    """The longest prefix of ``name`` that is one of ``mods`` (``a.b.c`` → ``a.b`` if c is a
    function of module a.b), or None for a module outside the repository."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        if ".".join(parts[:i]) in mods:
            return ".".join(parts[:i])
    return None


def import_graph() -> dict[str, set[str]]:
    """{module: the repository modules it imports}."""
    mods = _modules()
    graph = {m: set() for m in mods}
    for mod, path in mods.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the module's package, up level - 1 packages
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join([*anchor, *([base] if base else [])])
                # `from pkg import sub` names the module pkg.sub where it exists
                targets = [f"{base}.{a.name}" for a in node.names] or [base]
            for t in targets:
                dep = _resolve(t, mods)
                if dep is not None and dep != mod:
                    graph[mod].add(dep)
    return graph


def _cycles(graph) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_root_holds_only_the_five_user_modules():
    tracked = subprocess.run(["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True, text=True)
    names = (
        {Path(p).stem for p in tracked.stdout.split() if "/" not in p}
        if tracked.returncode == 0
        else {p.stem for p in ROOT.glob("*.py")}
    )
    assert names == USER_MODULES, names ^ USER_MODULES


def test_no_import_cycles():
    graph = import_graph()
    assert len([m for m in graph if m.startswith(PACKAGE)]) > 10  # the walk found the package
    assert _cycles(graph) == []


def test_the_package_never_imports_a_root_module():
    graph = import_graph()
    bad = {m: sorted(deps & USER_MODULES) for m, deps in graph.items() if m.startswith(PACKAGE)}
    assert {m: d for m, d in bad.items() if d} == {}


def test_the_graph_reader_sees_cycles_and_lazy_imports():
    """The checks above would pass vacuously on a reader that found no edges."""
    graph = import_graph()
    assert "sbd_vae.rundir" in graph["sbd_vae.config"]  # from . import rundir
    assert "sbd_vae.metrics.mig" in graph["sbd_vae.metrics.registry"]  # from .mig import METRIC
    assert "variationAutoEncoder" in graph["latentSpace"]  # a lazy import inside load_run
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_public_imports_work():
    code = (
        "from latentSpace import mig, dci, sap, modularity_explicitness, beta_vae_score, "
        "factor_vae_score, compute_metrics, load_run, evaluate, report\n"
        "from variationAutoEncoder import BetaVAE, Encoder, SpatialBroadcastDecoder, DeconvDecoder\n"
        "from dataset import ShapesDataset\n"
        "from data import load_dataset\n"
        "from training import TrainConfig, train, sweep\n"
        "import latentSpace\n"
        "missing = [n for n in latentSpace.__all__ if not hasattr(latentSpace, n)]\n"
        "assert not missing, missing\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
