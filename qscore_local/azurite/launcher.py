"""Start `azurite-blob` on a free loopback port with a temporary data folder; stop it again.

Azurite is installed from npm by scripts/bootstrap.sh into `.qscore/npm/` (ignored by git).
It serves the well-known development account (`devstoreaccount1`), whose key is public and
documented by Microsoft; `connection_string()` gives the string the Azure SDKs take.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from qscore_local.processes import stop_process

HOST = "127.0.0.1"
ACCOUNT = "devstoreaccount1"
# Azurite's fixed development key (not a secret: the same for every Azurite install).
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
NPM_PREFIX = Path(__file__).resolve().parents[2] / ".qscore" / "npm"
BINARY_ENV = "QSCORE_AZURITE_BLOB"


class AzuriteNotInstalled(RuntimeError):
    """No azurite-blob executable; the message says how to install it."""


class AzuriteStartError(RuntimeError):
    """azurite-blob exited or did not accept connections; carries the end of its log."""


@dataclass(frozen=True)
class AzuriteEndpoint:
    host: str
    port: int

    @property
    def blob_url(self) -> str:
        """The account's Blob endpoint; blob URLs are `<blob_url>/<container>/<name>`."""
        return f"http://{self.host}:{self.port}/{ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return connection_string(self.host, self.port)


def connection_string(host: str, port: int) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
        f"BlobEndpoint=http://{host}:{port}/{ACCOUNT};"
    )


def find_azurite_blob() -> Path:
    """$QSCORE_AZURITE_BLOB, the project's npm folder, or azurite-blob on PATH."""
    candidates = [os.environ.get(BINARY_ENV), str(NPM_PREFIX / "node_modules" / ".bin" / "azurite-blob")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    on_path = shutil.which("azurite-blob")
    if on_path:
        return Path(on_path)
    raise AzuriteNotInstalled(
        f"azurite-blob not found: run scripts/bootstrap.sh (npm install --prefix {NPM_PREFIX} azurite)"
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _accepts(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((HOST, port)) == 0


class LocalAzurite:
    """One azurite-blob process in its own process group; data in a temp folder (or `location`)."""

    def __init__(self, *, port: int | None = None, location: Path | None = None) -> None:
        self._port = port
        self._own_location = location is None
        self.location = location or Path(tempfile.mkdtemp(prefix="qscore-azurite-"))
        self._process: subprocess.Popen[bytes] | None = None
        self.endpoint: AzuriteEndpoint | None = None

    @property
    def log_path(self) -> Path:
        return self.location / "azurite.log"

    def start(self, timeout: float = 30) -> AzuriteEndpoint:
        binary = find_azurite_blob()
        port = self._port or _free_port()
        command = [str(binary), "--blobHost", HOST, "--blobPort", str(port)]
        command += ["--location", str(self.location), "--skipApiVersionCheck", "--loose", "--silent"]
        self.location.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while not _accepts(port):
            if self._process.poll() is not None:
                raise AzuriteStartError(
                    f"azurite-blob exited with {self._process.returncode}: {self._tail()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise AzuriteStartError(f"azurite-blob not listening on {HOST}:{port} after {timeout}s")
            time.sleep(0.05)
        self._port = port
        self.endpoint = AzuriteEndpoint(HOST, port)
        return self.endpoint

    def _tail(self) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").splitlines()[-5:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM to the group (node and its children), SIGKILL if it lingers; removes temp data."""
        process, self._process = self._process, None
        if process is not None:
            stop_process(process, grace_s=timeout, group=True)
        if self._own_location:
            shutil.rmtree(self.location, ignore_errors=True)

    def __enter__(self) -> AzuriteEndpoint:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
