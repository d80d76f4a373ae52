"""`/healthz` (liveness) and `/readyz` (readiness) over HTTP, for Kubernetes probes, and
`/metrics` for a Prometheus scrape (workers/metrics.py).

Live: the event loop answers and the receive loop has turned recently (a wedged loop gets the
pod restarted). Ready: connected to the broker, Triton answering, not draining; while not
ready the worker is not taking messages, so a Service or KEDA sees it as not serving.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from qscore.transport import sdk_hooks
from workers.metrics import metrics_handler

STALL_AFTER_S = 60.0


@dataclass
class WorkerState:
    """What the probes report; the worker updates it as it goes."""

    connected: bool = False
    triton_ok: bool = False
    draining: bool = False
    last_tick: float = field(default_factory=time.monotonic)
    detail: str = "starting"
    counters: dict[str, int] = field(default_factory=dict)

    def tick(self) -> None:
        self.last_tick = time.monotonic()

    @property
    def live(self) -> bool:
        return time.monotonic() - self.last_tick < STALL_AFTER_S

    @property
    def ready(self) -> bool:
        return self.connected and self.triton_ok and not self.draining

    def count(self, name: str, amount: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + amount

    def snapshot(self) -> dict[str, Any]:
        return {
            "live": self.live,
            "ready": self.ready,
            "connected": self.connected,
            "triton_ok": self.triton_ok,
            "draining": self.draining,
            "detail": self.detail,
            "counters": dict(self.counters),
            "sdk_hooks": sdk_hooks.readiness_report(),  # fast paths available, fallbacks taken
        }


class HealthServer:
    """A tiny aiohttp server; `port=0` picks a free port (read `.port` after `start`)."""

    def __init__(self, state: WorkerState, *, host: str = "127.0.0.1", port: int = 8080) -> None:
        self.state = state
        self.host = host
        self.port = port
        self._runner: Any = None

    async def start(self) -> None:
        from aiohttp import web

        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", metrics_handler)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = getattr(site, "_server", None)
        if server is not None and server.sockets:
            self.port = int(server.sockets[0].getsockname()[1])

    async def _healthz(self, request: Any) -> Any:
        return self._respond(self.state.live)

    async def _readyz(self, request: Any) -> Any:
        return self._respond(self.state.ready)

    def _respond(self, healthy: bool) -> Any:
        from aiohttp import web

        return web.Response(
            status=200 if healthy else 503,
            text=json.dumps(self.state.snapshot()),
            content_type="application/json",
        )

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
