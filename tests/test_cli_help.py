"""`--help` a person can use (issue 21, point 4): every flag of every CLI has a one-line help,
training.py's and latentSpace.py's with their default; `--beta`'s says what it weighs under each
objective; the help of a config flag comes from its ``TrainConfig`` field."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# the CLIs without a build_parser(): their parser is caught when main() parses (in a subprocess,
# since gpu_study.py sets KERAS_BACKEND on import)
OTHER_CLIS = ("dataset.py", "blender/render_shapes.py", "scripts/gpu_study.py",
              "scripts/data_design.py", "scripts/tc_batch_bias.py", "scripts/compare_studies.py",
              "scripts/explorer_screenshot.py")  # fmt: skip
DEFAULT_MARK = re.compile(r"\[(default|off|required)\b")


def walk(parser: argparse.ArgumentParser, path: str = ""):
    """(where, action) for every action of ``parser`` and its subparsers, -h excepted; the
    subcommand entries count as actions (their help is the line in the parent's list)."""
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        yield path, action
        if isinstance(action, argparse._SubParsersAction):
            listed = {a.dest: a for a in action._choices_actions}  # only those given a help
            for name in action.choices:
                yield path, listed.get(name, argparse.Action([], name, help=None))
            for name, sub in action.choices.items():
                yield from walk(sub, f"{path} {name}".strip())


def name_of(where: str, action) -> str:
    flag = "/".join(action.option_strings) or action.dest or action.metavar
    return f"{where or '(main)'} {flag}"


def without_help(parser) -> list[str]:
    """Every action whose help is missing, blank or more than one line."""
    return [name_of(w, a) for w, a in walk(parser)
            if not isinstance(a.help, str) or not a.help.strip() or "\n" in a.help]  # fmt: skip


def parser_of_script(relpath: str) -> argparse.ArgumentParser:
    """The parser a script's main builds, caught at parse_args (nothing runs)."""

    class Caught(Exception):
        pass

    def catch(self, *args, **kwargs):
        raise Caught(self)

    spec = importlib.util.spec_from_file_location(Path(relpath).stem, ROOT / relpath)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    original = argparse.ArgumentParser.parse_args
    argparse.ArgumentParser.parse_args = catch
    try:
        module.main([])
    except Caught as caught:
        return caught.args[0]
    finally:
        argparse.ArgumentParser.parse_args = original
    raise AssertionError(f"{relpath}: main() did not parse arguments")


@pytest.fixture(scope="module")
def parsers():
    import latentSpace
    import training

    return {"training.py": training.build_parser(), "latentSpace.py": latentSpace.build_parser()}


def test_every_flag_has_a_one_line_help_with_its_default(parsers):
    missing, no_default = [], []
    for cli, parser in parsers.items():
        missing += [f"{cli} {n}" for n in without_help(parser)]
        no_default += [f"{cli} {name_of(w, a)}: {a.help!r}" for w, a in walk(parser)
                       if a.option_strings and not DEFAULT_MARK.search(a.help or "")]  # fmt: skip
    assert not missing, f"flags without a help: {missing}"
    assert not no_default, (
        "flags whose help does not end in [default …] / [off] / [required]:\n"
        + ("\n".join(no_default))
    )


def test_config_flags_take_their_help_from_the_field(parsers):
    """Each ``--<field>`` help starts with the field's own help, stored with the field."""
    from sbd_vae.config import TrainConfig

    actions = {a.dest: a for w, a in walk(parsers["training.py"]) if w == "train"}
    for f in fields(TrainConfig):
        assert f.metadata.get("help", "").strip(), f"TrainConfig.{f.name} has no help"
        if f.name != "preset":  # --preset is its own flag
            assert actions[f.name].help.startswith(f.metadata["help"]), f.name


def test_beta_help_names_what_it_weighs_under_every_objective(parsers):
    from sbd_vae import hparams

    assert set(hparams.BETA_WEIGHS) == set(hparams.OBJECTIVES)
    for where in ("train", "sweep"):
        (beta,) = [a for w, a in walk(parsers["training.py"]) if w == where and a.dest == "beta"]
        for objective in hparams.OBJECTIVES:
            assert f"{objective}: {hparams.BETA_WEIGHS[objective]}" in beta.help, objective


def _help(*argv: str) -> str:
    """stdout of ``python ARGV --help`` in a real process (exit 0, no traceback), unwrapped."""
    env = dict(os.environ, COLUMNS="1000")  # one help per line
    r = subprocess.run([sys.executable, *argv, "--help"], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-3000:]
    return r.stdout


def test_train_help_runs_and_explains_beta():
    out = _help("training.py", "train")
    (line,) = [s for s in out.splitlines() if s.lstrip().startswith("--beta ")]
    for words in ("tcvae: the TC", "capacity: nothing", "factorvae: γ", "[default 1]"):
        assert words in line, line
    assert "--snapshot_steps" in _help("training.py", "sweep")
    assert "--all-snapshots" in _help("latentSpace.py", "evaluate")


def test_the_other_clis_have_no_empty_help():
    code = ("import json, sys; sys.path[:0] = ['tests', '.']; import test_cli_help as t; "
            "print(json.dumps({c: t.without_help(t.parser_of_script(c)) for c in t.OTHER_CLIS}))")  # fmt: skip
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    missing = json.loads(r.stdout.strip().splitlines()[-1])
    assert set(missing) == set(OTHER_CLIS) and not any(missing.values()), missing
