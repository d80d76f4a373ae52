"""Requirement lists for one deployable, read from pyproject.toml's core list and extras.

Standard library only: the image builds copy this one file next to pyproject.toml and run it
(`python3 extras.py worker`) before any of the code is copied, so a code change does not
reinstall the dependencies. `--write` regenerates requirements.txt, the list Azure's build
installs for the Functions app; tests/test_extras.py checks the committed file is in sync.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path
from typing import Any

PROJECT = "qscore"
FUNCTIONS_REQUIREMENTS = "requirements.txt"
_SELF = re.compile(rf"^{PROJECT}\[(?P<extras>[^\]]+)\]\s*$")


def load_project(pyproject: Path) -> dict[str, Any]:
    project: dict[str, Any] = tomllib.loads(pyproject.read_text())["project"]
    return project


def expand_extras(project: dict[str, Any], extras: list[str]) -> list[str]:
    """The extras named plus every `qscore[...]` extra they include, in first-seen order."""
    known = project.get("optional-dependencies", {})
    seen: list[str] = []
    pending = list(extras)
    while pending:
        extra = pending.pop(0)
        if extra in seen:
            continue
        if extra not in known:
            raise KeyError(f"pyproject.toml has no extra {extra!r} (known: {', '.join(sorted(known))})")
        seen.append(extra)
        for requirement in known[extra]:
            match = _SELF.match(requirement)
            if match:
                pending.extend(name.strip() for name in match["extras"].split(","))
    return seen


def requirements(project: dict[str, Any], extras: list[str]) -> list[str]:
    """The core dependencies plus those of `extras` (self-references flattened), no duplicates."""
    lines: list[str] = list(project["dependencies"])
    for extra in expand_extras(project, extras):
        lines.extend(r for r in project["optional-dependencies"][extra] if not _SELF.match(r))
    return list(dict.fromkeys(lines))


def functions_requirements_text(project: dict[str, Any]) -> str:
    header = (
        "# The Functions app's dependencies (Azure's build installs this file), generated from\n"
        "# pyproject.toml: the core list plus the `functions` extra. Do not edit; regenerate with\n"
        "#   python -m qscore_tools.release.extras --write\n"
    )
    return header + "\n".join(requirements(project, ["functions"])) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("extras", nargs="*", help="extras whose requirements to print, e.g. worker")
    parser.add_argument("--pyproject", type=Path, default=Path("pyproject.toml"))
    parser.add_argument("--write", action="store_true", help=f"regenerate {FUNCTIONS_REQUIREMENTS}")
    args = parser.parse_args(argv)
    project = load_project(args.pyproject)
    if args.write:
        target = args.pyproject.parent / FUNCTIONS_REQUIREMENTS
        target.write_text(functions_requirements_text(project))
        return 0
    try:
        print("\n".join(requirements(project, args.extras)))
    except KeyError as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
