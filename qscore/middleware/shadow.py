"""Shadow flights as middleware, in both runtimes: a share of requests is also scored by the
flighted version, after the reply.

Shadow results are never replied; they go to the interaction log (route "shadow") so the
monitoring reports can compare versions. What to score again and how is decided here once
(`shadow_groups` picks the requests routed to a shadow version; `score_shadow` scores and logs
them); the runtimes only say when:

- the worker: `after_reply`, for the scored requests whose replies were sent, in the
  background. Shadow work is best effort: when too many shadow calls are already running, new
  ones are skipped rather than slowing replies down. Once the receive loop has drained, running
  shadow calls get a second to finish (`after_drain`).
- the Functions app: its `after_reply` (the delivery activity) holds the replies only, so the
  orchestrator runs a shadow activity of its own after the replies are sent, which hands this
  middleware the group's requests (`score_now`): awaited there, since an activity's background
  work would not outlive its invocation, and errors raise (the orchestrator records them).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from qscore.middleware.base import Middleware, Replied, ValidatedRequest
from qscore.scoring import (
    InferenceBackend,
    InteractionSink,
    ShadowGroup,
    score_shadow,
    shadow_groups,
    split_expired,
)

log = logging.getLogger(__name__)

DRAIN_WAIT_S = 1.0


class ShadowMiddleware(Middleware):
    """`scored_by`: what the interaction log names as the shadow's scorer (the Functions app's
    instance; None: the sink's own)."""

    def __init__(
        self,
        backend: InferenceBackend,
        sink: InteractionSink | None,
        *,
        scored_by: str | None = None,
        max_in_flight: int = 2,
    ) -> None:
        self._backend = backend
        self._sink = sink
        self._scored_by = scored_by
        self._max_in_flight = max_in_flight
        self._tasks: set[asyncio.Task[None]] = set()
        self.skipped = 0
        self.scored = 0

    async def after_reply(self, replied: Replied) -> None:
        self.submit([each.request for each in replied.sent if each.scored is not None and each.request])

    async def after_drain(self) -> None:
        await self.wait(DRAIN_WAIT_S)

    def submit(self, requests: Sequence[ValidatedRequest]) -> None:
        """Start shadow scoring for the requests routed to a shadow version (others are ignored)."""
        for group in shadow_groups(request.prepared for request in requests):
            if len(self._tasks) >= self._max_in_flight:
                self.skipped += len(group.items)
                continue
            task = asyncio.get_running_loop().create_task(self._score(group))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def score_now(self, requests: Sequence[ValidatedRequest]) -> int:
        """Score the requests routed to a shadow version now; returns how many were scored.
        Those whose deadline has passed are left out: they got an error reply, so there is
        nothing to compare. Inference errors raise."""
        live, _ = split_expired([request.prepared.item for request in requests])
        in_time = {item.request_id for item in live}
        total = 0
        for group in shadow_groups(r.prepared for r in requests if r.prepared.item.request_id in in_time):
            scored = await score_shadow(self._backend, group, self._sink, scored_by=self._scored_by)
            total += len(scored)
        self.scored += total
        return total

    async def _score(self, group: ShadowGroup) -> None:
        try:
            scored = await score_shadow(self._backend, group, self._sink, scored_by=self._scored_by)
        except Exception as exc:
            log.info("shadow scoring of %s v%s failed: %r", group.spec.name, group.version, exc)
            return
        self.scored += len(scored)

    async def wait(self, within_s: float) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=within_s)
