"""The Functions app's side of the core's middleware (qscore.middleware): the objects its hooks
receive here, and the calls the activities make, at the steps the worker calls them.

- validation: `after_receive` (the batch's InboundMessages), `after_validate` per accepted request;
- inference: `before_score` (may return the requests to score instead) and `after_score` around
  each Triton call (a refused group is scored again one request at a time: `retry=True`);
- delivery: `before_reply` with the queue replies about to be sent (`QueuedReply`; the tracing
  middleware opens the reply spans there), `after_reply` once the replies are sent (`unsent`:
  those the broker refused), and
  `after_settle` (`dead_lettered`, reason = the code) once failure records are written, the
  app's twin of the worker's dead-letter. The trigger's messages are completed by the host, so
  no `completed` settlement is reported here, and nothing is ever abandoned.

Each activity invocation may run in another process, so a middleware here keeps no state from
one hook to the next that it needs to see again (the audit example keeps none).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from qscore.contracts import ScoreReply
from qscore.middleware import MiddlewareStack, Replied, ScoreBatch, ScoreResult, Settled
from qscore.middleware.loading import load_middleware, references_in
from qscore.scoring import PreparedRequest, ScoredItem
from qscore.transport.settle_outcomes import DEAD_LETTERED


@dataclass(slots=True)
class ValidatedMessage:
    """A request that passed validation (qscore.middleware.ValidatedRequest): its envelope
    (`message`, with `message_id`) and its prepared request."""

    message: Any
    prepared: PreparedRequest
    address: Any = None
    span: Any = None


@dataclass(frozen=True, slots=True)
class HandledReply:
    """One reply a delivery step handled (qscore.middleware.SentReply)."""

    message: Any
    reply: ScoreReply
    request: Any = None
    scored: ScoredItem | None = None


@dataclass(frozen=True, slots=True)
class QueuedReply:
    """One reply the delivery step is about to send to a queue (qscore.middleware.ReplyToSend):
    the request's envelope (`message`), the reply, and its ReplyAddress."""

    message: Any
    reply: ScoreReply
    address: Any


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """A request recorded on the failures queue, as `after_settle` sees it."""

    message_id: str | None
    model: str | None = None
    body: bytes = b""  # as the failure record holds it (the interaction log reads it)


def app_middleware() -> MiddlewareStack:
    """The deployment's own middleware (QSCORE_MIDDLEWARE, as the worker reads it)."""
    return MiddlewareStack(load_middleware(references_in()))


_calls = 0


async def around_score(
    stack: MiddlewareStack,
    model: str,
    version: str,
    requests: Sequence[ValidatedMessage],
    score: Callable[[Sequence[ValidatedMessage]], Awaitable[list[ScoredItem]]],
    *,
    retry: bool = False,
) -> list[ScoredItem]:
    """`score` the requests as `before_score` left them, with `after_score` told either way."""
    global _calls
    _calls += 1
    batch = ScoreBatch(model=model, version=version, requests=tuple(requests), call=_calls, retry=retry)
    batch = await stack.before_score(batch)
    started = time.perf_counter()
    try:
        scored = await score(batch.requests)
    except BaseException as error:
        await stack.after_score(ScoreResult(batch, None, error, time.perf_counter() - started))
        raise
    await stack.after_score(ScoreResult(batch, tuple(scored), None, time.perf_counter() - started))
    return scored


async def replied(
    stack: MiddlewareStack, sent: Sequence[HandledReply], unsent: Sequence[HandledReply] = ()
) -> None:
    if sent or unsent:
        await stack.after_reply(Replied(sent=tuple(sent), unsent=tuple(unsent)))


async def recorded(
    stack: MiddlewareStack, recorded: Sequence[tuple[RecordedRequest, str, str, bool]]
) -> None:
    """`after_settle(dead_lettered)` per (reason, answered): (request, reason, description, answered)."""
    groups: dict[tuple[str, bool], list[tuple[RecordedRequest, str]]] = {}
    for request, reason, description, answered in recorded:
        groups.setdefault((reason, answered), []).append((request, description))
    for (reason, answered), members in groups.items():
        await stack.after_settle(
            Settled(
                messages=tuple(request for request, _ in members),
                outcome=DEAD_LETTERED,
                reason=reason,
                description=members[0][1],
                answered=answered,
            )
        )
