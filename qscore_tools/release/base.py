"""Base images: the official one where it can be pulled, else a Debian 12 base made here.

The Debian base is `mmdebstrap` from the host's own apt sources (python3, python3-venv,
ca-certificates, passwd), cached as a tarball under the tool's state folder and imported into
buildah's storage once; the Dockerfiles take it through their BASE_IMAGE build argument.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from pathlib import Path

from qscore_tools.release.buildah import Buildah, ReleaseError

DEBIAN_SUITE = "bookworm"
DEBIAN_PACKAGES = ("python3", "python3-venv", "ca-certificates", "passwd")
DEBIAN_BASE = "localhost/qscore-base:debian12"
HOST_SOURCES = (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list"))
_ARG = re.compile(r"^ARG BASE_IMAGE=(?P<image>\S+)\s*$", re.MULTILINE)


def official_base(dockerfile: Path) -> str:
    """The Dockerfile's own default for BASE_IMAGE (one place names each official base)."""
    match = _ARG.search(dockerfile.read_text())
    if match is None:
        raise ReleaseError(f"{dockerfile} has no `ARG BASE_IMAGE=<image>` line")
    return match["image"]


def _mmdebstrap_args(tarball: Path) -> list[str]:
    mmdebstrap = shutil.which("mmdebstrap")
    if mmdebstrap is None:
        raise ReleaseError("mmdebstrap is not on PATH: bash scripts/release-deps.sh installs it")
    mirrors = [str(p) for p in HOST_SOURCES if p.is_file() and p.stat().st_size > 0]
    return [
        mmdebstrap,
        "--variant=minbase",
        f"--include={','.join(DEBIAN_PACKAGES)}",
        # Snapshot mirrors serve Release files past their Valid-Until date.
        '--aptopt=Acquire::Check-Valid-Until "false"',
        "--dpkgopt=path-exclude=/usr/share/man/*",
        "--dpkgopt=path-exclude=/usr/share/doc/*",
        "--dpkgopt=path-include=/usr/share/doc/*/copyright",
        "--dpkgopt=path-exclude=/usr/share/locale/*",
        DEBIAN_SUITE,
        str(tarball),
        *mirrors,
    ]


def _cache_key() -> str:
    sources = "".join(p.read_text() for p in HOST_SOURCES if p.is_file())
    text = f"{DEBIAN_SUITE}|{','.join(DEBIAN_PACKAGES)}|{sources}"
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def debian_base(buildah: Buildah, log: Path) -> str:
    """DEBIAN_BASE in storage: imported from the cached tarball, made first if need be."""
    if buildah.exists(DEBIAN_BASE):
        return DEBIAN_BASE
    tarball = buildah.state / "base" / f"debian12-{_cache_key()}.tar"
    if not tarball.is_file():
        tarball.parent.mkdir(parents=True, exist_ok=True)
        partial = tarball.with_suffix(".partial.tar")  # mmdebstrap picks the format by suffix
        with log.open("a") as handle:
            proc = subprocess.run(
                _mmdebstrap_args(partial), stdout=handle, stderr=subprocess.STDOUT, check=False
            )
        if proc.returncode != 0:
            raise ReleaseError(f"mmdebstrap failed ({proc.returncode}); see {log}")
        partial.rename(tarball)
    container = buildah.run("from", "scratch", log=log).strip()
    try:
        buildah.run("add", container, str(tarball), "/", log=log)
        buildah.run("config", "--cmd", "/bin/bash", "--label", f"dev.qscore.base={DEBIAN_SUITE}", container)
        buildah.run("commit", "--quiet", container, DEBIAN_BASE, log=log)
    finally:
        subprocess.run(buildah.command("rm", container), capture_output=True, check=False)
    return DEBIAN_BASE


def resolve_base(buildah: Buildah, dockerfile: Path, log: Path, *, allow_pull: bool = True) -> str:
    """The official base when it can be pulled, else the local Debian 12 base."""
    official = official_base(dockerfile)
    if allow_pull and buildah.pull(official):
        return official
    return debian_base(buildah, log)
