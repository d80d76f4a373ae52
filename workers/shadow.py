"""Shadow flights: a share of requests is also scored by the flighted version.

Shadow results are never replied; they go to the interaction log (route "shadow") so the
monitoring reports can compare versions. What shadow scoring does is the shared core's
(`qscore.scoring.shadow`, also used by the Functions app); this module only schedules it.
Shadow work is best effort: when too many shadow batches are already running, new ones are
skipped rather than slowing replies down.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from qscore.scoring import InferenceBackend, ShadowGroup, score_shadow, shadow_groups
from workers.held import HeldRequest
from workers.hooks import WorkerHooks

log = logging.getLogger(__name__)


class ShadowScorer:
    def __init__(self, backend: InferenceBackend, hooks: WorkerHooks, *, max_in_flight: int = 2) -> None:
        self._backend = backend
        self._hooks = hooks
        self._max_in_flight = max_in_flight
        self._tasks: set[asyncio.Task[None]] = set()
        self.skipped = 0
        self.scored = 0

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
            scored = await score_shadow(self._backend, group, self._hooks.interactions)
        except Exception as exc:
            log.info("shadow scoring of %s v%s failed: %r", group.spec.name, group.version, exc)
            return
        self.scored += len(scored)

    async def wait(self, within_s: float) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=within_s)
