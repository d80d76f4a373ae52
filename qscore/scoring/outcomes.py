"""Outcomes other than a scored reply, for the interaction log: an error reply, or a dead-letter
(failure) record. Both runtimes call these, so a request's outcome is logged the same way
wherever it ran; scored requests go through `log_interactions` (qscore.scoring.shadow).

What is known differs by where the request stopped: a request refused before validation has no
route or version yet, only its body. The record is then built from the body on the log's own
thread (`qscore.monitoring.records.record_from_outcome`), never on the event loop.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from qscore.contracts import ReplyStatus, ScoreReply
from qscore.scoring.core import InteractionRoute

if TYPE_CHECKING:
    from qscore.scoring.shadow import InteractionSink

log = logging.getLogger(__name__)

OutcomeKind = Literal["error", "dead_lettered"]


@dataclass(frozen=True, slots=True)
class RequestOutcome:
    """A request that ended without a scored reply: `kind` error reply or dead-lettered, `code`
    the stable error code. `model`, `version` and `route` when known; else `body` (the request
    as received) is read for them when the record is built."""

    request_id: str
    kind: OutcomeKind
    code: str
    model: str | None = None
    version: str | None = None
    route: InteractionRoute | None = None
    body: bytes | None = None
    scored_by: str | None = None
    at: float = field(default_factory=time.time)


def outcome_of_reply(
    reply: ScoreReply,
    *,
    route: InteractionRoute | None = None,
    version: str | None = None,
    body: bytes | None = None,
) -> RequestOutcome | None:
    """The outcome an error reply records; None for an ok reply (logged with its scores)."""
    if reply.status != ReplyStatus.ERROR:
        return None
    code = reply.error.code.value if reply.error is not None else "error"
    return RequestOutcome(
        request_id=reply.request_id,
        kind="error",
        code=code,
        model=reply.model or None,
        version=version or reply.model_version,
        route=route,
        body=body,
        scored_by=reply.scored_by,
    )


def outcome_of_dead_letter(
    request_id: str,
    code: str,
    *,
    model: str | None = None,
    version: str | None = None,
    route: InteractionRoute | None = None,
    body: bytes | None = None,
    scored_by: str | None = None,
) -> RequestOutcome:
    """The outcome a dead-letter (failure) record of a request records."""
    return RequestOutcome(
        request_id=request_id,
        kind="dead_lettered",
        code=code,
        model=model or None,
        version=version,
        route=route,
        body=body,
        scored_by=scored_by,
    )


async def log_outcomes(sink: InteractionSink | None, outcomes: Sequence[RequestOutcome | None]) -> None:
    """Log each outcome; like `log_interactions`, a failing sink never costs a reply."""
    if sink is None:
        return
    for outcome in outcomes:
        if outcome is None:
            continue
        try:
            await sink.log_outcome(outcome)
        except Exception:
            log.exception("interaction log failed")
            return
