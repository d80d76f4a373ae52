"""Shadow flights: a share of requests is also scored by the flighted version.

Shadow results are never replied; they go to the interaction log (route "shadow") so the
monitoring reports can compare versions. Shadow work is best effort: when too many shadow
batches are already running, new ones are skipped rather than slowing replies down.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Sequence

from qscore.scoring import InferenceBackend, score_group
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
        by_version: dict[str, list[HeldRequest]] = defaultdict(list)
        for request in held:
            if request.prepared.shadow_version:
                by_version[request.prepared.shadow_version].append(request)
        for version, requests in by_version.items():
            if len(self._tasks) >= self._max_in_flight:
                self.skipped += len(requests)
                continue
            task = asyncio.get_running_loop().create_task(self._score(version, requests))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _score(self, version: str, requests: list[HeldRequest]) -> None:
        spec = requests[0].prepared.spec
        try:
            scored = await score_group(self._backend, spec, version, [r.prepared.item for r in requests])
        except Exception as exc:
            log.info("shadow scoring of %s v%s failed: %r", spec.name, version, exc)
            return
        self.scored += len(scored)
        await self._hooks.log_interactions(scored, None, route="shadow")

    async def wait(self, within_s: float) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=within_s)
