"""Shadow flights and the interaction log, shared by the worker and the Functions app.

A request routed with a shadow version (`PreparedRequest.shadow_version`, set by the registry's
shadow flight) is scored a second time by that version. The shadow result is never replied: it
goes to the interaction log with route "shadow", next to the production result, so the
monitoring reports can compare the versions on the same traffic.

How the shadow work is scheduled is each runtime's business (the worker fires it off after the
replies, the Functions orchestrator runs one activity per group); what it does is here.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from qscore.contracts import ModelSpec, ScoreReply
from qscore.scoring.core import InferenceBackend, InteractionRoute, ScoredItem, ScoringItem, score_group
from qscore.scoring.prepare import PreparedRequest

if TYPE_CHECKING:
    from qscore.scoring.outcomes import RequestOutcome

log = logging.getLogger(__name__)

SHADOW_ROUTE: InteractionRoute = "shadow"


class InteractionSink(Protocol):
    """Where scored interactions are logged (qscore.monitoring.InteractionLog fits)."""

    async def log_scored(
        self,
        scored: ScoredItem,
        *,
        reply: ScoreReply | None = None,
        route: InteractionRoute = "production",
        scored_by: str | None = None,
    ) -> bool: ...

    async def log_outcome(self, outcome: RequestOutcome) -> bool:
        """An error reply or a dead-letter record (qscore.scoring.outcomes)."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class ShadowGroup:
    """Requests of one model to be scored again by one shadow version: one Triton call."""

    spec: ModelSpec
    version: str
    items: list[ScoringItem] = field(default_factory=list)

    @property
    def request_ids(self) -> list[str]:
        return [item.request_id for item in self.items]


def shadow_groups(prepared: Iterable[PreparedRequest]) -> list[ShadowGroup]:
    """The requests that have a shadow version, grouped by (model, shadow version), in the order
    first seen (others are left out: most traffic has no shadow flight)."""
    groups: dict[tuple[str, str], ShadowGroup] = {}
    for request in prepared:
        if not request.shadow_version:
            continue
        key = (request.spec.name, request.shadow_version)
        if key not in groups:
            groups[key] = ShadowGroup(spec=request.spec, version=request.shadow_version)
        groups[key].items.append(request.item)
    return list(groups.values())


async def log_interactions(
    sink: InteractionSink | None,
    scored: Sequence[ScoredItem],
    replies: Sequence[ScoreReply] | None,
    *,
    route: InteractionRoute | Sequence[InteractionRoute],
    scored_by: str | None = None,
) -> None:
    """Log each scored item (with its reply, when one was sent) under `route` (one for all, or
    one per item). A failing sink is logged and never stops scoring: monitoring must not cost a
    reply."""
    if sink is None:
        return
    # The interaction log takes a reply batch in one queue operation (InteractionLog.log_scored_many).
    log_many = getattr(sink, "log_scored_many", None)
    if log_many is not None:
        routes = [route] * len(scored) if isinstance(route, str) else list(route)
        try:
            await log_many(scored, replies, routes, scored_by=scored_by)
        except Exception:
            log.exception("interaction log failed")
        return
    for index, item in enumerate(scored):
        reply = replies[index] if replies is not None else None
        item_route = route if isinstance(route, str) else route[index]
        try:
            await sink.log_scored(item, reply=reply, route=item_route, scored_by=scored_by)
        except Exception:
            log.exception("interaction log failed")
            return


async def score_shadow(
    backend: InferenceBackend,
    group: ShadowGroup,
    sink: InteractionSink | None,
    *,
    scored_by: str | None = None,
) -> list[ScoredItem]:
    """Score a shadow group with its shadow version and log the results (route "shadow").

    Inference errors propagate: the caller decides what a failed shadow means (the worker logs
    and drops it, the Functions orchestrator records it); either way no reply depends on it.
    """
    scored = await score_group(backend, group.spec, group.version, group.items)
    await log_interactions(sink, scored, None, route=SHADOW_ROUTE, scored_by=scored_by)
    return scored
