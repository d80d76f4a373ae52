"""The one way this machine starts `qscore worker` processes: the demo, the bench and the tests.

Each worker gets its settings the way production does (`QSCORE_*` variables), its own health
port and log file, and its own process session, so a Ctrl-C at the terminal reaches only the
parent, which stops the workers in order (SIGTERM: drain first, then SIGKILL past the grace).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from qscore_local.triton.launcher import pick_free_port

# `python -c` rather than the `qscore` script: works from any venv layout, same interpreter.
WORKER_COMMAND = (sys.executable, "-c", "from qscore_cli import main; main()", "worker")


class WorkerStartError(RuntimeError):
    """A worker exited or did not become ready; the message ends with its log tail."""


@dataclass
class WorkerProcess:
    index: int
    process: asyncio.subprocess.Process
    health_port: int
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process.returncode is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def kill(self) -> None:
        """SIGKILL the worker's whole process session (chaos tests, last resort on stop)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)


class WorkerPool:
    """N worker processes sharing one environment; `await pool.start()`, `await pool.stop()`."""

    def __init__(
        self,
        *,
        count: int,
        env: Mapping[str, str],
        log_dir: Path,
        drain_grace_s: float = 30.0,
        cwd: Path | None = None,
    ) -> None:
        self.count = count
        self.env = dict(env)
        self.log_dir = log_dir
        self.drain_grace_s = drain_grace_s
        self.cwd = cwd
        self.workers: list[WorkerProcess] = []

    async def start(self, *, timeout_s: float = 60.0) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for _ in range(self.count):
            await self.add(wait=False)
        await asyncio.gather(*(self.wait_ready(worker, timeout_s) for worker in self.workers))

    async def add(self, *, wait: bool = True, timeout_s: float = 60.0) -> WorkerProcess:
        """One more worker (a replacement after a kill, a scale-out step)."""
        worker = await self._spawn(len(self.workers))
        self.workers.append(worker)
        if wait:
            await self.wait_ready(worker, timeout_s)
        return worker

    async def _spawn(self, index: int) -> WorkerProcess:
        port = pick_free_port()
        env = {**os.environ, **self.env, "QSCORE_HEALTH_PORT": str(port)}
        env.setdefault("QSCORE_HEALTH_HOST", "127.0.0.1")
        env.setdefault("QSCORE_DRAIN_GRACE_S", str(self.drain_grace_s))
        log_path = self.log_dir / f"worker-{index}.log"
        with log_path.open("ab") as log_file:
            process = await asyncio.create_subprocess_exec(
                *WORKER_COMMAND,
                cwd=self.cwd,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        return WorkerProcess(index, process, port, log_path)

    async def wait_ready(self, worker: WorkerProcess, timeout_s: float = 60.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        url = f"http://127.0.0.1:{worker.health_port}/readyz"
        while loop.time() < deadline:
            if not worker.running:
                raise WorkerStartError(
                    f"worker {worker.index} exited with {worker.process.returncode}:\n{worker.log_tail()}"
                )
            if await asyncio.to_thread(_http_ok, url):
                return
            await asyncio.sleep(0.2)
        raise WorkerStartError(
            f"worker {worker.index} not ready after {timeout_s:.0f} s:\n{worker.log_tail()}"
        )

    def pids(self) -> list[int]:
        return [worker.pid for worker in self.workers if worker.running]

    def alive(self) -> int:
        return sum(1 for worker in self.workers if worker.running)

    async def stop(self) -> None:
        """SIGTERM all (they finish and settle what is in flight), SIGKILL what outlives the grace."""
        running = [w for w in self.workers if w.running]
        for worker in running:
            with contextlib.suppress(ProcessLookupError):
                worker.process.send_signal(signal.SIGTERM)
        await asyncio.gather(*(self._reap(worker) for worker in running))
        self.workers = []

    async def _reap(self, worker: WorkerProcess) -> None:
        try:
            await asyncio.wait_for(worker.process.wait(), self.drain_grace_s + 5)
        except TimeoutError:
            worker.kill()
            await worker.process.wait()


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError):
        return False
