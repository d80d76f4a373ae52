"""The interaction log: every outcome of a request. A scored request with the reply that was sent
for it (route production/canary/pinned); an error reply with its code (after_reply); a
dead-letter record with its reason (after_settle). A failing sink is logged and never costs a
reply (qscore.scoring.log_interactions, log_outcomes). The sink is closed at shutdown when the
middleware owns it.

Both runtimes run it. The worker's reply steps carry the scored items, so it logs scored
requests from `after_reply`; the Functions app's delivery activity, which calls `after_reply`
there, holds the replies only, so its inference activity, which holds the scores, hands them
to this middleware (`log_scored`, the one way scored requests are logged). Error replies and
failure records are logged from the hooks in both."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from qscore.contracts import ScoreReply
from qscore.middleware import Middleware, Replied, Settled
from qscore.scoring import (
    InteractionRoute,
    InteractionSink,
    RequestOutcome,
    ScoredItem,
    log_interactions,
    log_outcomes,
    outcome_of_dead_letter,
    outcome_of_reply,
)
from qscore.transport import message_body
from qscore.transport.settle_outcomes import DEAD_LETTERED


class InteractionsMiddleware(Middleware):
    """`scored_by`: what a dead-letter record names as its scorer (the Functions app's instance);
    `owns_sink`: close the sink at shutdown (the worker's; the Functions runtime closes its own)."""

    def __init__(
        self, sink: InteractionSink, *, scored_by: str | None = None, owns_sink: bool = True
    ) -> None:
        self.sink = sink
        self.scored_by = scored_by
        self.owns_sink = owns_sink

    async def after_reply(self, replied: Replied) -> None:
        scored = [each for each in replied.sent if each.scored is not None and each.request is not None]
        if scored:
            await self.log_scored(
                [each.scored for each in scored if each.scored is not None],
                [each.reply for each in scored],
                [each.request.prepared.route for each in scored if each.request is not None],
            )
        errors = [_error_outcome(each) for each in replied.sent if each.scored is None]
        await log_outcomes(self.sink, errors)

    async def log_scored(
        self, scored: Sequence[ScoredItem], replies: Sequence[ScoreReply], routes: Sequence[InteractionRoute]
    ) -> None:
        """Log scored requests with the replies made for them, under each one's route."""
        await log_interactions(self.sink, scored, replies, route=list(routes), scored_by=self.scored_by)

    async def after_settle(self, settled: Settled) -> None:
        if settled.outcome != DEAD_LETTERED or settled.answered:  # a kept one: logged as its reply
            return
        code = settled.reason or "dead_lettered"
        outcomes = [_dead_letter_outcome(message, code, self.scored_by) for message in settled.messages]
        await log_outcomes(self.sink, outcomes)

    async def shutdown(self) -> None:
        if self.owns_sink:
            await self.sink.close()


def _body(message: Any) -> bytes | None:
    """The request's body, to read model and version from (off the loop); None for an item of a
    request-batch message (it names its model) or a message without one. A Functions failure
    record carries its body as bytes; an SDK message is read with `message_body`."""
    if hasattr(message, "parent"):
        return None
    body = getattr(message, "body", None)
    if isinstance(body, bytes):
        return body
    try:
        return message_body(message)
    except Exception:
        return None


def _error_outcome(each: Any) -> RequestOutcome | None:
    request = each.request
    if request is not None:
        prepared = request.prepared
        return outcome_of_reply(each.reply, route=prepared.route, version=prepared.version)
    return outcome_of_reply(each.reply, body=_body(each.message))


def _dead_letter_outcome(message: Any, code: str, scored_by: str | None) -> RequestOutcome:
    """`model`: an item's, or a Functions failure record's (an SDK message has none)."""
    request_id = getattr(message, "message_id", None)
    model = getattr(message, "model", None)
    return outcome_of_dead_letter(
        "" if request_id is None else str(request_id),
        code,
        model=model if isinstance(model, str) else None,
        body=_body(message),
        scored_by=scored_by,
    )
