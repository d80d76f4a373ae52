"""Repack the nvidia-pytriton wheel without what the GPU run cannot use, to fit 64 MiB a call.

The wheel (55 MB) carries a Python-backend stub for each of Python 3.8-3.13 and, for the 3.13
stub alone, a bundled libpython3.13 (13.6 MB compressed). The GPU machine runs Python 3.12, so
the other stubs and that library are dropped, and RECORD is rewritten to match; every other
file (tritonserver, its libraries, the Python backend, the 3.12 stub) is copied byte for byte.
`python -m qscore_tools.bench.gpu.slim_wheel WHEEL [--keep-python 3.12]` replaces WHEEL in place.
"""

from __future__ import annotations

import argparse
import re
import shutil
import tempfile
import zipfile
from pathlib import Path

STUBS = re.compile(r"^pytriton/tritonserver/python_backend_stubs/(\d+\.\d+)/")
BUNDLED_LIBPYTHON = re.compile(r"^nvidia_pytriton\.libs/libpython3-[0-9a-f]+\.(\d+)\.so")


def dropped(name: str, keep_python: str) -> bool:
    """True for a stub of another Python version, or a bundled libpython of another version."""
    stub = STUBS.match(name)
    if stub:
        return stub.group(1) != keep_python
    library = BUNDLED_LIBPYTHON.match(name)
    return library is not None and f"3.{library.group(1)}" != keep_python


def slim(source: Path, target: Path, keep_python: str = "3.12") -> list[str]:
    """Write the slim copy of `source` to `target`; returns the names left out."""
    left_out: list[str] = []
    with zipfile.ZipFile(source) as wheel, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as out:
        for info in wheel.infolist():
            if dropped(info.filename, keep_python):
                left_out.append(info.filename)
                continue
            data = wheel.read(info)
            if info.filename.endswith(".dist-info/RECORD"):
                lines = data.decode().splitlines()
                data = ("\n".join(line for line in lines if not dropped(line, keep_python)) + "\n").encode()
            out.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
    return left_out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", type=Path)
    parser.add_argument("--keep-python", default="3.12")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        slimmed = Path(tmp) / args.wheel.name
        left_out = slim(args.wheel, slimmed, args.keep_python)
        shutil.move(slimmed, args.wheel)
    print(f"{args.wheel.name}: left out {len(left_out)} files; now {args.wheel.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
