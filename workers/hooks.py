"""Start-up/shut-down callbacks and where scored interactions go: the simple way to hook in.

`WorkerCallbacks` is a middleware (qscore/middleware/base.py) whose `startup`/`shutdown` hooks
run plain callbacks; for hooks around the steps themselves (receive, validate, score, reply,
settle), write a `Middleware`. Its `interactions` sink is where the interaction log middleware
and shadow scoring write. `WorkerHooks` is its old name, kept for deployments that pass it to
`run_worker(hooks=...)`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from qscore.middleware import Middleware
from qscore.scoring import InteractionRoute, InteractionSink

log = logging.getLogger(__name__)

Hook = Callable[[], Awaitable[None]]

__all__ = ["Hook", "InteractionRoute", "InteractionSink", "WorkerCallbacks", "WorkerHooks"]


@dataclass(eq=False)
class WorkerCallbacks(Middleware):
    """`on_startup` runs before the first receive (a failure stops the start), `on_shutdown`
    after the last settlement, once the clients are closed (a failure is logged)."""

    on_startup: list[Hook] = field(default_factory=list)
    on_shutdown: list[Hook] = field(default_factory=list)
    interactions: InteractionSink | None = None

    async def startup(self) -> None:
        for hook in self.on_startup:
            await hook()

    async def shutdown(self) -> None:
        for hook in self.on_shutdown:
            try:
                await hook()
            except Exception:
                log.exception("shutdown hook failed")


WorkerHooks = WorkerCallbacks  # the old name (it is a middleware, not a hook)
