"""Start the endpoint as a subprocess on 127.0.0.1 (tests, demo, benchmarks)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

from qscore_local.bus.config import QueueConfig, dump_queue_config, load_queue_config
from qscore_local.bus.serve import connection_string
from qscore_local.processes import stop_process

HOST = "127.0.0.1"


class BusStartError(RuntimeError):
    """The endpoint subprocess exited or did not accept connections in time."""


@dataclass(frozen=True)
class BusEndpoint:
    """Where a running endpoint listens."""

    host: str
    port: int
    connection_string: str


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.2):
            return True
    except OSError:
        return False


class LocalBus:
    """`python -m qscore_local.bus` in a subprocess; durable when given a data_dir."""

    def __init__(
        self,
        *,
        port: int = 0,
        queues: Sequence[QueueConfig] | None = None,
        data_dir: Path | None = None,
        log_path: Path | None = None,
        latency_ms: float | None = None,
        jitter_ms: float | None = None,
    ) -> None:
        """`latency_ms`/`jitter_ms`: network latency each way per connection (None: the endpoint
        takes $QSCORE_BUS_LATENCY_MS / $QSCORE_BUS_JITTER_MS from the environment it inherits)."""
        self._requested_port = port
        self._latency_ms, self._jitter_ms = latency_ms, jitter_ms
        self._queues = list(queues) if queues is not None else load_queue_config()
        self._data_dir = data_dir
        self._log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None
        self._workdir = tempfile.TemporaryDirectory(prefix="qscore-bus-")
        self.endpoint: BusEndpoint | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self, timeout: float = 20) -> BusEndpoint:
        """Start the subprocess and block until it accepts connections."""
        if self._process is not None and self._process.poll() is None:
            raise BusStartError("this LocalBus is already running")
        port = self._requested_port or _free_port()
        config_path = Path(self._workdir.name) / "queues.yaml"
        dump_queue_config(self._queues, config_path)
        command = [sys.executable, "-m", "qscore_local.bus", "--host", HOST, "--port", str(port)]
        command += ["--config", str(config_path)]
        if self._data_dir is not None:
            command += ["--data-dir", str(self._data_dir)]
        if self._latency_ms is not None:
            command += ["--latency-ms", str(self._latency_ms)]
        if self._jitter_ms is not None:
            command += ["--jitter-ms", str(self._jitter_ms)]
        log_path = self._log_path or Path(self._workdir.name) / "bus.log"
        self._log_file = open(log_path, "ab")  # noqa: SIM115 - lives as long as the subprocess
        self._process = subprocess.Popen(
            command,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        deadline = time.monotonic() + timeout
        while not _accepts(port):
            if self._process.poll() is not None:
                self._close_log()
                raise BusStartError(f"bus exited with {self._process.returncode}; see {log_path}")
            if time.monotonic() > deadline:
                self.kill()
                raise BusStartError(f"bus did not accept connections on {HOST}:{port} within {timeout}s")
            time.sleep(0.05)
        self._requested_port = port  # a restart keeps the address clients already have
        self.endpoint = BusEndpoint(HOST, port, connection_string(HOST, port))
        return self.endpoint

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM (the endpoint commits and exits), then SIGKILL if it lingers."""
        if self._process is not None:
            stop_process(self._process, grace_s=timeout)
        self._close_log()

    def kill(self) -> None:
        """SIGKILL, no goodbye: what durability tests use."""
        process = self._process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()
        self._close_log()

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def close(self) -> None:
        self.stop()
        self._workdir.cleanup()

    async def __aenter__(self) -> BusEndpoint:
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.close)

    def __enter__(self) -> BusEndpoint:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
