"""Shadow flights: a share of requests is also scored by the flighted version, after the reply.

Shadow results are never replied; they go to the interaction log (route "shadow") so the
monitoring reports can compare versions. What shadow scoring does is the shared core's
(`qscore.scoring.shadow`, also used by the Functions app); this middleware only schedules it,
for the requests whose replies were sent. Shadow work is best effort: when too many shadow
batches are already running, new ones are skipped rather than slowing replies down. Once the
receive loop has drained, running shadow calls get a second to finish.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from qscore.middleware import Middleware, Replied
from qscore.scoring import InferenceBackend, InteractionSink, ShadowGroup, score_shadow, shadow_groups
from workers.held import HeldRequest

log = logging.getLogger(__name__)

DRAIN_WAIT_S = 1.0


class ShadowScorer(Middleware):
    def __init__(
        self, backend: InferenceBackend, sink: InteractionSink | None, *, max_in_flight: int = 2
    ) -> None:
        self._backend = backend
        self._sink = sink
        self._max_in_flight = max_in_flight
        self._tasks: set[asyncio.Task[None]] = set()
        self.skipped = 0
        self.scored = 0

    async def after_reply(self, replied: Replied) -> None:
        self.submit([each.request for each in replied.sent if each.scored is not None and each.request])

    async def after_drain(self) -> None:
        await self.wait(DRAIN_WAIT_S)

    def submit(self, held: Sequence[HeldRequest]) -> None:
        """Start shadow scoring for the requests routed to a shadow version (others are ignored)."""
        for group in shadow_groups(request.prepared for request in held):
            if len(self._tasks) >= self._max_in_flight:
                self.skipped += len(group.items)
                continue
            task = asyncio.get_running_loop().create_task(self._score(group))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _score(self, group: ShadowGroup) -> None:
        try:
            scored = await score_shadow(self._backend, group, self._sink)
        except Exception as exc:
            log.info("shadow scoring of %s v%s failed: %r", group.spec.name, group.version, exc)
            return
        self.scored += len(scored)

    async def wait(self, within_s: float) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=within_s)
