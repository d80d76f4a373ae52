"""Optional hooks: startup/shutdown callbacks and where scored interactions go (incl. shadow).

A hook that fails is logged and never stops scoring; shadow results are never replied.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from qscore.contracts import ScoreReply
from qscore.scoring import InteractionRoute, InteractionSink, ScoredItem, log_interactions

log = logging.getLogger(__name__)

Hook = Callable[[], Awaitable[None]]

__all__ = ["Hook", "InteractionRoute", "InteractionSink", "WorkerHooks"]


@dataclass
class WorkerHooks:
    """`on_startup` runs before the first receive, `on_shutdown` after the last settlement."""

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
        if self.interactions is not None:
            await self.interactions.close()

    async def log_interactions(
        self,
        scored: list[ScoredItem],
        replies: list[ScoreReply] | None,
        *,
        route: InteractionRoute | Sequence[InteractionRoute],
    ) -> None:
        await log_interactions(self.interactions, scored, replies, route=route)
