"""Debian's buildah, daemonless, with its storage in a folder the release tool owns.

Flags this sandbox needs (and a CI runner tolerates): chroot isolation (no user namespaces,
no cgroups), explicit ulimits (buildah's default nproc does not fit a container here) and the
host's network for RUN steps. Storage: overlay where the kernel lets us mount it (as root),
else vfs, which copies the whole root filesystem for every layer (measured here: a worker
build grows vfs storage by ~6 GB and spends minutes copying and deleting).
"""

from __future__ import annotations

import dataclasses
import functools
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

BUILD_FLAGS = (
    "--isolation",
    "chroot",
    "--ulimit",
    "nofile=20000:20000",
    "--ulimit",
    "nproc=1000:1000",
    "--network",
    "host",
    "--layers",
)


@functools.cache
def storage_driver() -> str:
    """`overlay` when an overlay mount works here, else `vfs`."""
    with tempfile.TemporaryDirectory(prefix="qscore-overlay-probe-") as tmp:
        dirs = {name: Path(tmp) / name for name in ("lower", "upper", "work", "merged")}
        for path in dirs.values():
            path.mkdir()
        options = f"lowerdir={dirs['lower']},upperdir={dirs['upper']},workdir={dirs['work']}"
        probe = subprocess.run(
            ["mount", "-t", "overlay", "overlay", "-o", options, str(dirs["merged"])],
            capture_output=True,
            check=False,
        )
        if probe.returncode != 0:
            return "vfs"
        subprocess.run(["umount", str(dirs["merged"])], capture_output=True, check=False)
        return "overlay"


class ReleaseError(RuntimeError):
    """A release step failed; the message says which and why (one line for a person)."""


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


@dataclass(frozen=True)
class Buildah:
    """`buildah --root <state>/storage/<driver> --runroot <state>/run --storage-driver <driver> ...`."""

    state: Path
    driver: str = dataclasses.field(default_factory=storage_driver)

    @property
    def executable(self) -> str:
        found = shutil.which("buildah")
        if found is None:
            raise ReleaseError("buildah is not on PATH: bash scripts/release-deps.sh installs it")
        return found

    def command(self, *args: str) -> list[str]:
        return [
            self.executable,
            "--root",
            str(self.state / "storage" / self.driver),
            "--runroot",
            str(self.state / "run" / self.driver),
            "--storage-driver",
            self.driver,
            *args,
        ]

    def run(self, *args: str, log: Path | None = None, timeout: float | None = None) -> str:
        """Run a buildah subcommand; its stdout, or ReleaseError with the output's tail."""
        proc = subprocess.run(
            self.command(*args), capture_output=True, text=True, timeout=timeout, check=False
        )
        if log is not None:
            log.parent.mkdir(parents=True, exist_ok=True)
            with log.open("a") as handle:
                handle.write(f"$ buildah {' '.join(args)}\n{proc.stdout}{proc.stderr}\n")
        if proc.returncode != 0:
            raise ReleaseError(
                f"buildah {args[0]} failed ({proc.returncode}): {_tail(proc.stderr or proc.stdout)}"
            )
        return proc.stdout

    def exists(self, image: str) -> bool:
        proc = subprocess.run(
            self.command("inspect", "--type", "image", image), capture_output=True, check=False
        )
        return proc.returncode == 0

    def pull(self, image: str, timeout: float = 180) -> bool:
        """True when `image` is in storage afterwards (already there, or pulled now)."""
        if self.exists(image):
            return True
        try:
            proc = subprocess.run(
                self.command("pull", "--quiet", image), capture_output=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired:
            return False
        return proc.returncode == 0

    def bud(
        self,
        dockerfile: Path,
        context: Path,
        *,
        tag: str,
        build_args: dict[str, str],
        labels: dict[str, str],
        secrets: dict[str, Path],
        log: Path,
    ) -> str:
        """Build `dockerfile` in `context`; returns the image id."""
        args: list[str] = ["bud", *BUILD_FLAGS, "-f", str(dockerfile), "-t", tag]
        ignore = dockerfile.with_name(dockerfile.name + ".dockerignore")
        if ignore.is_file():
            args += ["--ignorefile", str(ignore)]
        for key, value in build_args.items():
            args += ["--build-arg", f"{key}={value}"]
        for key, value in labels.items():
            args += ["--label", f"{key}={value}"]
        for key, path in secrets.items():
            args += ["--secret", f"id={key},src={path}"]
        iidfile = log.with_suffix(".iid")
        args += ["--iidfile", str(iidfile), str(context)]
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a") as handle:  # streamed: a build takes minutes, the log shows where
            handle.write(f"$ buildah {' '.join(args)}\n")
            handle.flush()
            proc = subprocess.run(self.command(*args), stdout=handle, stderr=subprocess.STDOUT, check=False)
        if proc.returncode != 0:
            raise ReleaseError(
                f"buildah bud {dockerfile.name} failed ({proc.returncode}): {_tail(log.read_text())}"
            )
        return iidfile.read_text().strip()

    def inspect_labels(self, image: str) -> dict[str, str]:
        import json

        info = json.loads(self.run("inspect", "--type", "image", image))
        return dict(info.get("OCIv1", {}).get("config", {}).get("Labels") or {})

    @contextmanager
    def container(self, image: str) -> Iterator[str]:
        """A working container from `image`, removed afterwards."""
        name = self.run("from", "--quiet", "--pull-never", image).strip()
        try:
            yield name
        finally:
            subprocess.run(self.command("rm", name), capture_output=True, check=False)

    @contextmanager
    def mounted(self, image: str) -> Iterator[Path]:
        """The root filesystem of a container from `image` (read it; changes are discarded)."""
        with self.container(image) as name:
            root = Path(self.run("mount", name).strip())
            try:
                yield root
            finally:
                subprocess.run(self.command("umount", name), capture_output=True, check=False)

    def run_command(self, container: str, argv: Sequence[str], env: dict[str, str]) -> list[str]:
        """The argv of `buildah run` for `argv` inside `container` on the host's network."""
        flags = ["run", "--isolation", "chroot", "--network", "host"]
        for key, value in env.items():
            flags += ["-e", f"{key}={value}"]
        return self.command(*flags, container, "--", *argv)
