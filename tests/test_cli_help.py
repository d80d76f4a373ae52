"""Every `qscore` command and subcommand renders its `--help`: exit 0, no exception. Help text
goes through Rich markup (Typer), so a stray `[/...]` in a help string is a crash a new user
meets first; the walk finds commands added later without this list being edited."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from qscore_cli import app


def _command_paths(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """The root, every group and every command below it (Typer's groups carry `commands`)."""
    yield path
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from _command_paths(sub, (*path, name))


PATHS = list(_command_paths(typer.main.get_command(app)))


def test_the_walk_sees_the_whole_tree() -> None:
    # A guard on the walk itself: were it to stop at the root, every case below would be vacuous.
    assert ("model", "drift") in PATHS and ("dead-letters", "purge") in PATHS
    assert len(PATHS) > 30


@pytest.mark.parametrize("path", PATHS, ids=lambda path: " ".join(path) or "qscore")
def test_help_renders(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exception is None, f"qscore {' '.join(path)} --help: {result.exception!r}"
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert "Usage:" in result.output
