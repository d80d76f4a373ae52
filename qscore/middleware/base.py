"""Middleware: hooks around the steps of a request, in the shape of dramatiq's middleware, run
by both runtimes (the worker, workers/; the Functions app, functions/).

A request goes receive -> validate -> score -> reply -> settle (docs/worker.md, docs/functions.md).
Each step calls the matching hook of every middleware; every hook is a no-op here, so a
middleware overrides only what it needs. `startup` and the `before_*` hooks run in the stack's order,
every `after_*` hook and `shutdown` in reverse order (as dramatiq's), so the first middleware
wraps all others. A deployment adds its own (audit, custom logging, request enrichment) with
`QSCORE_MIDDLEWARE` (qscore/middleware/loading.py), read by both runtimes, or in the worker with
`run_worker(..., middleware=[...])`; `before=`/`after=` place one relative to another.

What both runtimes guarantee (qscore/middleware/stack.py): a hook that raises is logged and
counted and changes nothing: every request still ends as exactly one reply or one dead-letter
record. Only `before_score` may change what is scored, by returning the requests to score, and
`before_reply` where a reply goes, by returning its addresses (e.g. with a span's traceparent).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from qscore.transport.settle_outcomes import SettleOutcome

if TYPE_CHECKING:
    from qscore.contracts import ScoreReply
    from qscore.scoring import PreparedRequest, ScoredItem

# Where a middleware goes relative to another: the other's class, or its class name.
Placement = type | str | None


class ValidatedRequest(Protocol):
    """A request that passed validation: its message (the SDK message in the worker, the
    orchestration's InboundMessage in the Functions app) and its prepared request. `address`
    and `span` are the worker's (the Functions app's are None)."""

    message: Any
    prepared: PreparedRequest
    address: Any
    span: Any


class ReplyToSend(Protocol):
    """One reply a reply step is about to send: the reply, the message it answers, and where it
    goes (`address`, a `qscore.transport.ReplyAddress`)."""

    message: Any
    reply: ScoreReply
    address: Any


class SentReply(Protocol):
    """One reply a reply step handled: the reply, the message it answers, and for a scored
    request the request and its scored item (None for an error reply)."""

    message: Any
    reply: ScoreReply
    request: Any
    scored: ScoredItem | None


@dataclass(frozen=True, slots=True)
class ScoreBatch:
    """One Triton call's requests, all of one (model, version).

    `retry` is True when the runtime scores requests again that a `before_score` already saw:
    a batch Triton refused is scored one request at a time, and (worker) one cut short by a
    deadline is scored again without its expired requests. `call` tells the calls apart."""

    model: str
    version: str
    requests: tuple[Any, ...]  # ValidatedRequest each (HeldRequest in the worker)
    call: int
    retry: bool = False


@dataclass(frozen=True, slots=True)
class ScoreResult:
    """What one Triton call gave: the scored items (in request order), or the error it raised."""

    batch: ScoreBatch
    scored: tuple[ScoredItem, ...] | None
    error: BaseException | None
    elapsed_s: float


@dataclass(frozen=True, slots=True)
class Replied:
    """One reply step: the replies the broker took (`sent`) and those it did not (`unsent`;
    each such request is then dead-lettered or abandoned, which `after_settle` reports)."""

    sent: tuple[Any, ...]  # SentReply each
    unsent: tuple[Any, ...] = ()


@dataclass(frozen=True, slots=True)
class Settled:
    """Messages settled together with one outcome.

    `reason`: why a message was abandoned (`inference_unavailable`, `reply_send_failed`,
    `shutdown`, ...) or dead-lettered (the error code, e.g. `bad_input`); `description` is the
    dead-letter record's. `refused` counts the messages the broker refused to settle (lock
    lost: it redelivers them). A request-batch message is settled once, after its items.
    `answered`: dead-lettered after its error reply was sent (QSCORE_KEEP_ANSWERED_REJECTIONS).
    Each message has a `message_id` (the Functions app records a failure record as
    `dead_lettered`, its twin of the worker's dead-letter)."""

    messages: tuple[Any, ...]
    outcome: SettleOutcome
    reason: str | None = None
    description: str | None = None
    refused: int = 0
    answered: bool = False


class Middleware:
    """Override the hooks you need; each is awaited on the runtime's event loop, so it must not
    block (use asyncio.to_thread for blocking work). `place_before`/`place_after` (a class or a
    class name) put a middleware loaded by name before or after another one in the stack."""

    place_before: ClassVar[Placement] = None
    place_after: ClassVar[Placement] = None

    async def startup(self) -> None:
        """Before the first receive. An exception here stops the runtime from starting."""

    async def after_receive(self, queue: str, messages: Sequence[Any]) -> None:
        """Messages just received from `queue`, not yet judged."""

    async def after_validate(self, request: Any) -> None:
        """A request that passed validation (a ValidatedRequest), just before it joins a batch
        (rejected ones are dead-lettered or answered, which `after_settle`/`after_reply`
        report). In the worker the tracing middleware sets the request's `span` here."""

    async def before_score(self, batch: ScoreBatch) -> Sequence[Any] | None:
        """Before each Triton call. Return the requests to score instead (same number, same
        order, e.g. with enriched inputs), or None to leave them as they are."""
        return None

    async def after_score(self, result: ScoreResult) -> None:
        """After each Triton call, whether it succeeded (`result.scored`) or raised (`result.error`)."""

    async def before_reply(self, replying: Sequence[Any]) -> Sequence[Any] | None:
        """Just before a reply step sends its replies to their queues (each a ReplyToSend).
        Return the addresses to send them to instead (same number, same order, e.g. with the
        traceparent of a span opened for each), or None to leave them as they are."""
        return None

    async def after_reply(self, replied: Replied) -> None:
        """After a reply step (scored requests, `expired` and other error replies), once the
        requests whose replies were sent are completed."""

    async def after_settle(self, settled: Settled) -> None:
        """After messages were completed, abandoned or dead-lettered."""

    async def after_drain(self) -> None:
        """The receive loop has stopped and drained; the Triton and broker clients are still open."""

    async def shutdown(self) -> None:
        """After the runtime closed its clients: the last hook."""
