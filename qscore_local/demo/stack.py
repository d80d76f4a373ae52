"""The local stack the demo runs on: bus endpoint, Triton, and a pool of workers.

Started in that order and stopped in reverse (workers drain first), also when the demo is
cancelled by Ctrl-C, so nothing it started is left running.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from qscore_local.workers import WorkerPool

CLAIMS_CONTAINER = "qscore-claims"
INTERACTIONS_CONTAINER = "qscore-interactions"


class StackStartError(RuntimeError):
    """The bus, Triton or a worker did not start; the first line says which and why."""

    def __init__(self, message: str, *, run_dir: Path) -> None:
        super().__init__(message)
        self.run_dir = run_dir


@dataclass
class DemoStack:
    run_dir: Path
    workers: int
    models: list[str]
    worker_env: dict[str, str] = field(default_factory=dict)
    start_timeout_s: float = 180.0
    connection_string: str = ""
    triton_grpc_url: str = ""
    pool: WorkerPool | None = None
    # Azurite (claim-check bodies, the Blob interaction log); its data stays in run_dir/azurite.
    azurite: bool = False
    blob_log: bool = False
    blob_connection: str = ""
    blob_url: str = ""
    _exit_stack: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)

    async def __aenter__(self) -> DemoStack:
        try:
            await self._start()
        except Exception as exc:
            await self._stop()
            raise StackStartError(f"{type(exc).__name__}: {exc}", run_dir=self.run_dir) from exc
        except BaseException:
            await self._stop()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stop()

    async def _start(self) -> None:
        from qscore_local.bus.launcher import LocalBus
        from qscore_local.triton.launcher import LocalTriton

        self.run_dir.mkdir(parents=True, exist_ok=True)
        bus = LocalBus(data_dir=self.run_dir / "bus", log_path=self.run_dir / "bus.log")
        triton = LocalTriton(log_path=self.run_dir / "triton.log", models=self.models)
        # Bus and Triton start side by side (Triton takes most of the start-up time); both
        # finish entering the exit stack before a failure of either is raised, so both stop.
        results: tuple[Any, ...] = await asyncio.gather(
            self._exit_stack.enter_async_context(_started(bus, 20.0)),
            self._exit_stack.enter_async_context(_started(triton, self.start_timeout_s)),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
        bus_endpoint, triton_endpoints = results
        self.connection_string = bus_endpoint.connection_string
        self.triton_grpc_url = triton_endpoints.grpc_url
        env = {
            "QSCORE_SERVICEBUS_CONNECTION": self.connection_string,
            "QSCORE_TRITON_URL": self.triton_grpc_url,
            "QSCORE_HEALTH_HOST": "127.0.0.1",
            "QSCORE_REGISTRY_PATH": str(self.run_dir / "registry.json"),
            **self.worker_env,
        }
        if self.azurite:
            env.update(await self._start_azurite())
        self.pool = WorkerPool(count=self.workers, env=env, log_dir=self.run_dir)
        self._exit_stack.push_async_callback(self.pool.stop)
        await self.pool.start(timeout_s=self.start_timeout_s)

    async def _start_azurite(self) -> dict[str, str]:
        """Azurite on loopback, and the workers' variables for it."""
        from qscore_local.azurite import LocalAzurite

        azurite = LocalAzurite(location=self.run_dir / "azurite")
        endpoint = await self._exit_stack.enter_async_context(_started(azurite, 30.0))
        self.blob_connection, self.blob_url = endpoint.connection_string, endpoint.blob_url
        env = {
            "QSCORE_BLOB_CONNECTION": self.blob_connection,
            "QSCORE_CLAIM_CHECK_CONTAINER": CLAIMS_CONTAINER,
        }
        if self.blob_log:
            env["QSCORE_INTERACTION_LOG_URL"] = self.interaction_log_url
        return env

    @property
    def interaction_log_url(self) -> str:
        return f"{self.blob_url}/{INTERACTIONS_CONTAINER}"

    async def _stop(self) -> None:
        # Shielded: a second Ctrl-C must not leave Triton or the bus running.
        await asyncio.shield(self._exit_stack.aclose())


@contextlib.asynccontextmanager
async def _started(launcher: Any, timeout_s: float) -> Any:
    """Start a LocalBus/LocalTriton in a thread (their start blocks) and always stop it."""
    starting = asyncio.ensure_future(asyncio.to_thread(launcher.start, timeout_s))
    try:
        yield await asyncio.shield(starting)
    finally:
        # A start cut short by Ctrl-C still runs in its thread: let it finish so stop() sees
        # the process it started.
        with contextlib.suppress(BaseException):
            await starting
        await asyncio.to_thread(launcher.stop)
