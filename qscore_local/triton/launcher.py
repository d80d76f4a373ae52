"""Start and stop a real tritonserver on loopback, serving a CPU copy of `triton_repo/`.

`LocalTriton` is an async context manager and also usable from sync code via
`start()`/`stop()`. The server runs in its own process group so `stop()` and `kill()`
reach the Python-backend stubs too and leave no process behind.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from qscore_local.triton.install import TritonInstall
from qscore_local.triton.repository import DEFAULT_REPO, CpuSettings, derive_cpu_repository

PR_SET_PDEATHSIG = 1  # prctl option, from <linux/prctl.h>
START_ATTEMPTS = 3  # a port picked as free can be taken before tritonserver binds it


class TritonStartError(Exception):
    """tritonserver exited or did not become ready; carries the end of its log."""

    def __init__(self, reason: str, log_tail: str) -> None:
        super().__init__(f"{reason}\n{log_tail}")
        self.reason = reason
        self.log_tail = log_tail

    @property
    def last_error(self) -> str:
        """The last error line Triton logged (lines starting with E), else its last line."""
        lines = [line.strip() for line in self.log_tail.splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("E") and "failed to load" in line]
        errors = errors or [line for line in lines if line.startswith("E")]
        return (errors or lines or ["(empty log)"])[-1]


@dataclass(frozen=True)
class TritonEndpoints:
    """Where a running server listens (all on 127.0.0.1)."""

    grpc_url: str  # "127.0.0.1:PORT", the form tritonclient.grpc wants
    http_url: str  # "http://127.0.0.1:PORT"
    metrics_url: str  # "http://127.0.0.1:PORT/metrics"


def pick_free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _terminate_with_parent() -> None:
    """In the child before exec: SIGTERM it if the parent dies (even by SIGKILL), so no orphan serves on.

    Linux ties PR_SET_PDEATHSIG to the thread that forked, so it is only set when starting from
    the main thread; starts from worker threads rely on the atexit hook instead.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def http_ready(http_url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(f"{http_url}/v2/health/ready", timeout=timeout) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError):
        return False


