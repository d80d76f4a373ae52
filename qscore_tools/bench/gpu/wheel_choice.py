"""Which carried wheels run.sh installs: all of them, except grpcio and protobuf where the GPU
machine's own already satisfy tritonclient 2.73 (its onnx and tensorboard were built against them).

`python -m qscore_tools.bench.gpu.wheel_choice .whl/*.whl` prints the wheels to install, one a line,
and says on stderr which of the machine's own packages it keeps. Standard library only: it runs
before anything is installed.
"""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

Version = tuple[int, ...]
# distribution -> (lowest version tritonclient 2.73's generated code accepts, first excluded or None)
KEEP_IF: dict[str, tuple[Version, Version | None]] = {
    "protobuf": ((6, 33, 5), (7,)),
    "grpcio": ((1, 81, 1), None),
}


def installed_version(name: str) -> Version | None:
    try:
        return tuple(int(part) for part in metadata.version(name).split(".")[:3])
    except (metadata.PackageNotFoundError, ValueError):
        return None


def machine_satisfies(name: str) -> bool:
    bounds = KEEP_IF.get(name)
    version = installed_version(name)
    if bounds is None or version is None:
        return False
    lowest, excluded = bounds
    return version >= lowest and (excluded is None or version < excluded)


def distribution_of(wheel: Path) -> str:
    return wheel.name.split("-", 1)[0].lower().replace("_", "-")


def wheels_to_install(wheels: list[Path]) -> tuple[list[Path], list[str]]:
    """(wheels to install, names of the machine's own packages kept instead)."""
    kept = [distribution_of(w) for w in wheels if machine_satisfies(distribution_of(w))]
    return [w for w in wheels if distribution_of(w) not in kept], kept


def main(argv: list[str] | None = None) -> None:
    install, kept = wheels_to_install([Path(arg) for arg in (sys.argv[1:] if argv is None else argv)])
    for name in kept:
        print(f"keeping the machine's own {name} {metadata.version(name)}", file=sys.stderr)
    for wheel in install:
        print(wheel)


if __name__ == "__main__":
    main()