class LocalTriton:
    """A tritonserver child process serving the derived CPU repository on loopback."""

    def __init__(
        self,
        *,
        repo: Path = DEFAULT_REPO,
        http_port: int = 0,
        grpc_port: int = 0,
        metrics_port: int = 0,
        log_path: Path | None = None,
        models: Sequence[str] | None = None,
        cpu: CpuSettings | None = None,
        log_verbose: int = 0,
    ) -> None:
        self.repo = Path(repo)
        self.requested_ports = (http_port, grpc_port, metrics_port)
        self.log_path = log_path
        self.models = list(models) if models is not None else None
        self.cpu = cpu or CpuSettings.from_env()
        self.log_verbose = log_verbose
        self.endpoints: TritonEndpoints | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None
        self._log_file_path: Path | None = None
        self._last_ports: tuple[int, int, int] | None = None  # a restart reuses them: same URLs
        self._shm_prefix = f"qscore_{uuid.uuid4().hex[:12]}_"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 120) -> TritonEndpoints:
        """Derive the CPU repository, start tritonserver, block until /v2/health/ready answers 200."""
        if self.running:
            raise RuntimeError("this LocalTriton is already running")
        self.stop()  # clean up after an earlier kill() before starting again
        install = TritonInstall.locate()
        self._workdir = Path(tempfile.mkdtemp(prefix="qscore-triton-"))
        try:
            derive_cpu_repository(self.repo, self._workdir / "models", models=self.models, settings=self.cpu)
            install.prepare_backends(self._workdir / "backends")
            return self._start_with_retries(install, timeout)
        except BaseException:
            self.stop()
            raise

    def _start_with_retries(self, install: TritonInstall, timeout: float) -> TritonEndpoints:
        fixed_ports = all(self.requested_ports) or self._last_ports is not None
        for attempt in range(1, START_ATTEMPTS + 1):
            ports = self._last_ports or (
                self.requested_ports[0] or pick_free_port(),
                self.requested_ports[1] or pick_free_port(),
                self.requested_ports[2] or pick_free_port(),
            )
            try:
                endpoints = self._start_once(install, ports, timeout)
                self._last_ports = ports
                return endpoints
            except TritonStartError as exc:
                self._terminate_group(timeout=5)
                port_clash = "already in use" in exc.log_tail
                if fixed_ports or not port_clash or attempt == START_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    def _command(self, install: TritonInstall, ports: tuple[int, int, int]) -> list[str]:
        assert self._workdir is not None
        http_port, grpc_port, metrics_port = ports
        return [
            str(install.binary),
            f"--model-repository={self._workdir / 'models'}",
            f"--backend-directory={self._workdir / 'backends'}",
            "--http-address=127.0.0.1",
            f"--http-port={http_port}",
            "--grpc-address=127.0.0.1",
            f"--grpc-port={grpc_port}",
            "--allow-metrics=true",
            "--allow-gpu-metrics=false",
            "--metrics-address=127.0.0.1",
            f"--metrics-port={metrics_port}",
            "--exit-on-error=true",
            "--strict-readiness=true",
            "--disable-auto-complete-config",
            f"--log-verbose={self.log_verbose}",
            # A known prefix lets stop() remove the shared-memory regions a killed server leaves.
            f"--backend-config=python,shm-region-prefix-name={self._shm_prefix}",
        ]

    def _start_once(
        self, install: TritonInstall, ports: tuple[int, int, int], timeout: float
    ) -> TritonEndpoints:
        assert self._workdir is not None
        self._log_file_path = self.log_path or self._workdir / "tritonserver.log"
        self._log_file_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self._log_file_path, "ab") as log:
            self._process = subprocess.Popen(
                self._command(install, ports),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=install.environment(),
                cwd=self._workdir,
                start_new_session=True,  # own process group: stop() reaches the stubs too
                preexec_fn=_terminate_with_parent if _on_main_thread() else None,
            )
        atexit.register(self.stop)
        endpoints = TritonEndpoints(
            grpc_url=f"127.0.0.1:{ports[1]}",
            http_url=f"http://127.0.0.1:{ports[0]}",
            metrics_url=f"http://127.0.0.1:{ports[2]}/metrics",
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise TritonStartError(
                    f"tritonserver exited with {self._process.returncode}", self.log_tail()
                )
            if http_ready(endpoints.http_url):
                self.endpoints = endpoints
                return endpoints
            time.sleep(0.1)
        raise TritonStartError(f"tritonserver not ready after {timeout:.0f}s", self.log_tail())

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the server log, without Triton's start-up tables (for error messages)."""
        if self._log_file_path is None or not self._log_file_path.exists():
            return "(no log)"
        text = self._log_file_path.read_text(errors="replace").splitlines()
        kept = [line for line in text if line.strip() and not line.startswith(("|", "+"))]
        return "\n".join(kept[-lines:])

    def _signal_group(self, sig: signal.Signals) -> None:
        if self._process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, sig)

    def _terminate_group(self, timeout: float) -> None:
        """SIGTERM the server, wait, then SIGKILL whatever is left of its group (stubs included)."""
        if self._process is None:
            return
        # Only the server gets SIGTERM: it finalizes its stubs and frees their shared memory.
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(timeout=timeout)
        # Stubs exit once their parent is gone, but a group SIGKILL makes sure nothing lingers.
        self._signal_group(signal.SIGKILL)
        self._process.wait()
        self._wait_group_gone(self._process.pid, timeout=5.0)
        self._process = None

    @staticmethod
    def _wait_group_gone(pgid: int, timeout: float) -> None:
        """Wait until no process of the group is left (stubs are reaped by init, not by us)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except (ProcessLookupError, PermissionError):
                return
            time.sleep(0.02)

    def stop(self, timeout: float = 20) -> None:
        """Shut the server down (SIGTERM, then SIGKILL after `timeout`) and delete the derived repository."""
        self._terminate_group(timeout)
        atexit.unregister(self.stop)
        self.endpoints = None
        for region in Path("/dev/shm").glob(f"{self._shm_prefix}*"):
            region.unlink(missing_ok=True)
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def kill(self) -> None:
        """SIGKILL the whole server at once, as a crash would (tests of "Triton stopped mid-run")."""
        self._signal_group(signal.SIGKILL)
        if self._process is not None:
            self._process.wait()

    async def __aenter__(self) -> TritonEndpoints:
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)
